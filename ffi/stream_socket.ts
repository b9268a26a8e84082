/**
 * Stream-socket calls for event-driven proxies: a Unix connect that never
 * blocks the caller, and half-close (shutdown(2) of one direction).
 *
 * @module
 */

import { libc } from "./libc.ts";
import { lastErrno, SyscallError } from "./errno.ts";
import { SOCKADDR_UN_SIZE, SUN_PATH_MAX } from "./structs.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SHUT_RD = 0;
const SHUT_WR = 1;
/** ENAMETOOLONG, for a path `sockaddr_un` cannot hold. */
const ENAMETOOLONG = 36;

/** `struct sockaddr_un` for `path`, trimmed to the bytes bind/connect need. */
export function unixSockaddr(path: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length === 0 || bytes.length >= SUN_PATH_MAX) {
    throw new SyscallError("connect", ENAMETOOLONG, {
      detail: `socket path "${path}" must be 1..${SUN_PATH_MAX - 1} bytes`,
    });
  }
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 2);
  return addr.subarray(0, 2 + bytes.length + 1);
}

/**
 * Connects a new non-blocking, close-on-exec Unix stream socket to `path`.
 * A Unix connect completes at once or fails at once: with the listener's
 * backlog full it fails with `EAGAIN` instead of waiting, so the caller's
 * event loop never stalls. Throws {@link SyscallError} (ENOENT,
 * ECONNREFUSED, EAGAIN…).
 */
export function connectUnixNonBlocking(path: string): number {
  const addr = unixSockaddr(path);
  const fd = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError("socket", lastErrno(), { detail: "AF_UNIX" });
  if (libc.connect(fd, addr, addr.length) < 0) {
    const errno = lastErrno();
    libc.close(fd);
    throw new SyscallError("connect", errno, { detail: path });
  }
  return fd;
}

/**
 * Shuts down the sending direction of a socket: the peer reads end of file
 * once it has read what was sent; the socket can still receive. Errors
 * (ENOTCONN after the peer left) are ignored: the direction is gone anyway.
 */
export function shutdownWrite(fd: number): void {
  libc.shutdown(fd, SHUT_WR);
}

/** Shuts down the receiving direction of a socket; errors are ignored. */
export function shutdownRead(fd: number): void {
  libc.shutdown(fd, SHUT_RD);
}
