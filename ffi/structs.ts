/**
 * C struct layouts used by the wrappers, defined once for Linux on x86-64 and
 * aarch64 (LP64). Sizes are asserted in `structs_test.ts`.
 *
 * @module
 */

/** `sizeof(struct iovec)`: `void *iov_base; size_t iov_len;`. */
export const IOVEC_SIZE = 16;

/**
 * `sizeof(struct msghdr)`: name ptr, u32 namelen (+4 pad), iov ptr, size_t
 * iovlen, control ptr, size_t controllen, int flags (+4 pad).
 */
export const MSGHDR_SIZE = 56;
/** Offsets of the `struct msghdr` fields we fill. */
export const MSGHDR = {
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
} as const;

/** `sizeof(struct cmsghdr)`: size_t len, int level, int type. */
export const CMSGHDR_SIZE = 16;

/** `CMSG_SPACE(n)`: header plus data rounded up to 8 bytes. */
export function cmsgSpace(dataBytes: number): number {
  return CMSGHDR_SIZE + ((dataBytes + 7) & ~7);
}

/** `CMSG_LEN(n)`: header plus unpadded data. */
export function cmsgLen(dataBytes: number): number {
  return CMSGHDR_SIZE + dataBytes;
}

/**
 * `sizeof(struct epoll_event)`: x86-64 packs it (`u32 events; u64 data` = 12
 * bytes); every other 64-bit Linux ABI aligns `data` (16 bytes).
 */
export const EPOLL_EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
/** Offset of `epoll_event.data`. */
export const EPOLL_EVENT_DATA_OFFSET = Deno.build.arch === "x86_64" ? 4 : 8;

/** `sizeof(struct sockaddr_un)`: u16 family + 108 bytes of path. */
export const SOCKADDR_UN_SIZE = 110;
/** Longest path `sockaddr_un` holds, with its terminating NUL. */
export const SUN_PATH_MAX = 108;

/**
 * A buffer large enough for `struct stat` (144 bytes on x86-64, 128 on
 * aarch64); both place `st_size` at offset 48.
 */
export const STAT_SIZE = 144;
/** Offset of `st_size` in `struct stat`. */
export const STAT_SIZE_OFFSET = 48;

/** `sizeof(struct itimerspec)`: two `struct timespec` of 16 bytes. */
export const ITIMERSPEC_SIZE = 32;

/** A fresh buffer that is never on the V8 heap, so its address is stable. */
export function stableBuffer(size: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(size));
}

/** The address of a buffer from {@link stableBuffer}, as a number. */
export function addressOf(buffer: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

const TWO_32 = 4294967296;

/** Writes a 64-bit address held in a number (< 2^53) at `offset`. */
export function setAddress(view: DataView, field: { offset: number; value: number }): void {
  view.setUint32(field.offset, field.value % TWO_32, true);
  view.setUint32(field.offset + 4, Math.floor(field.value / TWO_32), true);
}
