/**
 * AF_VSOCK stream (and, with `seqpacket`, `SOCK_SEQPACKET`) sockets
 * (vsock(7)): listening on a port of any local CID and connecting to
 * `(cid, port)`.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check, EAGAIN, lastErrno, SyscallError } from "./errno.ts";

/** `AF_VSOCK`. */
export const AF_VSOCK = 40;
/** `VMADDR_CID_ANY`: bind to every local CID. */
export const VMADDR_CID_ANY = 0xffffffff;
/** `VMADDR_CID_LOCAL`: this host, through vsock_loopback. */
export const VMADDR_CID_LOCAL = 1;
/** `VMADDR_CID_HOST`. */
export const VMADDR_CID_HOST = 2;
/** `sizeof(struct sockaddr_vm)`: family u16, reserved u16, port u32, cid u32, flags u8, zero[3]. */
export const SOCKADDR_VM_SIZE = 16;
/** Linux's EINPROGRESS: a non-blocking connect is under way. */
export const EINPROGRESS = 115;

const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;

/** `struct sockaddr_vm` for `(cid, port)`. */
export function vsockSockaddr(cid: number, port: number): Uint8Array<ArrayBuffer> {
  const addr = new Uint8Array(SOCKADDR_VM_SIZE);
  const view = new DataView(addr.buffer);
  view.setUint16(0, AF_VSOCK, true);
  view.setUint32(4, port >>> 0, true);
  view.setUint32(8, cid >>> 0, true);
  return addr;
}

function vsockSocket(seqpacket: boolean): number {
  const type = (seqpacket ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
  return check(libc.socket(AF_VSOCK, type, 0), "socket", {
    detail: seqpacket ? "AF_VSOCK SOCK_SEQPACKET" : "AF_VSOCK",
  });
}

/** A non-blocking AF_VSOCK listener on `port` of `cid` (default any). */
export function listenVsock(
  port: number,
  options: { cid?: number; backlog?: number; seqpacket?: boolean } = {},
): number {
  const fd = vsockSocket(options.seqpacket ?? false);
  const addr = vsockSockaddr(options.cid ?? VMADDR_CID_ANY, port);
  try {
    check(libc.bind(fd, addr, addr.length), "bind", { detail: `vsock port ${port}` });
    check(libc.listen(fd, options.backlog ?? 128), "listen", { detail: `vsock port ${port}` });
  } catch (error) {
    libc.close(fd);
    throw error;
  }
  return fd;
}

/** Accepts one connection (non-blocking, close-on-exec); `null` if none is pending. */
export function acceptVsock(listener: number): number | null {
  const fd = libc.accept4(listener, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return fd;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("accept4", errno, { detail: `vsock listener ${listener}` });
}

/**
 * Starts a non-blocking connect to `(cid, port)`. Returns the socket and
 * whether the connect is still under way: then the socket turns writable
 * (EPOLLOUT) once connected, or reports EPOLLERR/EPOLLHUP if it failed.
 * Throws {@link SyscallError} if it failed at once. `seqpacket` makes it a
 * `SOCK_SEQPACKET` socket.
 */
export function connectVsock(
  cid: number,
  port: number,
  options: { seqpacket?: boolean } = {},
): { fd: number; pending: boolean } {
  const fd = vsockSocket(options.seqpacket ?? false);
  const addr = vsockSockaddr(cid, port);
  if (libc.connect(fd, addr, addr.length) === 0) return { fd, pending: false };
  const errno = lastErrno();
  if (errno === EINPROGRESS) return { fd, pending: true };
  libc.close(fd);
  throw new SyscallError("connect", errno, { detail: `vsock ${cid}:${port}` });
}
