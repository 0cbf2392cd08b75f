/**
 * WASI preview1 constants and struct layouts (from WebAssembly/WASI
 * legacy/preview1/witx/typenames.witx), limited to what the host uses.
 *
 * @module
 */

/** Import module name of WASI preview1. */
export const WASI_MODULE = "wasi_snapshot_preview1";

/**
 * Every function of preview1. A guest may import any of these (unimplemented
 * ones answer ENOSYS at run time); anything else is rejected at load time.
 */
export const WASI_PREVIEW1_FUNCTIONS: ReadonlySet<string> = new Set([
  "args_get",
  "args_sizes_get",
  "environ_get",
  "environ_sizes_get",
  "clock_res_get",
  "clock_time_get",
  "fd_advise",
  "fd_allocate",
  "fd_close",
  "fd_datasync",
  "fd_fdstat_get",
  "fd_fdstat_set_flags",
  "fd_fdstat_set_rights",
  "fd_filestat_get",
  "fd_filestat_set_size",
  "fd_filestat_set_times",
  "fd_pread",
  "fd_prestat_get",
  "fd_prestat_dir_name",
  "fd_pwrite",
  "fd_read",
  "fd_readdir",
  "fd_renumber",
  "fd_seek",
  "fd_sync",
  "fd_tell",
  "fd_write",
  "path_create_directory",
  "path_filestat_get",
  "path_filestat_set_times",
  "path_link",
  "path_open",
  "path_readlink",
  "path_remove_directory",
  "path_rename",
  "path_symlink",
  "path_unlink_file",
  "poll_oneoff",
  "proc_exit",
  "proc_raise",
  "sched_yield",
  "random_get",
  "sock_accept",
  "sock_recv",
  "sock_send",
  "sock_shutdown",
]);

export const ERRNO = {
  SUCCESS: 0,
  ACCES: 2,
  AGAIN: 6,
  BADF: 8,
  BUSY: 10,
  EXIST: 20,
  FAULT: 21,
  INVAL: 28,
  IO: 29,
  ISDIR: 31,
  LOOP: 32,
  NAMETOOLONG: 37,
  NOENT: 44,
  NOSPC: 51,
  NOSYS: 52,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTSUP: 58,
  PERM: 63,
  ROFS: 69,
  SPIPE: 70,
  XDEV: 75,
  NOTCAPABLE: 76,
} as const;

/** Host errno names (Deno's `error.code`) to WASI errno. */
export const HOST_ERRNO: Readonly<Record<string, number>> = {
  EACCES: ERRNO.ACCES,
  EAGAIN: ERRNO.AGAIN,
  EBADF: ERRNO.BADF,
  EBUSY: ERRNO.BUSY,
  EEXIST: ERRNO.EXIST,
  EINVAL: ERRNO.INVAL,
  EISDIR: ERRNO.ISDIR,
  ELOOP: ERRNO.LOOP,
  ENAMETOOLONG: ERRNO.NAMETOOLONG,
  ENOENT: ERRNO.NOENT,
  ENOSPC: ERRNO.NOSPC,
  ENOTDIR: ERRNO.NOTDIR,
  ENOTEMPTY: ERRNO.NOTEMPTY,
  EPERM: ERRNO.PERM,
  EROFS: ERRNO.ROFS,
  EXDEV: ERRNO.XDEV,
};

export const FILETYPE = {
  UNKNOWN: 0,
  CHARACTER_DEVICE: 2,
  DIRECTORY: 3,
  REGULAR_FILE: 4,
  SYMBOLIC_LINK: 7,
} as const;

export const FDFLAGS = { APPEND: 1, DSYNC: 2, NONBLOCK: 4, RSYNC: 8, SYNC: 16 } as const;
export const OFLAGS = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 } as const;
export const LOOKUP_SYMLINK_FOLLOW = 1;
export const CLOCK = { REALTIME: 0, MONOTONIC: 1, PROCESS_CPUTIME: 2, THREAD_CPUTIME: 3 } as const;

export const RIGHT_FD_READ = 1n << 1n;
export const RIGHT_FD_SEEK = 1n << 2n;
export const RIGHT_FD_TELL = 1n << 5n;
export const RIGHT_FD_WRITE = 1n << 6n;
/** Every right: the host enforces access itself, so fds advertise all of them. */
export const RIGHTS_ALL = (1n << 30n) - 1n;
/** A terminal: no seek/tell, so wasi-libc treats it as a tty and line-buffers. */
export const RIGHTS_TTY = RIGHTS_ALL & ~(RIGHT_FD_SEEK | RIGHT_FD_TELL);

export const FDSTAT_SIZE = 24;
export const FILESTAT_SIZE = 64;
export const DIRENT_SIZE = 24;
export const SUBSCRIPTION_SIZE = 48;
export const EVENT_SIZE = 32;
export const EVENTTYPE_CLOCK = 0;
export const SUBCLOCK_ABSTIME = 1;
