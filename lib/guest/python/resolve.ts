/**
 * What `snowflock run` and `snowflock demo --guest` run for a job file: a
 * WASI module as it is, or a Python job (`.py`, or a `#!…python…` first line)
 * as Snowflock's CPython with the job's source as an argument.
 *
 * The source travels by value: the parent VM may run on any host, and its
 * clones inherit the compiled job from its memory. The interpreter runs
 * `python -s -c "import snowflock; snowflock._main()" NAME N CHUNK1..N ARGS...`
 * (the source in N chunks: the master takes arguments of up to 4096
 * characters); _main (native/python/snowflock_module.py) joins the chunks,
 * sets sys.argv to [NAME, ARGS...],
 * registers the source with linecache (tracebacks show its lines) and runs
 * it as __main__ on the call path clone() can fork.
 *
 * @module
 */
import { basename } from "node:path";
import type { Preopen } from "../../backend/wasm/mod.ts";
import { buildPython, type BuildPythonOptions, findPythonBuild } from "./build.ts";
import { PYTHON_ENV, pythonGuestModule } from "./guest.ts";

/** The command line that runs a job given by its source. */
export const PYTHON_BOOTSTRAP = "import snowflock; snowflock._main()";

/** Longest argument the master accepts (lib/control/messages.ts). */
const MAX_ARG = 4096;

/** What to hand the master for a job file. */
export interface ResolvedGuest {
  kind: "wasm" | "python";
  /** The module to upload. */
  wasm: string;
  /** The guest's arguments after argv[0] (run_job adds argv[0]). */
  args: string[];
  /** Environment to add to the user's `--env` entries. */
  env: string[];
  /**
   * Extra preopens the agent must give the VM: none, a Python guest's stdlib
   * travels inside its module (lib/backend/wasm/module_sections.ts).
   */
  preopens: Preopen[];
}

export interface ResolveOptions extends BuildPythonOptions {
  /** Build the interpreter if it is not cached (default true; false: fail instead). */
  build?: boolean;
}

/** The guest could not be resolved (e.g. Python is not built and `build` is false). */
export class ResolveGuestError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ResolveGuestError";
  }
}

/** Whether `path` is a Python job: a `.py` name or a python shebang. */
export async function isPythonJob(path: string): Promise<boolean> {
  if (path.endsWith(".py")) return true;
  let head: Uint8Array;
  try {
    using file = await Deno.open(path);
    head = new Uint8Array(128);
    const n = await file.read(head) ?? 0;
    head = head.subarray(0, n);
  } catch {
    return false;
  }
  const first = new TextDecoder().decode(head).split("\n")[0];
  return /^#!.*\bpython(3(\.\d+)?)?\b/.test(first);
}

/**
 * Resolves a job file for `run`/`demo`: a `.wasm` (anything not Python) as
 * is; a Python job as Snowflock's CPython (built and cached on first use) plus
 * the arguments that run it.
 *
 * @throws {ResolveGuestError} if the job cannot be read or Python cannot be had.
 */
export async function resolveGuest(
  path: string,
  args: string[] = [],
  o: ResolveOptions = {},
): Promise<ResolvedGuest> {
  if (!(await isPythonJob(path))) {
    return { kind: "wasm", wasm: path, args, env: [], preopens: [] };
  }
  let source: string;
  try {
    source = await Deno.readTextFile(path);
  } catch (e) {
    throw new ResolveGuestError(`Cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  const build = o.build === false ? await findPythonBuild() : await buildPython(o);
  if (!build) {
    throw new ResolveGuestError(
      "Cannot run a Python job: Python is not built (run scripts/build-python.sh)",
    );
  }
  return {
    kind: "python",
    wasm: await pythonGuestModule(build, "snowflock"),
    args: pythonArgs(basename(path), source, args),
    env: [...PYTHON_ENV],
    preopens: [],
  };
}

/** The interpreter's arguments that run `source` as `name` with `args`. */
export function pythonArgs(name: string, source: string, args: string[] = []): string[] {
  const chunks = chunk(source, MAX_ARG - 96);
  return ["-s", "-c", PYTHON_BOOTSTRAP, name, String(chunks.length), ...chunks, ...args];
}

/** `text` in pieces of at most `size` UTF-16 units, never splitting a surrogate pair. */
function chunk(text: string, size: number): string[] {
  const chunks: string[] = [];
  for (let at = 0; at < text.length;) {
    let end = Math.min(at + size, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    chunks.push(text.slice(at, end));
    at = end;
  }
  return chunks.length > 0 ? chunks : [""];
}
