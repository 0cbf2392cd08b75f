/**
 * Snowflock's CPython: built by scripts/build-python.sh from Debian's
 * `python3.11` source package, cached by content hash under
 * ~/.cache/snowflock/python (or $SNOWFLOCK_PYTHON_CACHE).
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const BUILD_SCRIPT = fileURLToPath(new URL("../../../scripts/build-python.sh", import.meta.url));

/** One build's outputs (see scripts/build-python.sh). */
export interface PythonBuild {
  dir: string;
  /** CPython with the built-in snowflock module. */
  pythonWasm: string;
  /** The same CPython without it: the benchmark's baseline. */
  plainWasm: string;
  /** The stdlib image (ustar). */
  stdlibTar: string;
  manifest: Record<string, unknown>;
}

/** The build failed; the script's output says why. */
export class PythonBuildError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PythonBuildError";
  }
}

export interface BuildPythonOptions {
  /** Each progress line of the build script (a cold build takes minutes). */
  onProgress?(line: string): void;
}

/** The cached build for the current sources, or null if there is none. */
export async function findPythonBuild(): Promise<PythonBuild | null> {
  const { code, stdout } = await new Deno.Command("bash", {
    args: [BUILD_SCRIPT, "--print"],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (code !== 0) return null;
  return await readBuild(new TextDecoder().decode(stdout).trim());
}

/**
 * The build for the current sources: from the cache, or built now (a cold
 * build fetches Debian's source package with apt and compiles CPython).
 *
 * @throws {PythonBuildError} if the build fails.
 */
export async function buildPython(o: BuildPythonOptions = {}): Promise<PythonBuild> {
  const found = await findPythonBuild();
  if (found) return found;
  const child = new Deno.Command("bash", {
    args: [BUILD_SCRIPT],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const progress = (async () => {
    const decoder = new TextDecoderStream();
    let rest = "";
    for await (const chunk of child.stderr.pipeThrough(decoder)) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        o.onProgress?.(line);
      }
    }
  })();
  const [status, stdout] = await Promise.all([child.status, new Response(child.stdout).text()]);
  await progress;
  if (!status.success) {
    throw new PythonBuildError(
      `Cannot build Python: scripts/build-python.sh exited with ${status.code}: ${
        lines.slice(-5).join(" | ")
      }`,
    );
  }
  return await readBuild(stdout.trim().split("\n").pop() ?? "");
}

async function readBuild(dir: string): Promise<PythonBuild> {
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
  } catch (e) {
    throw new PythonBuildError(`Cannot read the Python build in ${dir}`, { cause: e });
  }
  return {
    dir,
    pythonWasm: join(dir, "python.wasm"),
    plainWasm: join(dir, "python-plain.wasm"),
    stdlibTar: join(dir, "stdlib.tar"),
    manifest,
  };
}
