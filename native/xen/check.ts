/**
 * The one checker every Xen library call's return goes through (libxenctrl,
 * libxenforeignmemory, libxenstore): it names the operation and the errno, so a
 * failure reads "Cannot xc_domain_pause(dom 3): ESRCH (3)". Built on libc's
 * {@link check}; the error is a {@link SyscallError} subclass.
 *
 * @module
 */
import { check, errno, errnoName, SyscallError } from "../libc.ts";

export class XenCallError extends SyscallError {
  constructor(message: string, errnoValue: number, options?: ErrorOptions) {
    super(message, errnoValue, options);
    this.name = "XenCallError";
  }
}

/** int returns (xc_*, xenforeignmemory_unmap): negative is failure, errno set. */
export function checkInt(op: string, ret: number | bigint): number {
  return check(op, ret, [], XenCallError);
}

/** bool returns (xs_write, xs_watch, ...): false is failure, errno set. */
export function checkBool(op: string, ok: boolean): void {
  if (!ok) throw failure(op);
}

/** pointer returns (xc_interface_open, xs_read, xenforeignmemory_map): null is failure. */
export function checkPointer(op: string, p: Deno.PointerValue): Deno.PointerObject {
  if (p === null) throw failure(op);
  return p;
}

function failure(op: string): XenCallError {
  const e = errno();
  return new XenCallError(`Cannot ${op}: ${errnoName(e)} (${e})`, e);
}
