/**
 * libc bindings: the handful of system calls Snowflock needs, each checked by {@link check}.
 *
 * The library is opened lazily, once per thread (every Worker gets its own module instance and
 * so its own handle and its own `errno` location, which is thread-local in glibc).
 *
 * @module
 */

const symbols = {
  // long syscall(long number, ...): called with exactly one variadic long argument.
  syscall: { parameters: ["i64", "i64"], result: "i64" },
  // int ioctl(int fd, unsigned long request, void *arg): arg points at a kernel struct.
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int ioctl(int fd, unsigned long request, unsigned long arg): arg passed by value.
  ioctl_value: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  // int open(const char *path, int flags)
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int close(int fd)
  close: { parameters: ["i32"], result: "i32" },
  // int madvise(void *addr, size_t length, int advice): addr passed as an integer address.
  madvise: { parameters: ["u64", "usize", "i32"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout)
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // int clock_gettime(clockid_t clockid, struct timespec *tp)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // int *__errno_location(void): this thread's errno.
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let library: Libc | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

function libc(): Libc {
  if (library === undefined) {
    library = Deno.dlopen("libc.so.6", symbols).symbols;
    // __errno_location() returns this thread's errno slot; it lives as long as the thread.
    errnoView = new Deno.UnsafePointerView(library.__errno_location()!);
  }
  return library;
}

/** errno of the last failed call on this thread. */
export function errno(): number {
  libc();
  return errnoView!.getInt32(0);
}

/** Linux errno values used by Snowflock (asm-generic/errno-base.h, errno.h). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  ENOSYS: 38,
  EPROTO: 71,
  EOPNOTSUPP: 95,
} as const;

const errnoNames = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

/** The symbolic name of an errno value, e.g. `EEXIST`, or `errno 123` if unknown. */
export function errnoName(value: number): string {
  return errnoNames.get(value) ?? `errno ${value}`;
}

/** A failed C call; `errno` is the raw value, `code` its name. */
export class SyscallError extends Error {
  readonly errno: number;
  readonly code: string;
  constructor(message: string, errnoValue: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "SyscallError";
    this.errno = errnoValue;
    this.code = errnoName(errnoValue);
  }
}

/** Constructor of the error {@link check} throws; lets a binding throw its own subclass. */
export type SyscallErrorType = new (
  message: string,
  errnoValue: number,
  options?: ErrorOptions,
) => SyscallError;

const NONE: readonly number[] = [];

/**
 * The one checker for C return values. A negative `ret` is a failure: if `errno` is listed in
 * `allow` the negated errno is returned (so hot loops can handle EAGAIN without throwing),
 * otherwise it throws "Cannot <op>: <NAME> (<errno>)".
 */
export function check(
  op: string,
  ret: number | bigint,
  allow: readonly number[] = NONE,
  ErrorType: SyscallErrorType = SyscallError,
): number {
  const value = Number(ret);
  if (value >= 0) return value;
  const e = errno();
  if (allow.includes(e)) return -e;
  throw new ErrorType(`Cannot ${op}: ${errnoName(e)} (${e})`, e);
}

/** The address of the first byte of a buffer or view, as a number (user space < 2^47). */
export function addressOf(buffer: ArrayBufferLike | ArrayBufferView): number {
  // UnsafePointer.of points at the view's first byte (byteOffset included).
  const pointer = Deno.UnsafePointer.of(buffer as ArrayBuffer);
  return Number(Deno.UnsafePointer.value(pointer));
}

/** syscall(nr, arg) */
export function syscall(
  op: string,
  nr: number,
  arg: number,
  allow?: readonly number[],
  ErrorType?: SyscallErrorType,
): number {
  return check(op, libc().syscall(BigInt(nr), BigInt(arg)), allow, ErrorType);
}

/** ioctl(fd, request, arg) with `arg` a kernel struct; used synchronously, so a JS buffer is fine. */
export function ioctl(
  op: string,
  fd: number,
  request: bigint,
  arg: Uint8Array,
  allow?: readonly number[],
  ErrorType?: SyscallErrorType,
): number {
  // The kernel reads/writes `arg` only during this synchronous call; the caller holds it.
  return check(op, libc().ioctl(fd, request, arg), allow, ErrorType);
}

/** ioctl(fd, request, value) with an integer argument. */
export function ioctlValue(
  op: string,
  fd: number,
  request: bigint,
  value: number,
  ErrorType?: SyscallErrorType,
): number {
  return check(op, libc().ioctl_value(fd, request, BigInt(value)), undefined, ErrorType);
}

/** open(path, flags) */
export function open(path: string, flags: number): number {
  // NUL-terminated copy, alive for the duration of the synchronous call.
  const bytes = new TextEncoder().encode(path + "\0");
  return check(`open ${path}`, libc().open(bytes, flags));
}

/** read(fd, buf, buf.byteLength); returns bytes read or -errno for an allowed errno. */
export function read(
  op: string,
  fd: number,
  buf: Uint8Array,
  allow?: readonly number[],
): number {
  // Synchronous call: `buf` is alive and not moved (ArrayBuffer backing stores never move).
  return check(op, libc().read(fd, buf, BigInt(buf.byteLength)), allow);
}

/** write(fd, buf, buf.byteLength); returns bytes written. */
export function write(op: string, fd: number, buf: Uint8Array, allow?: readonly number[]): number {
  // Synchronous call: `buf` is alive for its duration.
  return check(op, libc().write(fd, buf, BigInt(buf.byteLength)), allow);
}

/** close(fd) */
export function close(fd: number): void {
  check(`close fd ${fd}`, libc().close(fd));
}

/** madvise(2) advice values. */
export const MADV_DONTNEED = 4;

/** madvise(address, length, advice) */
export function madvise(address: number, length: number, advice: number): void {
  check(`madvise(${advice})`, libc().madvise(BigInt(address), BigInt(length), advice));
}

/** poll(2) event bits. */
export const POLLIN = 0x1;
/** sizeof(struct pollfd): int fd; short events; short revents. */
export const POLLFD_SIZE = 8;

/** poll(fds, count, timeoutMs) over `count` 8-byte struct pollfd in `fds`; EINTR returns -EINTR. */
export function poll(fds: Uint8Array, count: number, timeoutMs: number): number {
  if (fds.byteLength < count * POLLFD_SIZE) throw new RangeError("poll: fds buffer too small");
  // Synchronous call: the kernel reads and writes `fds` only while it runs.
  return check("poll", libc().poll(fds, BigInt(count), timeoutMs), [Errno.EINTR]);
}

/** eventfd(2) flags. */
export const EFD_SEMAPHORE = 0x1;
/** eventfd(2) flag: O_NONBLOCK. */
export const EFD_NONBLOCK = 0x800;
/** eventfd(2) flag: O_CLOEXEC. */
export const EFD_CLOEXEC = 0x80000;

/** eventfd(initval, flags) */
export function eventfd(initval: number, flags: number): number {
  return check("eventfd", libc().eventfd(initval, flags));
}

/** open(2) flags. */
export const O_RDWR = 0x2;
/** open(2) flag. */
export const O_NONBLOCK = 0x800;
/** open(2) flag. */
export const O_CLOEXEC = 0x80000;

const CLOCK_MONOTONIC = 1;
let timespec: Uint8Array | undefined;
let timespecView: DataView | undefined;

/** CLOCK_MONOTONIC in microseconds: one clock shared by every thread (unlike performance.now). */
export function monotonicMicros(): number {
  if (timespec === undefined) {
    // struct timespec { time_t tv_sec; long tv_nsec; }: 16 bytes, kept for this thread's life.
    timespec = new Uint8Array(16);
    timespecView = new DataView(timespec.buffer);
  }
  check("clock_gettime", libc().clock_gettime(CLOCK_MONOTONIC, timespec));
  const view = timespecView!;
  return Number(view.getBigInt64(0, true)) * 1e6 + Number(view.getBigInt64(8, true)) / 1e3;
}
