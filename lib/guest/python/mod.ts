/**
 * Python guests: Snowflock's CPython 3.11 (built from Debian's source package
 * with the built-in `snowflock` module), its guest module, and the resolution
 * of `job.py` for `snowflock run` and `snowflock demo`.
 *
 * @module
 */
export { PYTHON_ASYNCIFY_OPTIMIZE_LIST } from "./asyncify.ts";
export { buildPython, findPythonBuild, PythonBuildError } from "./build.ts";
export type { BuildPythonOptions, PythonBuild } from "./build.ts";
export { PYTHON_ENV, pythonGuestModule, pythonSettings, STDLIB_GUEST_PATH } from "./guest.ts";
export type { PythonFlavor } from "./guest.ts";
export {
  isPythonJob,
  PYTHON_BOOTSTRAP,
  pythonArgs,
  resolveGuest,
  ResolveGuestError,
} from "./resolve.ts";
export type { ResolvedGuest, ResolveOptions } from "./resolve.ts";
