/**
 * A WASI preview1 host over synchronous Deno APIs, for the VM's worker thread.
 *
 * Implemented: args, environ, clocks, random, fd_{read,write,pread,pwrite,
 * close,seek,tell,fdstat_get,fdstat_set_flags,filestat_get,filestat_set_size,
 * prestat_get,prestat_dir_name,readdir,sync,datasync,advise,renumber},
 * path_{open,filestat_get,create_directory,unlink_file,remove_directory,
 * rename}, proc_exit, sched_yield and poll_oneoff (clock sleeps; fd
 * subscriptions are always ready). Every other preview1 function answers
 * ENOSYS; non-preview1 imports are refused when the module is prepared.
 *
 * Both clocks read the wall clock: a clone may continue on another host, and
 * a per-process monotonic origin would make its time jump back.
 *
 * @module
 */
import {
  CLOCK,
  DIRENT_SIZE,
  ERRNO,
  EVENT_SIZE,
  EVENTTYPE_CLOCK,
  FDFLAGS,
  FDSTAT_SIZE,
  FILESTAT_SIZE,
  FILETYPE,
  HOST_ERRNO,
  LOOKUP_SYMLINK_FOLLOW,
  OFLAGS,
  RIGHT_FD_READ,
  RIGHT_FD_WRITE,
  RIGHTS_ALL,
  RIGHTS_TTY,
  SUBCLOCK_ABSTIME,
  SUBSCRIPTION_SIZE,
  WASI_PREVIEW1_FUNCTIONS,
} from "./wasi_abi.ts";
import {
  type FdEntry,
  FdTable,
  openResolved,
  type Preopen,
  resolvePath,
  type WasiState,
} from "./wasi_fds.ts";

export type { FdKind, Preopen, WasiFdState, WasiState } from "./wasi_fds.ts";

/** Thrown through the guest by `proc_exit` (and `sf_exit`) to end the VM. */
export class ProcExit extends Error {
  readonly code: number;

  constructor(code: number) {
    super(`guest exited with code ${code}`);
    this.name = "ProcExit";
    this.code = code;
  }
}

export type OutputStream = "stdout" | "stderr";

export interface WasiOptions {
  memory: WebAssembly.Memory;
  args: readonly string[];
  env: readonly string[];
  preopens: readonly Preopen[];
  onOutput(stream: OutputStream, bytes: Uint8Array): void;
  /** Descriptors to re-open (a clone); a fresh table when absent. */
  fds?: WasiState["fds"];
  /** A word at 0 that, once set and notified, ends every sleep at once (a kill). */
  sleeper?: Int32Array;
}

// deno-lint-ignore no-explicit-any
type WasiFunction = (...args: any[]) => number;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NS_PER_MS = 1_000_000;
const CLOCKS: ReadonlySet<number> = new Set(Object.values(CLOCK));

export class WasiHost {
  #memory: WebAssembly.Memory;
  #args: string[];
  #env: string[];
  #fds: FdTable;
  #onOutput: WasiOptions["onOutput"];
  #sleeper: Int32Array;
  /** Real host paths of the read-only preopens. */
  #readOnly: string[];

  /** @throws {VmError} if a preopen or (for a clone) a descriptor cannot be opened. */
  constructor(options: WasiOptions) {
    this.#memory = options.memory;
    this.#args = [...options.args];
    this.#env = [...options.env];
    this.#onOutput = options.onOutput;
    this.#sleeper = options.sleeper ?? new Int32Array(new SharedArrayBuffer(4));
    this.#readOnly = options.preopens.filter((p) => p.readOnly).map((p) => {
      try {
        return Deno.realPathSync(p.hostPath);
      } catch {
        return p.hostPath;
      }
    });
    this.#fds = options.fds
      ? FdTable.restore(options.fds, options.preopens)
      : FdTable.fresh(options.preopens);
  }

  /** The `wasi_snapshot_preview1` import object. */
  imports(): Record<string, WasiFunction> {
    const implemented = this.#implementations();
    const imports: Record<string, WasiFunction> = {};
    for (const name of WASI_PREVIEW1_FUNCTIONS) {
      const fn = implemented[name];
      imports[name] = fn ? this.#guarded(fn) : () => ERRNO.NOSYS;
    }
    return imports;
  }

  captureState(): WasiState {
    return { args: [...this.#args], env: [...this.#env], fds: this.#fds.capture() };
  }

  close(): void {
    this.#fds.closeAll();
  }

  // Host failures become errnos; only ProcExit may cross into the guest.
  #guarded(fn: WasiFunction): WasiFunction {
    return (...args) => {
      try {
        return fn(...args);
      } catch (error) {
        if (error instanceof ProcExit) throw error;
        return errnoOf(error);
      }
    };
  }

  #implementations(): Record<string, WasiFunction> {
    return {
      args_sizes_get: (countPtr: number, sizePtr: number) =>
        this.#sizes(this.#args, countPtr, sizePtr),
      args_get: (argv: number, buf: number) => this.#strings(this.#args, argv, buf),
      environ_sizes_get: (countPtr: number, sizePtr: number) =>
        this.#sizes(this.#env, countPtr, sizePtr),
      environ_get: (environ: number, buf: number) => this.#strings(this.#env, environ, buf),
      clock_res_get: (id: number, out: number) => {
        if (!CLOCKS.has(id)) return ERRNO.INVAL;
        this.#view().setBigUint64(out, 1000n, true);
        return ERRNO.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, out: number) => {
        if (!CLOCKS.has(id)) return ERRNO.INVAL;
        this.#view().setBigUint64(out, nowNs(), true);
        return ERRNO.SUCCESS;
      },
      random_get: (ptr: number, len: number) => {
        const target = this.#bytes(ptr, len);
        // getRandomValues refuses shared memory and takes 64 KiB at most.
        for (let at = 0; at < len; at += 65536) {
          target.set(crypto.getRandomValues(new Uint8Array(Math.min(65536, len - at))), at);
        }
        return ERRNO.SUCCESS;
      },
      fd_write: (fd: number, iovs: number, count: number, written: number) =>
        this.#fdWrite(fd, iovs, count, written, null),
      fd_pwrite: (fd: number, iovs: number, count: number, offset: bigint, written: number) =>
        this.#fdWrite(fd, iovs, count, written, offset),
      fd_read: (fd: number, iovs: number, count: number, read: number) =>
        this.#fdRead(fd, iovs, count, read, null),
      fd_pread: (fd: number, iovs: number, count: number, offset: bigint, read: number) =>
        this.#fdRead(fd, iovs, count, read, offset),
      fd_close: (fd: number) => this.#fds.close(fd) ? ERRNO.SUCCESS : ERRNO.BADF,
      fd_seek: (fd: number, offset: bigint, whence: number, out: number) => {
        const file = this.#fds.get(fd)?.file;
        if (!file) return this.#fds.get(fd) ? ERRNO.SPIPE : ERRNO.BADF;
        const mode = [Deno.SeekMode.Start, Deno.SeekMode.Current, Deno.SeekMode.End][whence];
        if (mode === undefined) return ERRNO.INVAL;
        this.#view().setBigUint64(out, BigInt(file.seekSync(offset, mode)), true);
        return ERRNO.SUCCESS;
      },
      fd_tell: (fd: number, out: number) => {
        const file = this.#fds.get(fd)?.file;
        if (!file) return this.#fds.get(fd) ? ERRNO.SPIPE : ERRNO.BADF;
        this.#view().setBigUint64(out, BigInt(file.seekSync(0, Deno.SeekMode.Current)), true);
        return ERRNO.SUCCESS;
      },
      fd_fdstat_get: (fd: number, out: number) => {
        const entry = this.#fds.get(fd);
        if (!entry) return ERRNO.BADF;
        const view = this.#view();
        this.#bytes(out, FDSTAT_SIZE).fill(0);
        view.setUint8(out, filetypeOf(entry));
        view.setUint16(out + 2, entry.flags, true);
        view.setBigUint64(out + 8, isStdio(entry) ? RIGHTS_TTY : RIGHTS_ALL, true);
        view.setBigUint64(out + 16, RIGHTS_ALL, true);
        return ERRNO.SUCCESS;
      },
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const entry = this.#fds.get(fd);
        if (!entry) return ERRNO.BADF;
        // Only NONBLOCK can change: an open host file cannot switch modes.
        if ((flags & ~FDFLAGS.NONBLOCK) !== (entry.flags & ~FDFLAGS.NONBLOCK)) {
          return ERRNO.NOTSUP;
        }
        entry.flags = flags;
        return ERRNO.SUCCESS;
      },
      fd_filestat_get: (fd: number, out: number) => {
        const entry = this.#fds.get(fd);
        if (!entry) return ERRNO.BADF;
        if (isStdio(entry)) {
          this.#bytes(out, FILESTAT_SIZE).fill(0);
          this.#view().setUint8(out + 16, FILETYPE.CHARACTER_DEVICE);
          return ERRNO.SUCCESS;
        }
        this.#writeFilestat(
          out,
          entry.file ? entry.file.statSync() : Deno.statSync(entry.hostPath),
        );
        return ERRNO.SUCCESS;
      },
      fd_filestat_set_size: (fd: number, size: bigint) => {
        const file = this.#fds.get(fd)?.file;
        if (!file) return ERRNO.BADF;
        file.truncateSync(Number(size));
        return ERRNO.SUCCESS;
      },
      fd_prestat_get: (fd: number, out: number) => {
        const entry = this.#fds.get(fd);
        if (entry?.kind !== "preopen") return ERRNO.BADF;
        const view = this.#view();
        view.setUint32(out, 0, true);
        view.setUint32(out + 4, encoder.encode(entry.guestPath).length, true);
        return ERRNO.SUCCESS;
      },
      fd_prestat_dir_name: (fd: number, ptr: number, len: number) => {
        const entry = this.#fds.get(fd);
        if (entry?.kind !== "preopen") return ERRNO.BADF;
        const name = encoder.encode(entry.guestPath);
        if (name.length > len) return ERRNO.NAMETOOLONG;
        this.#bytes(ptr, name.length).set(name);
        return ERRNO.SUCCESS;
      },
      fd_readdir: (fd: number, buf: number, len: number, cookie: bigint, used: number) =>
        this.#fdReaddir(fd, buf, len, cookie, used),
      fd_sync: (fd: number) => this.#sync(fd, (file) => file.syncSync()),
      fd_datasync: (fd: number) => this.#sync(fd, (file) => file.syncDataSync()),
      fd_advise: (fd: number) => this.#fds.get(fd) ? ERRNO.SUCCESS : ERRNO.BADF,
      fd_renumber: (from: number, to: number) =>
        this.#fds.renumber(from, to) ? ERRNO.SUCCESS : ERRNO.BADF,
      path_open: (
        dirFd: number,
        _lookup: number,
        pathPtr: number,
        pathLen: number,
        oflags: number,
        rightsBase: bigint,
        _rightsInheriting: bigint,
        fdflags: number,
        out: number,
      ) => {
        const resolved = this.#resolve(dirFd, pathPtr, pathLen);
        if (typeof resolved === "number") return resolved;
        const changes = (oflags & (OFLAGS.CREAT | OFLAGS.TRUNC)) !== 0 ||
          (rightsBase & RIGHT_FD_WRITE) !== 0n;
        if (changes && this.#isReadOnly(resolved.host)) return ERRNO.ROFS;
        const entry = openResolved(resolved, {
          directory: (oflags & OFLAGS.DIRECTORY) !== 0,
          create: (oflags & OFLAGS.CREAT) !== 0,
          exclusive: (oflags & OFLAGS.EXCL) !== 0,
          truncate: (oflags & OFLAGS.TRUNC) !== 0,
          readable: (rightsBase & RIGHT_FD_READ) !== 0n,
          writable: (rightsBase & RIGHT_FD_WRITE) !== 0n,
          flags: fdflags,
        });
        this.#view().setUint32(out, this.#fds.add(entry), true);
        return ERRNO.SUCCESS;
      },
      path_filestat_get: (
        dirFd: number,
        lookup: number,
        pathPtr: number,
        pathLen: number,
        out: number,
      ) => {
        const resolved = this.#resolve(dirFd, pathPtr, pathLen);
        if (typeof resolved === "number") return resolved;
        const follow = (lookup & LOOKUP_SYMLINK_FOLLOW) !== 0;
        this.#writeFilestat(
          out,
          follow ? Deno.statSync(resolved.host) : Deno.lstatSync(resolved.host),
        );
        return ERRNO.SUCCESS;
      },
      path_create_directory: (dirFd: number, pathPtr: number, pathLen: number) => {
        const resolved = this.#resolve(dirFd, pathPtr, pathLen);
        if (typeof resolved === "number") return resolved;
        if (this.#isReadOnly(resolved.host)) return ERRNO.ROFS;
        Deno.mkdirSync(resolved.host);
        return ERRNO.SUCCESS;
      },
      path_unlink_file: (dirFd: number, pathPtr: number, pathLen: number) => {
        const resolved = this.#resolve(dirFd, pathPtr, pathLen);
        if (typeof resolved === "number") return resolved;
        if (this.#isReadOnly(resolved.host)) return ERRNO.ROFS;
        if (Deno.lstatSync(resolved.host).isDirectory) return ERRNO.ISDIR;
        Deno.removeSync(resolved.host);
        return ERRNO.SUCCESS;
      },
      path_remove_directory: (dirFd: number, pathPtr: number, pathLen: number) => {
        const resolved = this.#resolve(dirFd, pathPtr, pathLen);
        if (typeof resolved === "number") return resolved;
        if (this.#isReadOnly(resolved.host)) return ERRNO.ROFS;
        if (!Deno.lstatSync(resolved.host).isDirectory) return ERRNO.NOTDIR;
        Deno.removeSync(resolved.host);
        return ERRNO.SUCCESS;
      },
      path_rename: (
        fromFd: number,
        fromPtr: number,
        fromLen: number,
        toFd: number,
        toPtr: number,
        toLen: number,
      ) => {
        const from = this.#resolve(fromFd, fromPtr, fromLen);
        if (typeof from === "number") return from;
        const to = this.#resolve(toFd, toPtr, toLen);
        if (typeof to === "number") return to;
        if (this.#isReadOnly(from.host) || this.#isReadOnly(to.host)) return ERRNO.ROFS;
        Deno.renameSync(from.host, to.host);
        return ERRNO.SUCCESS;
      },
      poll_oneoff: (input: number, output: number, count: number, eventsOut: number) =>
        this.#pollOneoff(input, output, count, eventsOut),
      proc_exit: (code: number) => {
        throw new ProcExit(code);
      },
      sched_yield: () => ERRNO.SUCCESS,
    };
  }

  #view(): DataView {
    return new DataView(this.#memory.buffer);
  }

  // A view into guest memory; a range outside memory throws RangeError (EFAULT).
  #bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.#memory.buffer, ptr, len);
  }

  #string(ptr: number, len: number): string {
    // TextDecoder refuses views of shared memory: decode a copy.
    return decoder.decode(this.#bytes(ptr, len).slice());
  }

  #isReadOnly(host: string): boolean {
    return this.#readOnly.some((root) => host === root || host.startsWith(`${root}/`));
  }

  #resolve(dirFd: number, pathPtr: number, pathLen: number): ReturnType<typeof resolvePath> {
    const dir = this.#fds.get(dirFd);
    if (!dir) return ERRNO.BADF;
    return resolvePath(dir, this.#string(pathPtr, pathLen));
  }

  #sizes(strings: string[], countPtr: number, sizePtr: number): number {
    const view = this.#view();
    view.setUint32(countPtr, strings.length, true);
    view.setUint32(sizePtr, strings.reduce((n, s) => n + encoder.encode(s).length + 1, 0), true);
    return ERRNO.SUCCESS;
  }

  #strings(strings: string[], pointers: number, buf: number): number {
    const view = this.#view();
    let at = buf;
    strings.forEach((s, i) => {
      const bytes = encoder.encode(s);
      view.setUint32(pointers + 4 * i, at, true);
      this.#bytes(at, bytes.length + 1).set([...bytes, 0]);
      at += bytes.length + 1;
    });
    return ERRNO.SUCCESS;
  }

  #iovecs(iovs: number, count: number): { ptr: number; len: number }[] {
    const view = this.#view();
    return Array.from({ length: count }, (_, i) => ({
      ptr: view.getUint32(iovs + 8 * i, true),
      len: view.getUint32(iovs + 8 * i + 4, true),
    }));
  }

  #fdWrite(fd: number, iovs: number, count: number, out: number, offset: bigint | null): number {
    const entry = this.#fds.get(fd);
    if (!entry) return ERRNO.BADF;
    const vecs = this.#iovecs(iovs, count);
    const data = new Uint8Array(vecs.reduce((n, v) => n + v.len, 0));
    let at = 0;
    for (const vec of vecs) {
      data.set(this.#bytes(vec.ptr, vec.len), at);
      at += vec.len;
    }
    if (entry.kind === "stdout" || entry.kind === "stderr") {
      if (offset !== null) return ERRNO.SPIPE;
      this.#onOutput(entry.kind, data);
    } else if (entry.file && entry.writable) {
      withOffset(entry.file, offset, (file) => writeAll(file, data));
    } else {
      return ERRNO.BADF;
    }
    this.#view().setUint32(out, data.length, true);
    return ERRNO.SUCCESS;
  }

  #fdRead(fd: number, iovs: number, count: number, out: number, offset: bigint | null): number {
    const entry = this.#fds.get(fd);
    if (!entry) return ERRNO.BADF;
    if (entry.kind === "stdin") {
      // No stdin: always end of file.
      this.#view().setUint32(out, 0, true);
      return ERRNO.SUCCESS;
    }
    const file = entry.file;
    if (!file || !entry.readable) return entry.kind === "dir" ? ERRNO.ISDIR : ERRNO.BADF;
    const total = withOffset(file, offset, (f) => {
      let total = 0;
      for (const vec of this.#iovecs(iovs, count)) {
        // Deno reads into unshared buffers only.
        const chunk = new Uint8Array(vec.len);
        const n = f.readSync(chunk) ?? 0;
        this.#bytes(vec.ptr, n).set(chunk.subarray(0, n));
        total += n;
        if (n < vec.len) break;
      }
      return total;
    });
    this.#view().setUint32(out, total, true);
    return ERRNO.SUCCESS;
  }

  #fdReaddir(fd: number, buf: number, len: number, cookie: bigint, used: number): number {
    const entry = this.#fds.get(fd);
    if (!entry) return ERRNO.BADF;
    if (entry.kind !== "dir" && entry.kind !== "preopen") return ERRNO.NOTDIR;
    const names: [string, number][] = [[".", FILETYPE.DIRECTORY], ["..", FILETYPE.DIRECTORY]];
    for (const item of Deno.readDirSync(entry.hostPath)) {
      const type = item.isDirectory
        ? FILETYPE.DIRECTORY
        : item.isFile
        ? FILETYPE.REGULAR_FILE
        : item.isSymlink
        ? FILETYPE.SYMBOLIC_LINK
        : FILETYPE.UNKNOWN;
      names.push([item.name, type]);
    }
    // Serialize from the cookie on and hand over what fits: a full buffer
    // tells the guest to come back for the rest.
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (let i = Number(cookie); i < names.length && size < len; i++) {
      const [name, type] = names[i];
      const bytes = encoder.encode(name);
      const dirent = new Uint8Array(DIRENT_SIZE + bytes.length);
      const view = new DataView(dirent.buffer);
      view.setBigUint64(0, BigInt(i + 1), true);
      view.setBigUint64(8, BigInt(i + 1), true);
      view.setUint32(16, bytes.length, true);
      view.setUint8(20, type);
      dirent.set(bytes, DIRENT_SIZE);
      chunks.push(dirent);
      size += dirent.length;
    }
    let at = 0;
    for (const chunk of chunks) {
      const n = Math.min(chunk.length, len - at);
      this.#bytes(buf + at, n).set(chunk.subarray(0, n));
      at += n;
    }
    this.#view().setUint32(used, at, true);
    return ERRNO.SUCCESS;
  }

  #sync(fd: number, sync: (file: Deno.FsFile) => void): number {
    const entry = this.#fds.get(fd);
    if (!entry) return ERRNO.BADF;
    if (entry.file) sync(entry.file);
    return ERRNO.SUCCESS;
  }

  #writeFilestat(out: number, info: Deno.FileInfo): void {
    const view = this.#view();
    this.#bytes(out, FILESTAT_SIZE).fill(0);
    view.setBigUint64(out, BigInt(info.dev ?? 0), true);
    view.setBigUint64(out + 8, BigInt(info.ino ?? 0), true);
    view.setUint8(
      out + 16,
      info.isDirectory
        ? FILETYPE.DIRECTORY
        : info.isFile
        ? FILETYPE.REGULAR_FILE
        : info.isSymlink
        ? FILETYPE.SYMBOLIC_LINK
        : FILETYPE.UNKNOWN,
    );
    view.setBigUint64(out + 24, BigInt(info.nlink ?? 1), true);
    view.setBigUint64(out + 32, BigInt(info.size), true);
    view.setBigUint64(out + 40, dateNs(info.atime), true);
    view.setBigUint64(out + 48, dateNs(info.mtime), true);
    view.setBigUint64(out + 56, dateNs(info.ctime ?? info.mtime), true);
  }

  #pollOneoff(input: number, output: number, count: number, eventsOut: number): number {
    if (count === 0) return ERRNO.INVAL;
    const view = this.#view();
    const now = nowNs();
    const subs = Array.from({ length: count }, (_, i) => {
      const at = input + i * SUBSCRIPTION_SIZE;
      const tag = view.getUint8(at + 8);
      const timeout = view.getBigUint64(at + 24, true);
      const absolute = (view.getUint16(at + 40, true) & SUBCLOCK_ABSTIME) !== 0;
      return {
        userdata: view.getBigUint64(at, true),
        tag,
        deadline: tag !== EVENTTYPE_CLOCK ? now : absolute ? timeout : now + timeout,
      };
    });
    // fd subscriptions are always ready, so a poll with one never sleeps.
    const wake = subs.reduce((min, s) => s.deadline < min ? s.deadline : min, subs[0].deadline);
    if (wake > now) Atomics.wait(this.#sleeper, 0, 0, Number(wake - now) / NS_PER_MS);
    const due = subs.filter((s) => s.deadline <= wake);
    due.forEach((sub, i) => {
      const at = output + i * EVENT_SIZE;
      this.#bytes(at, EVENT_SIZE).fill(0);
      view.setBigUint64(at, sub.userdata, true);
      view.setUint8(at + 10, sub.tag);
    });
    view.setUint32(eventsOut, due.length, true);
    return ERRNO.SUCCESS;
  }
}

function isStdio(entry: FdEntry): boolean {
  return entry.kind === "stdin" || entry.kind === "stdout" || entry.kind === "stderr";
}

function filetypeOf(entry: FdEntry): number {
  if (isStdio(entry)) return FILETYPE.CHARACTER_DEVICE;
  return entry.kind === "file" ? FILETYPE.REGULAR_FILE : FILETYPE.DIRECTORY;
}

function withOffset<T>(file: Deno.FsFile, offset: bigint | null, io: (file: Deno.FsFile) => T): T {
  if (offset === null) return io(file);
  const saved = file.seekSync(0, Deno.SeekMode.Current);
  file.seekSync(offset, Deno.SeekMode.Start);
  try {
    return io(file);
  } finally {
    file.seekSync(saved, Deno.SeekMode.Start);
  }
}

function writeAll(file: Deno.FsFile, data: Uint8Array): void {
  for (let at = 0; at < data.length;) at += file.writeSync(data.subarray(at));
}

function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * NS_PER_MS));
}

function dateNs(date: Date | null): bigint {
  return date ? BigInt(date.getTime()) * BigInt(NS_PER_MS) : 0n;
}

function errnoOf(error: unknown): number {
  if (error instanceof RangeError) return ERRNO.FAULT;
  const code = (error as { code?: unknown })?.code;
  return (typeof code === "string" && HOST_ERRNO[code]) || ERRNO.IO;
}
