/**
 * `errno` access and the error every wrapper throws.
 *
 * @module
 */

import { libc } from "./libc.ts";

/** Linux errno values the code base tests for by name. */
export const EINTR = 4;
/** Bad file descriptor. */
export const EBADF = 9;
/** Resource temporarily unavailable (non-blocking I/O would block). */
export const EAGAIN = 11;
/** Invalid argument. */
export const EINVAL = 22;
/** Broken pipe. */
export const EPIPE = 32;
/** Connection reset by peer. */
export const ECONNRESET = 104;
/** Connection refused. */
export const ECONNREFUSED = 111;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  32: "EPIPE",
  38: "ENOSYS",
  88: "ENOTSOCK",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  104: "ECONNRESET",
  107: "ENOTCONN",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  121: "EREMOTEIO",
};

/** The symbolic name of an errno value, such as `EAGAIN`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

const errnoView = new Deno.UnsafePointerView(libc.__errno_location()!);

/**
 * The calling thread's `errno`. Read it right after the failing call: any
 * later libc call may overwrite it.
 */
export function lastErrno(): number {
  return errnoView.getInt32();
}

/** A failed system call, with its name and errno. */
export class SyscallError extends Error {
  /** The errno value the call left. */
  readonly errno: number;
  /** The libc function that failed. */
  readonly syscall: string;

  /** Builds the error for `syscall` failing with `errno`; `detail` names what it acted on. */
  constructor(syscall: string, errno: number, options: { detail?: string } = {}) {
    const where = options.detail ? `${syscall}(${options.detail})` : syscall;
    super(`${where} failed: ${errnoName(errno)} (${errno})`);
    this.name = "SyscallError";
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** Throws a {@link SyscallError} for `syscall` if `result` is negative. */
export function check(result: number, syscall: string, options: { detail?: string } = {}): number {
  if (result < 0) throw new SyscallError(syscall, lastErrno(), options);
  return result;
}
