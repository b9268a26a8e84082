/**
 * AF_UNIX stream sockets, with file descriptors passed as SCM_RIGHTS
 * ancillary data (unix(7), cmsg(3)).
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check, EAGAIN, lastErrno, SyscallError } from "./errno.ts";
import {
  addressOf,
  cmsgLen,
  cmsgSpace,
  MSGHDR,
  MSGHDR_SIZE,
  setAddress,
  SOCKADDR_UN_SIZE,
  stableBuffer,
  SUN_PATH_MAX,
} from "./structs.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
/** `SOCK_SEQPACKET`: connected, reliable, message boundaries kept (unix(7)). */
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_PEEK = 0x2;
const MSG_CTRUNC = 0x8;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SHUT_WR = 1;
const SHUT_RDWR = 2;

/**
 * Copies up to `buffer.length` waiting bytes without taking them
 * (`recv(MSG_PEEK)`): the count, 0 at end of file, or `null` if a
 * non-blocking socket holds nothing.
 */
export function peek(fd: number, buffer: Uint8Array): number | null {
  const n = Number(libc.recv(fd, buffer, BigInt(buffer.length), MSG_PEEK));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("recv", errno, { detail: `fd ${fd}` });
}

/** `SO_SNDBUF` (socket(7)). */
const SO_SNDBUF = 7;
const intOption = stableBuffer(4);
const intOptionView = new DataView(intOption.buffer);
const intOptionLength = stableBuffer(4);

/** The send buffer size (`SO_SNDBUF`, as the kernel reports it: twice what was asked). */
export function sendBufferSize(fd: number): number {
  new DataView(intOptionLength.buffer).setUint32(0, 4, true);
  check(
    libc.getsockopt(fd, SOL_SOCKET, SO_SNDBUF, intOption, intOptionLength),
    "getsockopt(SO_SNDBUF)",
    { detail: `fd ${fd}` },
  );
  return intOptionView.getInt32(0, true);
}

/**
 * Asks for a send buffer of `bytes` (`SO_SNDBUF`): the kernel doubles it for
 * its bookkeeping and caps it at `net.core.wmem_max`.
 */
export function setSendBuffer(fd: number, bytes: number): void {
  intOptionView.setInt32(0, bytes, true);
  check(libc.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, intOption, 4), "setsockopt(SO_SNDBUF)", {
    detail: `fd ${fd}, ${bytes} bytes`,
  });
}

/** Most fds one message may carry; vhost-user sends at most 8, rust-vmm allows 32. */
export const MAX_FDS_PER_MESSAGE = 32;

const msghdr = stableBuffer(MSGHDR_SIZE);
const msghdrView = new DataView(msghdr.buffer);
const iovec = stableBuffer(16);
const iovecView = new DataView(iovec.buffer);
const control = stableBuffer(cmsgSpace(MAX_FDS_PER_MESSAGE * 4));
const controlView = new DataView(control.buffer);
let scratch = stableBuffer(4096 + 64);

function scratchOf(size: number): Uint8Array<ArrayBuffer> {
  if (scratch.length < size) scratch = stableBuffer(size);
  return scratch;
}

function encodeSockaddr(path: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length === 0 || bytes.length >= SUN_PATH_MAX) {
    throw new SyscallError("bind", 36, {
      detail: `socket path "${path}" must be 1..${SUN_PATH_MAX - 1} bytes`,
    });
  }
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 2);
  return addr.subarray(0, 2 + bytes.length + 1);
}

function newSocket(nonBlocking: boolean, seqpacket: boolean): number {
  const type = (seqpacket ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC |
    (nonBlocking ? SOCK_NONBLOCK : 0);
  return check(libc.socket(AF_UNIX, type, 0), "socket", { detail: "AF_UNIX" });
}

/**
 * Creates a non-blocking listening socket bound at `path` (a stream socket,
 * or `SOCK_SEQPACKET` with `seqpacket`). The caller removes any stale file
 * at `path` first.
 */
export function listenUnix(
  path: string,
  backlog = 1,
  options: { seqpacket?: boolean } = {},
): number {
  const addr = encodeSockaddr(path);
  const fd = newSocket(true, options.seqpacket ?? false);
  try {
    check(libc.bind(fd, addr, addr.length), "bind", { detail: path });
    check(libc.listen(fd, backlog), "listen", { detail: path });
  } catch (error) {
    libc.close(fd);
    throw error;
  }
  return fd;
}

/**
 * Connects a new close-on-exec socket to `path`, blocking by default. A Unix
 * connect completes or fails at once; `nonBlocking` also makes a full
 * listen backlog fail with `EAGAIN` instead of waiting, so an event loop
 * never stalls on it. `seqpacket` makes it a `SOCK_SEQPACKET` socket, which
 * only a `SOCK_SEQPACKET` listener accepts (others: `ECONNREFUSED`).
 */
export function connectUnix(
  path: string,
  options: { nonBlocking?: boolean; seqpacket?: boolean } = {},
): number {
  const addr = encodeSockaddr(path);
  const fd = newSocket(options.nonBlocking ?? false, options.seqpacket ?? false);
  if (libc.connect(fd, addr, addr.length) < 0) {
    const errno = lastErrno();
    libc.close(fd);
    throw new SyscallError("connect", errno, { detail: path });
  }
  return fd;
}

/**
 * Accepts one connection as a non-blocking, close-on-exec socket; `null` if
 * none is pending.
 */
export function acceptUnix(listener: number): number | null {
  const fd = libc.accept4(listener, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return fd;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("accept4", errno, { detail: `listener ${listener}` });
}

/** A connected pair of blocking stream (or, with `seqpacket`, `SOCK_SEQPACKET`) sockets. */
export function socketPair(options: { seqpacket?: boolean } = {}): [number, number] {
  const fds = new Int32Array(new ArrayBuffer(8));
  const type = options.seqpacket ? SOCK_SEQPACKET : SOCK_STREAM;
  check(
    libc.socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, new Uint8Array(fds.buffer)),
    "socketpair",
  );
  return [fds[0], fds[1]];
}

/** Shuts both directions of a socket down, waking its peer with end of file. */
export function shutdownSocket(fd: number): void {
  libc.shutdown(fd, SHUT_RDWR);
}

/**
 * Shuts down the sending direction only: the peer reads end of file once it
 * has read what was sent, and the socket can still receive. Errors (ENOTCONN
 * after the peer left) are ignored: the direction is gone anyway.
 */
export function shutdownWrite(fd: number): void {
  libc.shutdown(fd, SHUT_WR);
}

function prepareHeader(
  buffer: Uint8Array<ArrayBuffer>,
  length: number,
  controlLength: number,
): void {
  setAddress(iovecView, { offset: 0, value: addressOf(buffer) });
  setAddress(iovecView, { offset: 8, value: length });
  msghdr.fill(0);
  setAddress(msghdrView, { offset: MSGHDR.iov, value: addressOf(iovec) });
  setAddress(msghdrView, { offset: MSGHDR.iovlen, value: 1 });
  if (controlLength > 0) {
    setAddress(msghdrView, { offset: MSGHDR.control, value: addressOf(control) });
    setAddress(msghdrView, { offset: MSGHDR.controllen, value: controlLength });
  }
}

/**
 * Sends `data` with `fds` attached to its first byte. Returns the bytes sent
 * (possibly fewer than `data.length`), or `null` if the socket is full.
 * Never raises SIGPIPE: a gone peer is an `EPIPE` error.
 */
export function sendWithFds(
  fd: number,
  data: Uint8Array,
  options: { fds?: readonly number[] } = {},
): number | null {
  const fds = options.fds ?? [];
  if (fds.length > MAX_FDS_PER_MESSAGE) {
    throw new SyscallError("sendmsg", 22, {
      detail: `${fds.length} fds exceed ${MAX_FDS_PER_MESSAGE}`,
    });
  }
  const out = scratchOf(data.length);
  out.set(data);
  let controlLength = 0;
  if (fds.length > 0) {
    controlLength = cmsgSpace(fds.length * 4);
    control.fill(0, 0, controlLength);
    setAddress(controlView, { offset: 0, value: cmsgLen(fds.length * 4) });
    controlView.setInt32(8, SOL_SOCKET, true);
    controlView.setInt32(12, SCM_RIGHTS, true);
    fds.forEach((f, i) => controlView.setInt32(16 + i * 4, f, true));
  }
  prepareHeader(out, data.length, controlLength);
  const n = libc.sendmsg(fd, msghdr, MSG_NOSIGNAL);
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === EAGAIN) return null;
  throw new SyscallError("sendmsg", errno, { detail: `fd ${fd}` });
}

/** What one {@link receiveWithFds} call got. */
export interface Received {
  /** Bytes copied into the caller's buffer; 0 means the peer closed. */
  readonly length: number;
  /** Descriptors that arrived with these bytes; the caller owns them. */
  readonly fds: number[];
  /** The kernel dropped descriptors that did not fit (MSG_CTRUNC). */
  readonly fdsTruncated: boolean;
}

/**
 * Receives up to `into.length` bytes and any descriptors sent with them
 * (close-on-exec). Returns `null` if a non-blocking socket has nothing.
 */
export function receiveWithFds(fd: number, into: Uint8Array): Received | null {
  const buffer = scratchOf(into.length);
  prepareHeader(buffer, into.length, control.length);
  const n = libc.recvmsg(fd, msghdr, MSG_CMSG_CLOEXEC);
  if (n < 0) {
    const errno = lastErrno();
    if (errno === EAGAIN) return null;
    throw new SyscallError("recvmsg", errno, { detail: `fd ${fd}` });
  }
  into.set(buffer.subarray(0, n));
  const flags = msghdrView.getInt32(MSGHDR.flags, true);
  const controlLength = Number(msghdrView.getBigUint64(MSGHDR.controllen, true));
  const fds: number[] = [];
  let offset = 0;
  while (offset + 16 <= controlLength) {
    const length = Number(controlView.getBigUint64(offset, true));
    if (length < 16) break;
    const level = controlView.getInt32(offset + 8, true);
    const type = controlView.getInt32(offset + 12, true);
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let p = offset + 16; p + 4 <= offset + length; p += 4) {
        fds.push(controlView.getInt32(p, true));
      }
    }
    offset += (length + 7) & ~7;
  }
  return { length: n, fds, fdsTruncated: (flags & MSG_CTRUNC) !== 0 };
}
