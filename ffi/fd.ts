/**
 * File descriptor basics: close, read, write, scatter/gather I/O, flags.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check, EAGAIN, lastErrno, SyscallError } from "./errno.ts";
import type { IovecList } from "./iovec.ts";
import { stableBuffer, STAT_SIZE, STAT_SIZE_OFFSET } from "./structs.ts";

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/** Opens `path` read-only and close-on-exec, optionally non-blocking; returns the fd. */
export function openReadOnly(path: string, options: { nonBlocking?: boolean } = {}): number {
  const flags = O_RDONLY | O_CLOEXEC | (options.nonBlocking ? O_NONBLOCK : 0);
  return check(libc.open(new TextEncoder().encode(path + "\0"), flags, 0), "open", {
    detail: path,
  });
}

const O_RDWR = 2;

/**
 * Opens an existing file close-on-exec, read-write unless `readOnly`
 * (a disk image: nothing may write through a read-only one); returns the fd.
 */
export function openFile(path: string, options: { readOnly: boolean }): number {
  const flags = (options.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  return check(libc.open(new TextEncoder().encode(path + "\0"), flags, 0), "open", {
    detail: path,
  });
}

/** `fdatasync(2)`: the file's data (and the metadata needed to read it) reach the disk. */
export function fdatasync(fd: number): void {
  check(libc.fdatasync(fd), "fdatasync", { detail: `fd ${fd}` });
}

/** `FALLOC_FL_KEEP_SIZE`: the file size does not change. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
/** `FALLOC_FL_PUNCH_HOLE`: deallocate the range (reads return zeros); needs KEEP_SIZE. */
export const FALLOC_FL_PUNCH_HOLE = 0x02;

/** `fallocate(2)` of `[offset, offset + length)` with `mode` (e.g. PUNCH_HOLE | KEEP_SIZE). */
export function fallocate(
  fd: number,
  options: { mode: number; offset: number; length: number },
): void {
  check(
    libc.fallocate(fd, options.mode, BigInt(options.offset), BigInt(options.length)),
    "fallocate",
    { detail: `fd ${fd}, mode ${options.mode}, ${options.length} bytes at ${options.offset}` },
  );
}

/** Closes `fd`; errors are ignored, as after close(2) the fd is gone anyway. */
export function close(fd: number): void {
  libc.close(fd);
}

/** Sets or clears `O_NONBLOCK` on `fd`. */
export function setNonBlocking(fd: number, on: boolean): void {
  const flags = check(libc.fcntl(fd, F_GETFL, 0), "fcntl", { detail: "F_GETFL" });
  const next = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  check(libc.fcntl(fd, F_SETFL, next), "fcntl", { detail: "F_SETFL" });
}

const statBuffer = stableBuffer(STAT_SIZE);
const statView = new DataView(statBuffer.buffer);

/** The size in bytes of the file behind `fd` (`st_size` from fstat(2)). */
export function fileSize(fd: number): number {
  check(libc.fstat(fd, statBuffer), "fstat", { detail: `fd ${fd}` });
  return Number(statView.getBigInt64(STAT_SIZE_OFFSET, true));
}

/** `f_type` of tmpfs (and of `/dev/shm`, memfd), from `<linux/magic.h>`. */
export const TMPFS_MAGIC = 0x01021994;
/** `f_type` of ramfs, from `<linux/magic.h>`. */
export const RAMFS_MAGIC = 0x858458f6;

// struct statfs is 120 bytes on x86-64 and aarch64; f_type (a long) comes first.
const statfsBuffer = stableBuffer(128);
const statfsView = new DataView(statfsBuffer.buffer);

/** The type of the file system `fd` is on (`f_type` from fstatfs(2), e.g. {@link TMPFS_MAGIC}). */
export function fileSystemType(fd: number): number {
  check(libc.fstatfs(fd, statfsBuffer), "fstatfs", { detail: `fd ${fd}` });
  // Magic numbers are 32-bit; the long's upper half is their sign extension at most.
  return statfsView.getUint32(0, true);
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
  throw new SyscallError("read", errno, { detail: `fd ${fd}` });
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
  throw new SyscallError("write", errno, { detail: `fd ${fd}` });
}

/**
 * `readv(2)` into the buffers of `iov`. Returns bytes read, 0 at end of
 * file, or `null` on `EAGAIN`.
 */
export function readv(fd: number, iov: IovecList): number | null {
  const n = Number(libc.readv(fd, iov.bytes, iov.count));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("readv", errno, { detail: `fd ${fd}` });
}

/** `writev(2)` from the buffers of `iov`; returns bytes written or `null` on `EAGAIN`. */
export function writev(fd: number, iov: IovecList): number | null {
  const n = Number(libc.writev(fd, iov.bytes, iov.count));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("writev", errno, { detail: `fd ${fd}` });
}

/** `preadv(2)` into `iov` at file `offset`; returns bytes read (0 at end of file). */
export function preadv(fd: number, iov: IovecList, options: { offset: number }): number {
  return check(Number(libc.preadv(fd, iov.bytes, iov.count, BigInt(options.offset))), "preadv", {
    detail: `fd ${fd}`,
  });
}

/** `RWF_NOWAIT`: fail with EAGAIN rather than wait (data not cached, a lock held). */
export const RWF_NOWAIT = 0x8;

/**
 * `preadv2(2)` into `iov` at file `offset` with `flags`; returns bytes read,
 * or `null` on `EAGAIN` (with RWF_NOWAIT: the read would have waited).
 */
export function preadv2(
  fd: number,
  iov: IovecList,
  options: { offset: number; flags: number },
): number | null {
  const n = Number(libc.preadv2(fd, iov.bytes, iov.count, BigInt(options.offset), options.flags));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("preadv2", errno, { detail: `fd ${fd}` });
}

/**
 * `preadv(2)` on one of Deno's helper threads: the caller's thread goes on
 * meanwhile. The helper thread's errno is not visible here, so a failure is
 * reported as `-1` without a cause.
 */
export async function preadvOnHelperThread(
  fd: number,
  iov: IovecList,
  options: { offset: number },
): Promise<number> {
  return Number(await libc.preadv_nonblocking(fd, iov.bytes, iov.count, BigInt(options.offset)));
}

/** `pwritev(2)` from `iov` at file `offset`; returns bytes written. */
export function pwritev(fd: number, iov: IovecList, options: { offset: number }): number {
  return check(Number(libc.pwritev(fd, iov.bytes, iov.count, BigInt(options.offset))), "pwritev", {
    detail: `fd ${fd}`,
  });
}

/** `FIONREAD` (`asm-generic/ioctls.h`): bytes waiting to be read. */
const FIONREAD = 0x541bn;
const readableBytes = stableBuffer(4);
const readableCount = new Int32Array(readableBytes.buffer);

/**
 * Bytes a socket, pipe or tty holds for the next read (`ioctl(fd,
 * FIONREAD)`). Throws a {@link SyscallError} where the file type cannot tell
 * (ENOTTY, EOPNOTSUPP, EINVAL).
 */
export function bytesReadable(fd: number): number {
  check(libc.ioctl(fd, FIONREAD, readableBytes), "ioctl(FIONREAD)", { detail: `fd ${fd}` });
  return readableCount[0];
}

/** `ioctl(2)` with a pointer argument; returns the ioctl's result. */
export function ioctl(fd: number, options: { request: bigint; argument: Uint8Array }): number {
  return check(libc.ioctl(fd, options.request, options.argument), "ioctl", {
    detail: `fd ${fd}, 0x${options.request.toString(16)}`,
  });
}
