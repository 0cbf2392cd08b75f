/**
 * The Python guest module: a build's python.wasm with its stdlib image and its
 * preparation settings (the asyncify path of asyncify.ts) as custom sections,
 * so any agent runs it without knowing it is Python (see
 * lib/backend/wasm/module_sections.ts). Composed once per build and flavour.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  appendCustomSection,
  IMAGE_SECTION,
  type ModuleSettings,
  SETTINGS_SECTION,
} from "../../backend/wasm/module_sections.ts";
import { PYTHON_ASYNCIFY_OPTIMIZE_LIST } from "./asyncify.ts";
import type { PythonBuild } from "./build.ts";

/** Where the guest sees the stdlib image: CPython's compiled-in prefix /usr/local. */
export const STDLIB_GUEST_PATH = "/usr/local/lib/python3.11";

/** The environment every Python guest gets. */
export const PYTHON_ENV: readonly string[] = [
  "PYTHONHOME=/usr/local",
  "PYTHONDONTWRITEBYTECODE=1",
];

/** "snowflock": with the snowflock module and fork support; "plain": neither. */
export type PythonFlavor = "snowflock" | "plain";

/** The module's preparation settings for `flavor`, with the image's hash. */
export function pythonSettings(flavor: PythonFlavor, imageSha256: string): ModuleSettings {
  return {
    asyncifyIgnoreIndirect: true,
    // Only the instrumented hot functions are optimized again (nothing in the
    // plain build): both builds keep clang's code everywhere else, so the
    // benchmark compares the instrumentation alone.
    asyncifyOptimize: "listed",
    ...(flavor === "snowflock" ? { asyncifyOptimizeList: [...PYTHON_ASYNCIFY_OPTIMIZE_LIST] } : {}),
    asyncifyPages: 4,
    image: { guestPath: STDLIB_GUEST_PATH, sha256: imageSha256 },
  };
}

/**
 * The path of the guest module of `build` (`python3.11.wasm`, composed now if
 * needed).
 */
export async function pythonGuestModule(
  build: PythonBuild,
  flavor: PythonFlavor = "snowflock",
): Promise<string> {
  const wasm = await Deno.readFile(flavor === "snowflock" ? build.pythonWasm : build.plainWasm);
  const image = await Deno.readFile(build.stdlibTar);
  const settings = pythonSettings(flavor, sha256(image));
  const settingsBytes = new TextEncoder().encode(JSON.stringify(settings));
  const key = sha256(new Uint8Array([...new TextEncoder().encode(sha256(wasm)), ...settingsBytes]))
    .slice(0, 16);
  const dir = join(build.dir, `guest-${flavor}-${key}`);
  const path = join(dir, "python3.11.wasm");
  try {
    await Deno.stat(path);
    return path;
  } catch { /* compose it */ }
  const composed = appendCustomSection(
    appendCustomSection(wasm, SETTINGS_SECTION, settingsBytes),
    IMAGE_SECTION,
    image,
  );
  await Deno.mkdir(dir, { recursive: true });
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(temp, composed);
  await Deno.rename(temp, path);
  return path;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
