/**
 * The wasm backend's VM engine: prepare a WASI command for forking, run it in
 * a Worker, fork it at `sf_clone` / `sf_checkpoint_parent` and resume clones.
 *
 * @module
 */
export {
  SF_ECLONE,
  SF_ECONTROL,
  SF_EFORK,
  SF_EINVAL,
  SF_ENOCKPT,
  SF_ENOSLOTS,
  SF_ENOTICKET,
  SF_ENOTSUP,
  SF_ETICKETUSED,
  SF_ETIMEDOUT,
  SfError,
  SNOWFLOCK_IMPORTS,
} from "./guest_abi.ts";
export { GuestError, VmError } from "./errors.ts";
export type { ForkPoint, ForkPointState, GlobalValue } from "./fork_point.ts";
export {
  DEFAULT_MAX_PAGES,
  prepareModule,
  prepareModuleCached,
  readPreparedCache,
} from "./prepare.ts";
export type {
  DataSegment,
  GlobalExport,
  PreparedModule,
  PrepareOptions,
  ValueType,
} from "./prepare.ts";
export type { FdKind, OutputStream, Preopen, WasiFdState, WasiState } from "./wasi.ts";
export { createGuestMemory, WasmVm } from "./vm.ts";
export { GuestMemoryPool } from "./memory_pool.ts";
export type { GuestHooks, ResumeOptions, StartOptions, VmExit } from "./vm.ts";
export { deferRefill, holdWorkerPool, idleWorkers } from "./worker_pool.ts";
export { prepareModuleOffThread } from "./prepare_off_thread.ts";
