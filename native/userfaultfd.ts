/**
 * userfaultfd(2) bindings: open, API handshake, register, resolve (copy, zeropage, wake) and
 * write-protect, plus the `struct uffd_msg` decoder. Numbers are from
 * include/uapi/linux/userfaultfd.h (x86_64 and arm64 share the generic _IOC layout) and are
 * checked against the _IOWR formula in userfaultfd_test.ts.
 *
 * Every call is synchronous; the per-thread struct buffers below are only read by the kernel
 * during the call that fills them, so a module-level Uint8Array is valid for each of them.
 *
 * @module
 */

import {
  addressOf,
  close as closeFd,
  Errno,
  ioctl,
  ioctlValue,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  open,
  syscall,
  SyscallError,
} from "./libc.ts";

/** A failed userfaultfd operation; `errno` / `code` say why. */
export class UffdError extends SyscallError {
  constructor(message: string, errnoValue: number, options?: ErrorOptions) {
    super(message, errnoValue, options);
    this.name = "UffdError";
  }
}

/** UFFD_API: the API version passed in uffdio_api.api. */
export const UFFD_API = 0xaan;

/** Sizes of the kernel structs copied below (bytes). */
export const UFFD_STRUCT_SIZE = {
  uffdio_api: 24, // u64 api, features, ioctls
  uffdio_range: 16, // u64 start, len
  uffdio_register: 32, // range, u64 mode, ioctls
  uffdio_copy: 40, // u64 dst, src, len, mode; s64 copy
  uffdio_zeropage: 32, // range, u64 mode; s64 zeropage
  uffdio_writeprotect: 24, // range, u64 mode
  uffd_msg: 32, // u8 event, 7 reserved bytes, 24-byte union arg
} as const;

// include/uapi/linux/userfaultfd.h: _IOWR(UFFDIO, _UFFDIO_API (0x3F), struct uffdio_api), 24 bytes
export const UFFDIO_API = 0xc018aa3fn;
// _IOWR(UFFDIO, _UFFDIO_REGISTER (0x00), struct uffdio_register), 32 bytes
export const UFFDIO_REGISTER = 0xc020aa00n;
// _IOR(UFFDIO, _UFFDIO_UNREGISTER (0x01), struct uffdio_range), 16 bytes
export const UFFDIO_UNREGISTER = 0x8010aa01n;
// _IOR(UFFDIO, _UFFDIO_WAKE (0x02), struct uffdio_range), 16 bytes
export const UFFDIO_WAKE = 0x8010aa02n;
// _IOWR(UFFDIO, _UFFDIO_COPY (0x03), struct uffdio_copy), 40 bytes
export const UFFDIO_COPY = 0xc028aa03n;
// _IOWR(UFFDIO, _UFFDIO_ZEROPAGE (0x04), struct uffdio_zeropage), 32 bytes
export const UFFDIO_ZEROPAGE = 0xc020aa04n;
// _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT (0x06), struct uffdio_writeprotect), 24 bytes
export const UFFDIO_WRITEPROTECT = 0xc018aa06n;
// _IO(USERFAULTFD_IOC (0xAA), 0x00): ioctl on /dev/userfaultfd, argument = open flags by value
export const USERFAULTFD_IOC_NEW = 0xaa00n;

/** uffdio_api.features bits. */
export const UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1n << 0n;
/** uffdio_api.features: write-protect also applies to never-populated anonymous pages (6.4+). */
export const UFFD_FEATURE_WP_UNPOPULATED = 1n << 13n;

/** uffdio_register.mode bits. */
export const UFFDIO_REGISTER_MODE_MISSING = 1n;
/** uffdio_register.mode: write-protect faults. */
export const UFFDIO_REGISTER_MODE_WP = 2n;
/** uffdio_copy.mode: do not wake the faulting threads. */
export const UFFDIO_COPY_MODE_DONTWAKE = 1n;
/** uffdio_copy.mode: install the page write-protected. */
export const UFFDIO_COPY_MODE_WP = 2n;
/** uffdio_zeropage.mode: do not wake the faulting threads. */
export const UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1n;
/** uffdio_writeprotect.mode: protect (unset: un-protect). */
export const UFFDIO_WRITEPROTECT_MODE_WP = 1n;
/** uffdio_writeprotect.mode: do not wake. */
export const UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 2n;

/** uffd_msg.event: a page fault. */
export const UFFD_EVENT_PAGEFAULT = 0x12;
/** uffd_msg.arg.pagefault.flags: the fault was a write. */
export const UFFD_PAGEFAULT_FLAG_WRITE = 1;
/** uffd_msg.arg.pagefault.flags: the fault was a write-protect fault. */
export const UFFD_PAGEFAULT_FLAG_WP = 2;

const SYS_USERFAULTFD: Record<string, number> = { x86_64: 323, aarch64: 282 };

/**
 * Open a userfaultfd: the userfaultfd(2) system call, falling back to /dev/userfaultfd +
 * USERFAULTFD_IOC_NEW when the syscall is refused (vm.unprivileged_userfaultfd=0 without
 * CAP_SYS_PTRACE). Always O_CLOEXEC; `nonblocking` adds O_NONBLOCK (read returns EAGAIN).
 */
export function openUserfaultfd(options: { nonblocking?: boolean } = {}): number {
  const flags = O_CLOEXEC | (options.nonblocking ? O_NONBLOCK : 0);
  const nr = SYS_USERFAULTFD[Deno.build.arch];
  if (nr === undefined) {
    throw new UffdError(`Cannot open userfaultfd: unsupported architecture ${Deno.build.arch}`, 0);
  }
  const fd = syscall("userfaultfd", nr, flags, [Errno.EPERM, Errno.ENOSYS], UffdError);
  if (fd >= 0) return fd;
  let device: number;
  try {
    device = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  } catch (cause) {
    throw new UffdError(
      `Cannot open userfaultfd: syscall failed with ${-fd === Errno.EPERM ? "EPERM" : "ENOSYS"}` +
        ` and /dev/userfaultfd is unusable`,
      -fd,
      { cause },
    );
  }
  try {
    return ioctlValue("USERFAULTFD_IOC_NEW", device, USERFAULTFD_IOC_NEW, flags, UffdError);
  } finally {
    closeFd(device);
  }
}

const apiBuf = new Uint8Array(UFFD_STRUCT_SIZE.uffdio_api);
const apiView = new DataView(apiBuf.buffer);

/** UFFDIO_API handshake asking for `features`; returns the features the kernel offers. */
export function uffdApi(fd: number, features: bigint): bigint {
  apiView.setBigUint64(0, UFFD_API, true);
  apiView.setBigUint64(8, features, true);
  apiView.setBigUint64(16, 0n, true);
  // apiBuf: 24 bytes = sizeof(struct uffdio_api), read and written during this call only.
  ioctl("UFFDIO_API", fd, UFFDIO_API, apiBuf, undefined, UffdError);
  return apiView.getBigUint64(8, true);
}

/** UFFDIO_API with features=0 to learn what the kernel offers (on a throw-away fd). */
export function uffdSupportedFeatures(): bigint {
  const fd = openUserfaultfd();
  try {
    return uffdApi(fd, 0n);
  } finally {
    closeFd(fd);
  }
}

const regBuf = new Uint8Array(UFFD_STRUCT_SIZE.uffdio_register);
const regView = new DataView(regBuf.buffer);

/** UFFDIO_REGISTER [start, start+len) with `mode`; returns the ioctls allowed on the range. */
export function uffdRegister(fd: number, start: number, len: number, mode: bigint): bigint {
  regView.setBigUint64(0, BigInt(start), true);
  regView.setBigUint64(8, BigInt(len), true);
  regView.setBigUint64(16, mode, true);
  regView.setBigUint64(24, 0n, true);
  // regBuf: 32 bytes = sizeof(struct uffdio_register), used during this call only.
  ioctl("UFFDIO_REGISTER", fd, UFFDIO_REGISTER, regBuf, undefined, UffdError);
  return regView.getBigUint64(24, true);
}

const rangeBuf = new Uint8Array(UFFD_STRUCT_SIZE.uffdio_range);
const rangeView = new DataView(rangeBuf.buffer);

function setRange(start: number, len: number): void {
  rangeView.setBigUint64(0, BigInt(start), true);
  rangeView.setBigUint64(8, BigInt(len), true);
}

/** UFFDIO_UNREGISTER [start, start+len); wakes any thread still blocked on the range. */
export function uffdUnregister(fd: number, start: number, len: number): void {
  setRange(start, len);
  // rangeBuf: 16 bytes = sizeof(struct uffdio_range), read during this call only.
  ioctl("UFFDIO_UNREGISTER", fd, UFFDIO_UNREGISTER, rangeBuf, undefined, UffdError);
}

/** UFFDIO_WAKE [start, start+len) */
export function uffdWake(fd: number, start: number, len: number): void {
  setRange(start, len);
  // rangeBuf: 16 bytes = sizeof(struct uffdio_range), read during this call only.
  ioctl("UFFDIO_WAKE", fd, UFFDIO_WAKE, rangeBuf, undefined, UffdError);
}

/** Result of a copy or zeropage: bytes done, and the errno that stopped it (0 = all done). */
export interface UffdFillResult {
  bytes: number;
  errno: number;
}

const RESOLVE_ALLOWED: readonly number[] = [Errno.EEXIST, Errno.EAGAIN];

const copyBuf = new Uint8Array(UFFD_STRUCT_SIZE.uffdio_copy);
const copyView = new DataView(copyBuf.buffer);

/**
 * UFFDIO_COPY `src` to address `dst`. EEXIST (a page in the range is already there) and EAGAIN
 * (the mappings changed) are returned in `errno` with the bytes copied before them; anything
 * else throws UffdError.
 */
export function uffdCopy(fd: number, dst: number, src: Uint8Array, mode = 0n): UffdFillResult {
  // Set as two 32-bit halves, not BigInts: this runs once a page for every clone on a host.
  setU64(copyView, 0, dst);
  // src: the kernel copies from it during this synchronous call; the caller holds the view.
  setU64(copyView, 8, addressOf(src));
  setU64(copyView, 16, src.byteLength);
  copyView.setBigUint64(24, mode, true);
  setU64(copyView, 32, 0);
  // copyBuf: 40 bytes = sizeof(struct uffdio_copy), used during this call only.
  const ret = ioctl("UFFDIO_COPY", fd, UFFDIO_COPY, copyBuf, RESOLVE_ALLOWED, UffdError);
  // s64 copy: bytes copied, or -errno; never beyond 2^31 for one call's pages.
  const copied = copyView.getInt32(32, true);
  return { bytes: Math.max(0, copied), errno: ret < 0 ? -ret : 0 };
}

/** A non-negative integer below 2^53 as a little-endian u64. */
function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

const zeroBuf = new Uint8Array(UFFD_STRUCT_SIZE.uffdio_zeropage);
const zeroView = new DataView(zeroBuf.buffer);

/** UFFDIO_ZEROPAGE [start, start+len): map the zero page; EEXIST/EAGAIN as for uffdCopy. */
export function uffdZeropage(fd: number, start: number, len: number, mode = 0n): UffdFillResult {
  zeroView.setBigUint64(0, BigInt(start), true);
  zeroView.setBigUint64(8, BigInt(len), true);
  zeroView.setBigUint64(16, mode, true);
  zeroView.setBigInt64(24, 0n, true);
  // zeroBuf: 32 bytes = sizeof(struct uffdio_zeropage), used during this call only.
  const ret = ioctl("UFFDIO_ZEROPAGE", fd, UFFDIO_ZEROPAGE, zeroBuf, RESOLVE_ALLOWED, UffdError);
  const done = Number(zeroView.getBigInt64(24, true));
  return { bytes: Math.max(0, done), errno: ret < 0 ? -ret : 0 };
}

const wpBuf = new Uint8Array(UFFD_STRUCT_SIZE.uffdio_writeprotect);
const wpView = new DataView(wpBuf.buffer);

/** UFFDIO_WRITEPROTECT [start, start+len): mode WP protects, mode 0 un-protects and wakes. */
export function uffdWriteprotect(fd: number, start: number, len: number, mode: bigint): void {
  wpView.setBigUint64(0, BigInt(start), true);
  wpView.setBigUint64(8, BigInt(len), true);
  wpView.setBigUint64(16, mode, true);
  // wpBuf: 24 bytes = sizeof(struct uffdio_writeprotect), read during this call only.
  ioctl("UFFDIO_WRITEPROTECT", fd, UFFDIO_WRITEPROTECT, wpBuf, undefined, UffdError);
}

/** A decoded `struct uffd_msg` (only the page-fault member is decoded). */
export interface UffdMsg {
  event: number;
  /** arg.pagefault.flags (UFFD_PAGEFAULT_FLAG_*) */
  flags: number;
  /** arg.pagefault.address */
  address: number;
}

/** Decode the 32-byte uffd_msg at `offset` in `bytes`. */
export function decodeUffdMsg(bytes: Uint8Array, offset = 0): UffdMsg {
  if (offset < 0 || bytes.byteLength - offset < UFFD_STRUCT_SIZE.uffd_msg) {
    throw new RangeError(`Cannot decode uffd_msg: need 32 bytes at offset ${offset}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, UFFD_STRUCT_SIZE.uffd_msg);
  return {
    event: view.getUint8(0),
    flags: Number(view.getBigUint64(8, true)),
    address: Number(view.getBigUint64(16, true)),
  };
}
