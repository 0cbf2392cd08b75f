/**
 * Debian's Chromium driven by playwright-core, for the monitor's browser tests.
 * Never a browser download: scripts/setup.sh (test profile) installs the
 * `chromium` package, and without it a test says so and is skipped, except on
 * CI, where it fails.
 */
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { tempDir } from "./harness/temp_dir.ts";

const CHROMIUM = "/usr/bin/chromium";

/** Why the browser tests cannot run here, or undefined when they can. */
function chromiumMissing(): string | undefined {
  try {
    Deno.statSync(CHROMIUM);
    return undefined;
  } catch {
    return `${CHROMIUM} is missing (install it: bash scripts/setup.sh test)`;
  }
}

/** Skipped (loudly) where Chromium is missing, never on CI. */
export function browserTest(name: string, fn: () => Promise<void>): void {
  const missing = chromiumMissing();
  const skip = missing !== undefined && !Deno.env.get("CI");
  if (skip) console.warn(`skipped: ${name}: ${missing}`);
  Deno.test({ name, ignore: skip, fn });
}

export interface OpenBrowser extends AsyncDisposable {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions of the page (a CSP refusal shows up here). */
  errors: string[];
}

/**
 * A headless Chromium with a new empty profile, flags that keep it off the
 * network (this machine's network is closed; it would try Google's hosts).
 */
export async function openBrowser(): Promise<OpenBrowser> {
  const profile = await tempDir("sf-chromium");
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile.path, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1360, height: 900 },
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  } catch (e) {
    await profile[Symbol.asyncDispose]();
    throw e;
  }
  const page = context.pages()[0] ?? await context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return {
    context,
    page,
    errors,
    async [Symbol.asyncDispose]() {
      await context.close();
      await profile[Symbol.asyncDispose]();
    },
  };
}

let output: Promise<string> | undefined;

/**
 * Where screenshots go: $SNOWFLOCK_TEST_OUTPUT, or one new temp dir for the
 * whole run; the tests print the paths, nothing removes them.
 */
export function outputDir(): Promise<string> {
  output ??= (async () => {
    const dir = Deno.env.get("SNOWFLOCK_TEST_OUTPUT") ??
      await Deno.makeTempDir({ prefix: "snowflock-monitor-" });
    await Deno.mkdir(dir, { recursive: true });
    return dir;
  })();
  return output;
}

/** Logs in through the page's form, as a user would. */
export async function logIn(page: Page, token: string): Promise<void> {
  await page.waitForSelector("#login-form", { state: "visible" });
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
}
