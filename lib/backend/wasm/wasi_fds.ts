/**
 * The WASI file-descriptor table: stdio, preopened directories and the files
 * and directories opened beneath them, with every guest path confined to the
 * directory it is resolved against. Its state can be captured at a fork and
 * re-opened by guest path in a clone (which may run on another host, with its
 * own host directories behind the same guest paths).
 *
 * @module
 */
import { basename, dirname, join, posix } from "node:path";
import { VmError } from "./errors.ts";
import { ERRNO, FDFLAGS } from "./wasi_abi.ts";

/** A guest directory backed by a host directory. */
export interface Preopen {
  guestPath: string;
  hostPath: string;
  /** The guest may read but never create, change or remove anything here (EROFS). */
  readOnly?: boolean;
}

export type FdKind = "stdin" | "stdout" | "stderr" | "preopen" | "file" | "dir";

/** One open descriptor, as a fork carries it. */
export interface WasiFdState {
  fd: number;
  kind: FdKind;
  guestPath: string;
  /** File offset; 0 for everything but files. */
  position: number;
  /** WASI fdflags (append, sync…). */
  flags: number;
  readable: boolean;
  writable: boolean;
}

/** The WASI state of a VM at a fork: what a clone needs besides memory. */
export interface WasiState {
  args: string[];
  env: string[];
  fds: WasiFdState[];
}

/** An open descriptor. `hostPath` is real (symlink-free) for directories. */
export interface FdEntry {
  kind: FdKind;
  guestPath: string;
  hostPath: string;
  flags: number;
  readable: boolean;
  writable: boolean;
  file?: Deno.FsFile;
}

/** Where a guest path resolved to, or the WASI errno why it cannot. */
export type Resolved = { host: string; guest: string } | number;

/** Options for opening a file or directory under a directory descriptor. */
export interface OpenRequest {
  directory: boolean;
  create: boolean;
  exclusive: boolean;
  truncate: boolean;
  readable: boolean;
  writable: boolean;
  flags: number;
}

export class FdTable {
  #entries = new Map<number, FdEntry>();

  /** A fresh table: stdio on 0–2, then the preopens from fd 3 in order. */
  static fresh(preopens: readonly Preopen[]): FdTable {
    const table = new FdTable();
    table.#installStdio();
    preopens.forEach((preopen, i) => table.#entries.set(3 + i, openPreopen(preopen)));
    return table;
  }

  /**
   * The table of a clone: the same descriptor numbers as at the fork, with
   * guest paths mapped through this host's preopens.
   *
   * @throws {VmError} if a preopen has no host directory here or a file cannot
   * be re-opened.
   */
  static restore(fds: readonly WasiFdState[], preopens: readonly Preopen[]): FdTable {
    const table = new FdTable();
    const roots = preopens.map(openPreopen);
    for (const state of fds) table.#entries.set(state.fd, reopen(state, roots));
    return table;
  }

  get(fd: number): FdEntry | undefined {
    return this.#entries.get(fd);
  }

  /** Installs `entry` at the lowest free descriptor and returns it. */
  add(entry: FdEntry): number {
    let fd = 3;
    while (this.#entries.has(fd)) fd++;
    this.#entries.set(fd, entry);
    return fd;
  }

  close(fd: number): boolean {
    const entry = this.#entries.get(fd);
    if (!entry) return false;
    entry.file?.close();
    this.#entries.delete(fd);
    return true;
  }

  renumber(from: number, to: number): boolean {
    const entry = this.#entries.get(from);
    if (!entry || !this.#entries.has(to)) return false;
    if (from === to) return true;
    this.close(to);
    this.#entries.set(to, entry);
    this.#entries.delete(from);
    return true;
  }

  capture(): WasiFdState[] {
    return [...this.#entries].map(([fd, entry]) => ({
      fd,
      kind: entry.kind,
      guestPath: entry.guestPath,
      position: entry.file ? entry.file.seekSync(0, Deno.SeekMode.Current) : 0,
      flags: entry.flags,
      readable: entry.readable,
      writable: entry.writable,
    }));
  }

  closeAll(): void {
    for (const fd of [...this.#entries.keys()]) this.close(fd);
  }

  #installStdio(): void {
    const stdio = (kind: FdKind, readable: boolean): FdEntry => ({
      kind,
      guestPath: "",
      hostPath: "",
      flags: 0,
      readable,
      writable: !readable,
    });
    this.#entries.set(0, stdio("stdin", true));
    this.#entries.set(1, stdio("stdout", false));
    this.#entries.set(2, stdio("stderr", false));
  }
}

/**
 * Resolves `path` beneath the directory `dir`. Absolute paths, `..` above
 * `dir` and symlinks leading out of it are refused (ENOTCAPABLE).
 */
export function resolvePath(dir: FdEntry, path: string): Resolved {
  if (dir.kind !== "preopen" && dir.kind !== "dir") return ERRNO.NOTDIR;
  if (path.startsWith("/")) return ERRNO.NOTCAPABLE;
  if (path.includes("\0")) return ERRNO.INVAL;
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) return ERRNO.NOTCAPABLE;
      parts.pop();
    } else {
      parts.push(part);
    }
  }
  const host = join(dir.hostPath, ...parts);
  const real = realPathOfPrefix(host);
  if (real === null) return ERRNO.NOTCAPABLE;
  if (real !== dir.hostPath && !real.startsWith(`${dir.hostPath}/`)) return ERRNO.NOTCAPABLE;
  return { host, guest: posix.join(dir.guestPath, ...parts) };
}

/** Opens a resolved path as a descriptor entry. Host errors propagate. */
export function openResolved(resolved: { host: string; guest: string }, req: OpenRequest): FdEntry {
  let isDirectory = false;
  try {
    isDirectory = Deno.statSync(resolved.host).isDirectory;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound) || !req.create) throw error;
  }
  if (isDirectory || req.directory) {
    if (!isDirectory) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
    if (req.writable && !req.directory) {
      throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    }
    return {
      kind: "dir",
      guestPath: resolved.guest,
      hostPath: Deno.realPathSync(resolved.host),
      flags: req.flags,
      readable: true,
      writable: false,
    };
  }
  const append = (req.flags & FDFLAGS.APPEND) !== 0;
  // Deno refuses create/truncate without write access, which WASI allows.
  const writable = req.writable || req.create || req.truncate;
  const file = Deno.openSync(resolved.host, {
    read: req.readable || !writable,
    write: writable && !append,
    append: append && writable,
    create: req.create && !req.exclusive,
    createNew: req.create && req.exclusive,
    truncate: req.truncate,
  });
  return {
    kind: "file",
    guestPath: resolved.guest,
    hostPath: resolved.host,
    flags: req.flags,
    readable: req.readable,
    writable,
    file,
  };
}

function openPreopen(preopen: Preopen): FdEntry {
  let hostPath: string;
  try {
    hostPath = Deno.realPathSync(preopen.hostPath);
  } catch (error) {
    throw new VmError(
      `Cannot preopen ${preopen.guestPath}: ${preopen.hostPath} is not accessible`,
      { cause: error },
    );
  }
  if (!Deno.statSync(hostPath).isDirectory) {
    throw new VmError(`Cannot preopen ${preopen.guestPath}: ${hostPath} is not a directory`);
  }
  return {
    kind: "preopen",
    guestPath: posix.normalize(preopen.guestPath),
    hostPath,
    flags: 0,
    readable: true,
    writable: true,
  };
}

function reopen(state: WasiFdState, roots: FdEntry[]): FdEntry {
  const base = {
    kind: state.kind,
    guestPath: state.guestPath,
    hostPath: "",
    flags: state.flags,
    readable: state.readable,
    writable: state.writable,
  };
  if (state.kind === "stdin" || state.kind === "stdout" || state.kind === "stderr") return base;
  if (state.kind === "preopen") {
    const root = roots.find((r) => r.guestPath === posix.normalize(state.guestPath));
    if (!root) {
      throw new VmError(`Cannot resume VM: no host directory for preopen ${state.guestPath}`);
    }
    return root;
  }
  const root = roots
    .filter((r) => state.guestPath === r.guestPath || state.guestPath.startsWith(`${r.guestPath}/`))
    .sort((a, b) => b.guestPath.length - a.guestPath.length)[0];
  const resolved = root ? resolvePath(root, posix.relative(root.guestPath, state.guestPath)) : -1;
  if (typeof resolved === "number") {
    throw new VmError(`Cannot resume VM: ${state.guestPath} is outside every preopen`);
  }
  try {
    const entry = openResolved(resolved, {
      directory: state.kind === "dir",
      // A clone elsewhere has its own, possibly empty, output directory.
      create: state.kind === "file" && state.writable,
      exclusive: false,
      truncate: false,
      readable: state.readable,
      writable: state.writable,
      flags: state.flags,
    });
    entry.file?.seekSync(state.position, Deno.SeekMode.Start);
    return entry;
  } catch (error) {
    throw new VmError(`Cannot resume VM: cannot re-open ${state.guestPath}`, { cause: error });
  }
}

/**
 * The real path of `path`, or of its deepest existing ancestor with the rest
 * appended; null for a dangling symlink (its target cannot be checked).
 */
function realPathOfPrefix(path: string): string | null {
  try {
    return Deno.realPathSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  try {
    if (Deno.lstatSync(path).isSymlink) return null;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const parent = dirname(path);
  if (parent === path) return path;
  const real = realPathOfPrefix(parent);
  return real === null ? null : join(real, basename(path));
}
