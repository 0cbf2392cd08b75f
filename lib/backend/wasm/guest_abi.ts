/**
 * The guest-visible Snowflock ABI of the wasm backend: the `snowflock` import
 * module, its error codes (mirrored by native/sf.h) and where the prepared module
 * expects its memory.
 *
 * Every function takes and returns i32. Results >= 0 are values, negative
 * results are the `SF_E*` codes below; a guest never sees a host exception.
 *
 * @module
 */

/** Bytes of a WebAssembly page: guest memories are sized in these. */
export const WASM_PAGE = 65536;

/** Bad argument (e.g. a pointer range outside memory). */
export const SF_EINVAL = -1;
/** Unknown ticket. */
export const SF_ENOTICKET = -2;
/** Ticket already used. */
export const SF_ETICKETUSED = -3;
/** The allocator granted nothing. */
export const SF_ENOSLOTS = -4;
/** Not allowed in a clone (e.g. sf_join in a clone). */
export const SF_ECLONE = -5;
/** The control plane is unreachable. */
export const SF_ECONTROL = -6;
/** The fork failed. */
export const SF_EFORK = -7;
/** Not supported. */
export const SF_ENOTSUP = -8;
/** Timed out. */
export const SF_ETIMEDOUT = -9;
/** Unknown checkpoint. */
export const SF_ENOCKPT = -10;

/** Name of the guest import module for the impromptu-cluster API. */
export const SNOWFLOCK_MODULE = "snowflock";

/** Arity of each `snowflock` import; `void` ones return nothing. */
export const SNOWFLOCK_IMPORTS: Readonly<Record<string, { params: number; returns: boolean }>> = {
  sf_request_ticket: { params: 1, returns: true },
  sf_ticket_size: { params: 1, returns: true },
  sf_clone: { params: 1, returns: true },
  sf_join: { params: 1, returns: true },
  sf_exit: { params: 1, returns: false },
  sf_kill: { params: 1, returns: true },
  sf_checkpoint_parent: { params: 0, returns: true },
  sf_create_clones: { params: 2, returns: true },
  sf_hint_overwrite: { params: 2, returns: true },
  sf_clone_id: { params: 0, returns: true },
};

/**
 * The imports that fork the VM. Only these unwind the stack (asyncify); every
 * other import is an ordinary blocking host call, which keeps instrumentation
 * off every other call path.
 */
export const FORKING_IMPORTS: readonly string[] = ["sf_clone", "sf_checkpoint_parent"];

/** Where a prepared module imports its (shared) linear memory from. */
export const MEMORY_IMPORT = { module: "env", name: "memory" } as const;

/**
 * Where a prepared module imports its interrupt memory from: one shared page
 * the host sets to stop the guest (interrupt.ts).
 */
export const INTERRUPT_IMPORT = { module: "snowflock", name: "interrupt" } as const;

/** Byte address of the i32 interrupt word; non-zero = the VM was killed. */
export const INTERRUPT_FLAG = 0;

/** Export-name prefix of the guest's mutable globals (`__sf_global_<index>`). */
export const GLOBAL_EXPORT_PREFIX = "__sf_global_";

/** Export name of asyncify's private memory holding the unwound stack. */
export const ASYNCIFY_MEMORY_EXPORT = "__sf_asyncify_memory";

/**
 * Thrown by a {@link GuestHooks} implementation to hand the guest a specific
 * code; any other exception becomes the call's default code.
 */
export class SfError extends Error {
  readonly code: number;

  constructor(code: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SfError";
    this.code = code;
  }
}
