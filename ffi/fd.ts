/**
 * File descriptor basics: close, read, write, scatter/gather I/O, flags.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check, EAGAIN, lastErrno, SyscallError } from "./errno.ts";
import { stableBuffer, STAT_SIZE, STAT_SIZE_OFFSET } from "./structs.ts";

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/** Opens `path` read-only and close-on-exec, optionally non-blocking; returns the fd. */
export function openReadOnly(path: string, options: { nonBlocking?: boolean } = {}): number {
  const flags = O_RDONLY | O_CLOEXEC | (options.nonBlocking ? O_NONBLOCK : 0);
  return check(libc.open(new TextEncoder().encode(path + "\0"), flags, 0), "open", path);
}

/** Closes `fd`; errors are ignored, as after close(2) the fd is gone anyway. */
export function close(fd: number): void {
  libc.close(fd);
}

/** Sets or clears `O_NONBLOCK` on `fd`. */
export function setNonBlocking(fd: number, on: boolean): void {
  const flags = check(libc.fcntl(fd, F_GETFL, 0), "fcntl", "F_GETFL");
  const next = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  check(libc.fcntl(fd, F_SETFL, next), "fcntl", "F_SETFL");
}

const statBuffer = stableBuffer(STAT_SIZE);
const statView = new DataView(statBuffer.buffer);

/** The size in bytes of the file behind `fd` (`st_size` from fstat(2)). */
export function fileSize(fd: number): number {
  check(libc.fstat(fd, statBuffer), "fstat", `fd ${fd}`);
  return Number(statView.getBigInt64(STAT_SIZE_OFFSET, true));
}

/** Whether `fd` is an open file descriptor. */
export function isOpen(fd: number): boolean {
  return libc.fcntl(fd, F_GETFL, 0) >= 0;
}

/**
 * Reads up to `buffer.length` bytes. Returns the count (0 at end of file) or
 * `null` if a non-blocking fd has nothing to read.
 */
export function read(fd: number, buffer: Uint8Array): number | null {
  const n = libc.read(fd, buffer, BigInt(buffer.length));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("read", errno, `fd ${fd}`);
}

/**
 * Writes up to `buffer.length` bytes. Returns the count written or `null` if
 * a non-blocking fd cannot take any now.
 */
export function write(fd: number, buffer: Uint8Array): number | null {
  const n = libc.write(fd, buffer, BigInt(buffer.length));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("write", errno, `fd ${fd}`);
}

/**
 * `readv(2)` over `count` iovecs laid out in `iovecs` (see `IovecList`).
 * Returns bytes read, 0 at end of file, or `null` on `EAGAIN`.
 */
export function readv(fd: number, iovecs: Uint8Array, count: number): number | null {
  const n = Number(libc.readv(fd, iovecs, count));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("readv", errno, `fd ${fd}`);
}

/** `writev(2)`; returns bytes written or `null` on `EAGAIN`. */
export function writev(fd: number, iovecs: Uint8Array, count: number): number | null {
  const n = Number(libc.writev(fd, iovecs, count));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("writev", errno, `fd ${fd}`);
}

/** `preadv(2)` at file `offset`; returns bytes read (0 at end of file). */
export function preadv(
  fd: number,
  iovecs: Uint8Array,
  options: { count: number; offset: number },
): number {
  return check(
    Number(libc.preadv(fd, iovecs, options.count, BigInt(options.offset))),
    "preadv",
    `fd ${fd}`,
  );
}

/** `pwritev(2)` at file `offset`; returns bytes written. */
export function pwritev(
  fd: number,
  iovecs: Uint8Array,
  options: { count: number; offset: number },
): number {
  return check(
    Number(libc.pwritev(fd, iovecs, options.count, BigInt(options.offset))),
    "pwritev",
    `fd ${fd}`,
  );
}

/** `ioctl(2)` with a pointer argument; returns the ioctl's result. */
export function ioctl(fd: number, request: bigint, argument: Uint8Array): number {
  return check(libc.ioctl(fd, request, argument), "ioctl", `fd ${fd}, 0x${request.toString(16)}`);
}
