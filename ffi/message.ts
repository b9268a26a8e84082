/**
 * Whole messages over a `SOCK_SEQPACKET` socket (Unix or AF_VSOCK): one
 * send is one message, one receive takes one message (unix(7), vsock(7)).
 *
 * @module
 */

import { libc } from "./libc.ts";
import { EAGAIN, lastErrno, SyscallError } from "./errno.ts";
import { addressOf, MSGHDR, MSGHDR_SIZE, setAddress, stableBuffer } from "./structs.ts";

const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const MSG_EOR = 0x80;
const MSG_NOSIGNAL = 0x4000;

const msghdr = stableBuffer(MSGHDR_SIZE);
const msghdrView = new DataView(msghdr.buffer);
const iovec = stableBuffer(16);
const iovecView = new DataView(iovec.buffer);

/**
 * Sends `data` as one message, marked as ending a record (`MSG_EOR`) if
 * `eor`. Returns false if the non-blocking socket is full (nothing was
 * sent). Never raises SIGPIPE: a gone peer is an `EPIPE` error; a message
 * larger than the send buffer is `EMSGSIZE`.
 */
export function sendMessage(
  fd: number,
  data: Uint8Array,
  options: { eor?: boolean } = {},
): boolean {
  const flags = MSG_NOSIGNAL | (options.eor ? MSG_EOR : 0);
  const n = Number(libc.send(fd, data, BigInt(data.length), flags));
  if (n >= 0) return true;
  const errno = lastErrno();
  if (errno === EAGAIN) return false;
  throw new SyscallError("send", errno, { detail: `fd ${fd}, a ${data.length}-byte message` });
}

/**
 * Sends `data` as one message from a helper thread, which waits as long as
 * the socket needs: the socket must be in blocking mode. For AF_VSOCK
 * SOCK_SEQPACKET, whose non-blocking send can enqueue part of a message and
 * then fail with `EAGAIN` when the peer's credit runs out mid-message
 * (Linux's `vsock_connectible_sendmsg`), leaving the peer a message with no
 * end that a retry would corrupt. Resolves once the whole message is sent;
 * rejects otherwise (the helper thread's errno is not visible here).
 * `data` must stay untouched until then.
 */
export async function sendMessageOnHelperThread(
  fd: number,
  data: Uint8Array,
  options: { eor?: boolean } = {},
): Promise<void> {
  const flags = MSG_NOSIGNAL | (options.eor ? MSG_EOR : 0);
  const n = Number(await libc.send_nonblocking(fd, data, BigInt(data.length), flags));
  if (n !== data.length) {
    throw new Error(`send of a ${data.length}-byte message on fd ${fd} failed (result ${n})`);
  }
}

/** What one {@link receiveMessage} call got. */
export interface ReceivedMessage {
  /** The message's whole length (0: the peer closed); more than the buffer if truncated. */
  readonly length: number;
  /** The message did not fit the buffer: the rest of it is lost. */
  readonly truncated: boolean;
  /** The sender marked it as ending a record (`MSG_EOR`; AF_VSOCK reports it, Unix does not). */
  readonly eor: boolean;
}

/**
 * Receives one message into `into`, which must come from `stableBuffer`
 * (its address is handed to the kernel). Never waits (`MSG_DONTWAIT`, also
 * on a blocking socket): returns `null` if the socket holds none.
 */
export function receiveMessage(fd: number, into: Uint8Array<ArrayBuffer>): ReceivedMessage | null {
  setAddress(iovecView, { offset: 0, value: addressOf(into) });
  setAddress(iovecView, { offset: 8, value: into.length });
  msghdr.fill(0);
  setAddress(msghdrView, { offset: MSGHDR.iov, value: addressOf(iovec) });
  setAddress(msghdrView, { offset: MSGHDR.iovlen, value: 1 });
  // MSG_TRUNC as a flag: the result is the message's real length even when it did not fit.
  const n = libc.recvmsg(fd, msghdr, MSG_TRUNC | MSG_DONTWAIT);
  if (n < 0) {
    const errno = lastErrno();
    if (errno === EAGAIN) return null;
    throw new SyscallError("recvmsg", errno, { detail: `fd ${fd}` });
  }
  const flags = msghdrView.getInt32(MSGHDR.flags, true);
  return {
    length: n,
    truncated: (flags & MSG_TRUNC) !== 0 || n > into.length,
    eor: (flags & MSG_EOR) !== 0,
  };
}
