/**
 * Compiling C guests for the wasm backend: Debian's clang for wasm32-wasi with
 * the guest SDK (native/sf.h) on the include path, and the bundled examples.
 *
 * @module
 */

import { basename, dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** native/: sf.h, the guest SDK header, and examples/. */
const NATIVE_DIR = fileURLToPath(new URL("../../native/", import.meta.url));
const EXAMPLES_DIR = join(NATIVE_DIR, "examples");

/** Where Debian's wasi-libc installs the wasm32-wasi sysroot's libraries. */
const WASI_LIBC = "/usr/lib/wasm32-wasi/libc.a";

/** The Debian packages that make up the toolchain, in install order. */
const TOOLCHAIN_PACKAGES = ["clang", "lld", "wasi-libc", "libclang-rt-14-dev-wasm32"];

const CLANG_TARGET = ["--target=wasm32-wasi", "--sysroot=/usr"];

/**
 * Link flags: a 1 MiB stack placed below the data so an overflow traps instead
 * of corrupting globals, and libc's debug sections dropped (they are 80 % of a
 * small guest) unless the user asks for debug info.
 */
function linkFlags(clangArgs: string[]): string[] {
  const flags = ["-Wl,-z,stack-size=1048576", "-Wl,--stack-first"];
  const debug = clangArgs.some((arg) => arg.startsWith("-g") && arg !== "-g0");
  return debug ? flags : [...flags, "-Wl,--strip-debug"];
}

/** The toolchain is missing and cannot be installed from here. */
export class ToolchainError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ToolchainError";
  }
}

/** clang rejected the guest; its diagnostics were already shown to the user. */
export class CompileError extends Error {
  /** clang's exit code. */
  readonly exitCode: number;
  /** Everything clang wrote to stderr. */
  readonly diagnostics: string;

  constructor(message: string, exitCode: number, diagnostics: string) {
    super(message);
    this.name = "CompileError";
    this.exitCode = exitCode;
    this.diagnostics = diagnostics;
  }
}

/** Options of {@link compileGuest}. */
export interface CompileOptions {
  /** C sources (and objects) to compile and link into one module. */
  sources: string[];
  /** The .wasm file to write. */
  output: string;
  /** Extra clang arguments; they come after the defaults, so `-O3` overrides `-O2`. */
  clangArgs: string[];
  /** Told about slow steps, e.g. installing the toolchain. */
  onProgress?: (msg: string) => void;
}

/** Options of {@link ensureToolchain} and {@link buildExample}. */
export interface ProgressOptions {
  onProgress?: (msg: string) => void;
}

async function run(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, env, stdin: "null" }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

async function onPath(program: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir !== "" && await isFile(join(dir, program))) return true;
  }
  return false;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Debian packages whose files are missing, in {@link TOOLCHAIN_PACKAGES} order. */
async function missingPackages(): Promise<string[]> {
  const missing = new Set<string>();
  const clang = await onPath("clang");
  if (!clang) missing.add("clang");
  if (!await onPath("wasm-ld")) missing.add("lld");
  if (!await isFile(WASI_LIBC)) missing.add("wasi-libc");
  // Ask clang where it wants its wasm32 runtime: the path names its own version.
  const builtins = clang
    ? (await run("clang", [...CLANG_TARGET, "-print-libgcc-file-name"])).stdout.trim()
    : "";
  if (builtins === "" || !await isFile(builtins)) missing.add("libclang-rt-14-dev-wasm32");
  return TOOLCHAIN_PACKAGES.filter((pkg) => missing.has(pkg));
}

async function aptInstall(packages: string[], onProgress: (msg: string) => void): Promise<void> {
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = ["install", "-y", "--no-install-recommends", ...packages];
  onProgress(`installing ${packages.join(" ")} with apt-get`);
  let result = await run("apt-get", install, env);
  if (
    result.code !== 0 &&
    /Unable to locate package|has no installation candidate/.test(result.stderr)
  ) {
    onProgress("apt-get has no package lists: running apt-get update");
    const update = await run("apt-get", ["update"], env);
    if (update.code !== 0) {
      throw new ToolchainError(`Cannot update package lists: ${update.stderr.trim()}`);
    }
    result = await run("apt-get", install, env);
  }
  if (result.code !== 0) {
    throw new ToolchainError(
      `Cannot install ${packages.join(" ")}: apt-get exited with code ${result.code}: ` +
        result.stderr.trim(),
    );
  }
}

let toolchainReady: Promise<void> | undefined;

/**
 * Makes sure clang, wasm-ld, wasi-libc and clang's wasm32 runtime are
 * installed, installing the missing Debian packages with apt-get when running
 * as root. Checked once per process.
 *
 * @throws {ToolchainError} when something is missing and cannot be installed.
 */
export function ensureToolchain(options: ProgressOptions = {}): Promise<void> {
  toolchainReady ??= installMissing(options.onProgress ?? (() => {})).catch((error) => {
    toolchainReady = undefined;
    throw error;
  });
  return toolchainReady;
}

async function installMissing(onProgress: (msg: string) => void): Promise<void> {
  const missing = await missingPackages();
  if (missing.length === 0) return;
  const command = `apt-get install ${missing.join(" ")}`;
  if (Deno.uid() !== 0) {
    throw new ToolchainError(
      `Cannot compile guests: missing Debian packages ${missing.join(", ")}; ` +
        `install them with: sudo ${command}`,
    );
  }
  if (!await onPath("apt-get")) {
    throw new ToolchainError(
      `Cannot compile guests: missing ${missing.join(", ")} and no apt-get to install them ` +
        `(on Debian: ${command})`,
    );
  }
  await aptInstall(missing, onProgress);
  const still = await missingPackages();
  if (still.length > 0) {
    throw new ToolchainError(
      `Cannot compile guests: still missing ${still.join(", ")} after installing them`,
    );
  }
  onProgress("toolchain installed");
}

/**
 * Compiles and links C guest sources into a WASI preview1 module, `-O2` unless
 * overridden. clang's diagnostics go straight to stderr as it prints them.
 *
 * @throws {CompileError} when clang fails.
 * @throws {ToolchainError} when the toolchain is missing and cannot be installed.
 */
export async function compileGuest(opts: CompileOptions): Promise<void> {
  await ensureToolchain({ onProgress: opts.onProgress });
  const args = [
    ...CLANG_TARGET,
    "-I",
    NATIVE_DIR,
    "-O2",
    ...opts.sources,
    ...opts.clangArgs,
    ...linkFlags(opts.clangArgs),
    "-o",
    opts.output,
  ];
  const child = new Deno.Command("clang", {
    args,
    // clang runs any wasm-opt it finds on PATH; binaryen's npm one (under
    // node_modules/.bin when run as a deno task) is a slow JS port of another version.
    env: {
      PATH: (Deno.env.get("PATH") ?? "").split(":").filter((d) => !d.includes("node_modules")).join(
        ":",
      ),
    },
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  })
    .spawn();
  let diagnostics = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stderr) {
    await Deno.stderr.write(chunk);
    diagnostics += decoder.decode(chunk, { stream: true });
  }
  const { code } = await child.status;
  if (code !== 0) {
    const firstError = diagnostics.split("\n").find((line) => line.includes("error:"));
    throw new CompileError(
      `Cannot compile ${opts.sources.join(" ")}: clang exited with code ${code}` +
        (firstError ? ` (${firstError.trim()})` : ""),
      code,
      diagnostics,
    );
  }
}

/** Names of the bundled example guests (native/examples/*.c), sorted. */
export function listExamples(): string[] {
  return [...Deno.readDirSync(EXAMPLES_DIR)]
    .filter((entry) => entry.isFile && extname(entry.name) === ".c")
    .map((entry) => basename(entry.name, ".c"))
    .sort();
}

/**
 * The path of example `name`'s C source.
 *
 * @throws {RangeError} when there is no such example.
 */
export function exampleSource(name: string): string {
  const examples = listExamples();
  if (!examples.includes(name)) {
    throw new RangeError(
      `Cannot find example '${name}': the examples are ${examples.join(", ")}`,
    );
  }
  return join(EXAMPLES_DIR, `${name}.c`);
}

/** A hash of what a guest build depends on: its source, the headers beside it, sf.h, clang. */
async function buildKey(source: string): Promise<string> {
  const dir = dirname(source);
  const headers = [...Deno.readDirSync(dir)]
    .filter((entry) => entry.isFile && extname(entry.name) === ".h")
    .map((entry) => join(dir, entry.name))
    .sort();
  const inputs = [source, join(NATIVE_DIR, "sf.h"), ...headers];
  const texts = await Promise.all(inputs.map((path) => Deno.readTextFile(path)));
  const version = (await run("clang", ["--version"])).stdout;
  const material = [...inputs.map((path, i) => `${basename(path)}\0${texts[i]}`), version];
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(material.join("\0")),
  );
  return [...new Uint8Array(digest, 0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Compiles example `name` into `cacheDir` unless an up-to-date build is
 * there already, and returns the .wasm path.
 */
export function buildExample(
  name: string,
  cacheDir: string,
  options: ProgressOptions = {},
): Promise<string> {
  return buildCached(exampleSource(name), cacheDir, options);
}

/**
 * Compiles one C guest into `cacheDir` unless an up-to-date build is there
 * already (keyed by a hash of the source, the headers beside it, sf.h and
 * clang's version), and returns the .wasm path.
 */
export async function buildCached(
  source: string,
  cacheDir: string,
  options: ProgressOptions = {},
): Promise<string> {
  await ensureToolchain(options);
  const name = basename(source, ".c");
  const output = join(cacheDir, `${name}-${await buildKey(source)}.wasm`);
  if (await isFile(output)) return output;
  await Deno.mkdir(cacheDir, { recursive: true });
  options.onProgress?.(`compiling ${name}`);
  // Build under a private name and rename: a concurrent build or a crash never
  // leaves a half-written module under the cached name.
  const partial = await Deno.makeTempFile({ dir: cacheDir, prefix: `${name}-`, suffix: ".part" });
  try {
    await compileGuest({ sources: [source], output: partial, clangArgs: [] });
    await Deno.rename(partial, output);
  } catch (error) {
    await Deno.remove(partial).catch(() => {});
    throw error;
  }
  return output;
}
