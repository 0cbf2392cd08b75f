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
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset): addr passed
  // as an integer address; MAP_FAILED is (void *)-1, negative as an i64.
  mmap: { parameters: ["u64", "usize", "i32", "i32", "i32", "i64"], result: "i64" },
  // ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  // pid_t gettid(void)
  gettid: { parameters: [], result: "i32" },
  // int setpriority(int which, id_t who, int prio): with PRIO_PROCESS and a thread id, that
  // thread's nice value (Linux).
  setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
  // int memfd_create(const char *name, unsigned int flags)
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  // int ftruncate(int fd, off_t length)
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  // int mincore(void *addr, size_t length, unsigned char *vec): addr passed as an integer
  // address; vec holds one byte per page of the range.
  mincore: { parameters: ["u64", "usize", "buffer"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout)
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // int clock_gettime(clockid_t clockid, struct timespec *tp)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // int socket(int domain, int type, int protocol)
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int connect(int fd, const struct sockaddr *addr, socklen_t len)
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t send(int fd, const void *buf, size_t len, int flags)
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  // ssize_t recv(int fd, void *buf, size_t len, int flags)
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  // int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len)
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int listen(int fd, int backlog)
  listen: { parameters: ["i32", "i32"], result: "i32" },
  // int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags): addr NULL here.
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  // int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
  //                socklen_t tolen)
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  // int recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *timeout):
  // waits on a thread of Deno's blocking pool (the event loop goes on), so `vec` and every buffer
  // it points at must stay alive and untouched until the promise settles. errno is that
  // thread's, so a failure is only -1.
  recvmmsg: {
    parameters: ["i32", "pointer", "u32", "i32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  // The same on the calling thread, with MSG_DONTWAIT: what is queued now, or EAGAIN.
  recvmmsgNow: {
    name: "recvmmsg",
    parameters: ["i32", "buffer", "u32", "i32", "pointer"],
    result: "i32",
  },
  // int shutdown(int fd, int how)
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
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
  EPIPE: 32,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  EINPROGRESS: 115,
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
  return check(`open ${path}`, libc().open(cString(path), flags));
}

function cString(text: string): Uint8Array {
  return new TextEncoder().encode(text + "\0");
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
/** madvise: back the range with transparent huge pages (asm-generic/mman-common.h). */
export const MADV_HUGEPAGE = 14;

/** madvise(address, length, advice) */
export function madvise(address: number, length: number, advice: number): void {
  check(`madvise(${advice})`, libc().madvise(BigInt(address), BigInt(length), advice));
}

/** The kernel's page size on every host Snowflock runs on (x86_64, aarch64 with 4 KiB pages). */
export const OS_PAGE = 4096;

const PROT_READ_WRITE = 0x1 | 0x2;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MFD_CLOEXEC = 0x1;

/** memfd_create(name) resized to `bytes`: a memory file whose pages are allocated as written. */
export function memoryFile(name: string, bytes: number): number {
  // The name is copied by the kernel during this synchronous call.
  const fd = check("memfd_create", libc().memfd_create(cString(name), MFD_CLOEXEC));
  try {
    check("ftruncate a memory file", libc().ftruncate(fd, BigInt(bytes)));
  } catch (error) {
    close(fd);
    throw error;
  }
  return fd;
}

/**
 * Maps file `fd` read-write and private (copy on write) at `address`, in place of whatever was
 * mapped there: reads see the file, writes make private copies.
 */
export function mapPrivateAt(address: number, length: number, fd: number): void {
  const flags = MAP_PRIVATE | MAP_FIXED;
  check(
    "mmap a file at an address",
    libc().mmap(BigInt(address), BigInt(length), PROT_READ_WRITE, flags, fd, 0n),
  );
}

/** Maps fresh zero pages read-write at `address`, in place of whatever was mapped there. */
export function mapZeroAt(address: number, length: number): void {
  const flags = MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS;
  check(
    "mmap zero pages at an address",
    libc().mmap(BigInt(address), BigInt(length), PROT_READ_WRITE, flags, -1, 0n),
  );
}

/**
 * Sets the calling thread's nice value (0 normal … 19 lowest). Lowering a thread's priority is
 * always allowed; raising it needs CAP_SYS_NICE: returns false when refused.
 */
export function setThreadNice(nice: number): boolean {
  const PRIO_PROCESS = 0;
  const tid = libc().gettid();
  const ok = check(`setpriority ${nice}`, libc().setpriority(PRIO_PROCESS, tid, nice), [
    Errno.EACCES,
    Errno.EPERM,
  ]);
  return ok >= 0;
}

/** Writes all of `bytes` to file `fd` at `offset` (pwrite, again after a short write). */
export function writeAt(fd: number, bytes: Uint8Array, offset: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    // Synchronous call: the kernel reads `bytes` during it only.
    const rest = bytes.subarray(done);
    const wrote = check(
      "pwrite",
      libc().pwrite(fd, rest, BigInt(rest.byteLength), BigInt(offset + done)),
    );
    if (wrote === 0) throw new SyscallError("Cannot pwrite: no progress", 0);
    done += wrote;
  }
}

/**
 * mincore(address, vec.byteLength pages, vec): bit 0 of vec[i] is set when page i is resident.
 * `address` must be page aligned.
 */
export function mincore(address: number, pageSize: number, vec: Uint8Array): void {
  // Synchronous call: the kernel writes vec.byteLength bytes into `vec`, alive for the call.
  const length = BigInt(vec.byteLength * pageSize);
  check("mincore", libc().mincore(BigInt(address), length, vec));
}

/** poll(2) event bits. */
export const POLLIN = 0x1;
/** poll(2): writable. */
export const POLLOUT = 0x4;
/** poll(2): error / hang-up (reported in revents whether asked or not). */
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
/** sizeof(struct pollfd): int fd; short events; short revents. */
export const POLLFD_SIZE = 8;

/** poll(fds, count, timeoutMs) over `count` 8-byte struct pollfd in `fds`; EINTR returns -EINTR. */
export function poll(fds: Uint8Array, count: number, timeoutMs: number): number {
  if (fds.byteLength < count * POLLFD_SIZE) throw new RangeError("poll: fds buffer too small");
  // Synchronous call: the kernel reads and writes `fds` only while it runs.
  return check("poll", libc().poll(fds, BigInt(count), timeoutMs), [Errno.EINTR]);
}

/**
 * poll(2) that first checks without sleeping for up to `spinUs` µs, then sleeps up to
 * `timeoutMs` (-1: no limit). For a thread expecting an answer within tens of µs: waking a
 * sleeping thread on an idle vCPU here costs ~50 µs on each side of a round trip (measured:
 * remote fault p50 147–170 µs sleeping at once, 38–42 µs with both ends spinning 100 µs).
 */
export function pollSpinning(
  fds: Uint8Array,
  count: number,
  spinUs: number,
  timeoutMs: number,
): number {
  const end = monotonicMicros() + spinUs;
  do {
    const ready = poll(fds, count, 0);
    if (ready !== 0) return ready;
  } while (monotonicMicros() < end);
  return poll(fds, count, timeoutMs);
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

// ---- sockets (driven with poll by worker threads; the main thread uses Deno's async sockets) ----

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0x800;
const SOCK_CLOEXEC = 0x80000;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const SO_RCVBUF = 8;
const SO_SNDBUF = 7;
const SO_RCVBUFFORCE = 33;
const SO_SNDBUFFORCE = 32;
const SHUT_RD = 0;
/** send(2)/recv(2) flag: do not block. */
export const MSG_DONTWAIT = 0x40;
/** send(2) flag: no SIGPIPE on a closed peer (EPIPE instead). */
export const MSG_NOSIGNAL = 0x4000;

/**
 * A non-blocking TCP connection to `ipv4:port` with TCP_NODELAY, connected within `timeoutMs`
 * (a SYN that is never answered would otherwise block for minutes). Throws SyscallError naming
 * the address.
 */
export function tcpConnect(ipv4: string, port: number, timeoutMs: number): number {
  const where = `connect to ${ipv4}:${port}`;
  const addr = sockaddrIn(ipv4, port, 1, where);
  const fd = check(where, libc().socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    // addr: read during the synchronous connect only.
    const r = check(where, libc().connect(fd, addr, SOCKADDR_IN_SIZE), [Errno.EINPROGRESS]);
    if (r < 0) {
      const pfd = new Uint8Array(POLLFD_SIZE);
      const pv = new DataView(pfd.buffer);
      pv.setInt32(0, fd, true);
      pv.setInt16(4, POLLOUT, true);
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const left = Math.max(0, Math.ceil(deadline - performance.now()));
        const n = poll(pfd, 1, left);
        if (n > 0) break;
        if (n === 0) {
          throw new SyscallError(`Cannot ${where}: ETIMEDOUT (${timeoutMs} ms)`, Errno.ETIMEDOUT);
        }
      }
      // SO_ERROR: int, 4 bytes; socklen_t length 4; both read/written during the call.
      const err = new Int32Array(1);
      const len = new Uint32Array([4]);
      const u8 = (a: Int32Array | Uint32Array) => new Uint8Array(a.buffer);
      check(where, libc().getsockopt(fd, SOL_SOCKET, SO_ERROR, u8(err), u8(len)));
      if (err[0] !== 0) {
        throw new SyscallError(`Cannot ${where}: ${errnoName(err[0])} (${err[0]})`, err[0]);
      }
    }
    setIntOption(fd, IPPROTO_TCP, TCP_NODELAY, 1, "set TCP_NODELAY");
    return fd;
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/** sizeof(struct sockaddr_in). */
export const SOCKADDR_IN_SIZE = 16;

/**
 * struct sockaddr_in for `ipv4:port`: u16 family (host order), u16 port and u32 address
 * (network order), 8 zero bytes. `minPort` 0 lets a listener ask for any free port.
 */
export function sockaddrIn(
  ipv4: string,
  port: number,
  minPort: number,
  op: string,
): Uint8Array {
  const octets = ipv4.split(".").map(Number);
  if (
    octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255) ||
    !Number.isInteger(port) || port < minPort || port > 65535
  ) {
    throw new TypeError(`Cannot ${op}: not an IPv4 address and port`);
  }
  const addr = new Uint8Array(SOCKADDR_IN_SIZE);
  const v = new DataView(addr.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, port, false);
  addr.set(octets, 4);
  return addr;
}

/**
 * A non-blocking TCP listening socket on `ipv4:port` (port 0: any free port), with
 * SO_REUSEADDR as Deno.listen sets it. Returns the socket and the port it got.
 */
export function tcpListen(
  ipv4: string,
  port: number,
  backlog = 128,
): { fd: number; port: number } {
  const where = `listen on ${ipv4}:${port}`;
  const addr = sockaddrIn(ipv4, port, 0, where);
  const fd = check(where, libc().socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, `${where}: set SO_REUSEADDR`);
    const bound = bindPort(fd, addr, where);
    check(where, libc().listen(fd, backlog));
    return { fd, port: bound };
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/**
 * Accept one connection on a non-blocking listening socket: a non-blocking, close-on-exec
 * socket with TCP_NODELAY, or -EAGAIN when none is waiting (a connection reset before it was
 * accepted counts as none).
 */
export function tcpAccept(fd: number): number {
  const got = check(
    "accept",
    libc().accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC),
    [Errno.EAGAIN, Errno.ECONNABORTED, Errno.EINTR],
  );
  if (got < 0) return -Errno.EAGAIN;
  try {
    setIntOption(got, IPPROTO_TCP, TCP_NODELAY, 1, "set TCP_NODELAY");
  } catch (e) {
    libc().close(got);
    throw e;
  }
  return got;
}

/**
 * A blocking, close-on-exec UDP socket bound to `ipv4:port` (port 0: any free port), with
 * SO_REUSEADDR when `reuseAddr` (several receivers of one multicast port). Returns the socket and
 * the port it got.
 */
export function udpBind(
  ipv4: string,
  port: number,
  reuseAddr: boolean,
): { fd: number; port: number } {
  const where = `bind UDP ${ipv4}:${port}`;
  const addr = sockaddrIn(ipv4, port, 0, where);
  const fd = check(where, libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  try {
    if (reuseAddr) setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, `${where}: set SO_REUSEADDR`);
    return { fd, port: bindPort(fd, addr, where) };
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/** bind(fd, addr), then the port bound (getsockname: port 0 asks for any). */
function bindPort(fd: number, addr: Uint8Array, where: string): number {
  // addr: read during the synchronous bind, then filled by the synchronous getsockname.
  check(where, libc().bind(fd, addr, SOCKADDR_IN_SIZE));
  const len = new Uint8Array(new Uint32Array([SOCKADDR_IN_SIZE]).buffer);
  check(where, libc().getsockname(fd, addr, len));
  return new DataView(addr.buffer).getUint16(2, false);
}

/** setsockopt(fd, level, name, value); `value` is read during the synchronous call only. */
export function setSocketOption(
  op: string,
  fd: number,
  level: number,
  name: number,
  value: Uint8Array,
): void {
  check(op, libc().setsockopt(fd, level, name, value, value.byteLength));
}

/** setsockopt(fd, level, name, int value) */
function setIntOption(fd: number, level: number, name: number, value: number, op: string): void {
  // int option value: 4 bytes, read during the synchronous call.
  setSocketOption(op, fd, level, name, new Uint8Array(new Int32Array([value]).buffer));
}

/**
 * Ask for a receive buffer of `bytes`: beyond net.core.rmem_max where this process may
 * (SO_RCVBUFFORCE needs CAP_NET_ADMIN), else capped at it.
 */
export function setReceiveBuffer(fd: number, bytes: number): void {
  setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes, "set SO_RCVBUF");
}

/** As {@link setReceiveBuffer}, for the send buffer (net.core.wmem_max). */
export function setSendBuffer(fd: number, bytes: number): void {
  setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes, "set SO_SNDBUF");
}

function setBuffer(fd: number, force: number, plain: number, bytes: number, op: string): void {
  // int option value: 4 bytes, read during the synchronous call.
  const v = new Uint8Array(new Int32Array([bytes]).buffer);
  if (libc().setsockopt(fd, SOL_SOCKET, force, v, 4) === 0) return;
  setIntOption(fd, SOL_SOCKET, plain, bytes, op);
}

/**
 * sendto(fd, buf, MSG_DONTWAIT, to) with `to` a struct sockaddr_in: bytes sent, or -errno for any
 * failure (a full buffer, no route): a datagram that cannot leave now is lost, as on the wire.
 */
export function sendTo(fd: number, buf: Uint8Array, to: Uint8Array): number {
  // Synchronous call: the kernel copies `buf` and reads `to` before returning.
  const r = Number(libc().sendto(fd, buf, BigInt(buf.byteLength), MSG_DONTWAIT, to, to.byteLength));
  return r >= 0 ? r : -errno();
}

/**
 * recvmmsg(fd, vec, count, flags, NULL) on a pool thread: resolves with the messages received or
 * -1. `vec` (struct mmsghdr[count]) and the buffers it points at must stay alive and untouched
 * until then.
 */
export function receiveMessages(
  fd: number,
  vec: Uint8Array,
  count: number,
  flags: number,
): Promise<number> {
  return libc().recvmmsg(
    fd,
    Deno.UnsafePointer.of(vec as Uint8Array<ArrayBuffer>),
    count,
    flags,
    null,
  );
}

/**
 * recvmmsg(fd, vec, count, MSG_DONTWAIT, NULL) on this thread: the messages queued now (0 when
 * none), or -errno.
 */
export function receiveMessagesNow(fd: number, vec: Uint8Array, count: number): number {
  // Synchronous call: the kernel writes `vec` and its buffers before returning.
  const r = libc().recvmmsgNow(fd, vec, count, MSG_DONTWAIT, null);
  if (r >= 0) return r;
  const e = errno();
  return e === Errno.EAGAIN ? 0 : -e;
}

/** shutdown(fd, SHUT_RD): a receive blocked on `fd` in another thread returns. */
export function shutdownReceive(fd: number): void {
  // An unconnected UDP socket answers ENOTCONN yet is shut down and its waiters woken.
  check("shutdown", libc().shutdown(fd, SHUT_RD), [Errno.ENOTCONN]);
}

/** send(fd, buf, flags | MSG_NOSIGNAL); bytes sent, or -errno for an allowed errno. */
export function send(
  op: string,
  fd: number,
  buf: Uint8Array,
  flags: number,
  allow?: readonly number[],
): number {
  // Synchronous call: the kernel copies from `buf` before returning.
  return check(op, libc().send(fd, buf, BigInt(buf.byteLength), flags | MSG_NOSIGNAL), allow);
}

/** recv(fd, buf, flags); bytes received (0 = peer closed), or -errno for an allowed errno. */
export function recv(
  op: string,
  fd: number,
  buf: Uint8Array,
  flags: number,
  allow?: readonly number[],
): number {
  // Synchronous call: the kernel writes into `buf` before returning.
  return check(op, libc().recv(fd, buf, BigInt(buf.byteLength), flags), allow);
}
