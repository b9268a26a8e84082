/**
 * The host side of vsock as the device sees it: byte streams it can read
 * into and write from guest memory, and a backend that connects them.
 * Hybrid vsock over Unix sockets and AF_VSOCK forwarding both implement
 * {@link HostBackend}; tests can substitute their own.
 *
 * @module
 */

import {
  bytesReadable,
  close,
  type IovecList,
  readv,
  type ReceivedMessage,
  receiveMessage,
  sendBufferSize,
  sendMessage,
  sendMessageOnHelperThread,
  setNonBlocking,
  setSendBuffer,
  shutdownSocket,
  shutdownWrite,
  write,
  writev,
} from "../../ffi/mod.ts";

/** One host-side connected socket, non-blocking: a byte stream, or SOCK_SEQPACKET. */
export interface HostStream {
  /** The descriptor the device watches on the event loop. */
  readonly fd: number;
  /**
   * A SOCK_SEQPACKET socket: the device uses {@link receiveMessage} and
   * {@link sendMessage} on it, never the byte calls, so boundaries are kept.
   */
  readonly seqpacket: boolean;
  /**
   * The connect is still under way: the stream turns writable (EPOLLOUT)
   * once connected, or reports EPOLLERR/EPOLLHUP if it failed.
   */
  readonly pending: boolean;
  /** Reads into the iovecs; bytes read, 0 at end of file, `null` if nothing is there now. Throws on errors. */
  readv(iov: IovecList): number | null;
  /**
   * Bytes the next read would return now, so one read can fill several rx
   * buffers; `null` if the stream cannot tell.
   */
  readable(): number | null;
  /** Writes the iovecs; bytes written, or `null` if the socket is full. Throws on errors (EPIPE…). */
  writev(iov: IovecList): number | null;
  /** Writes `bytes`; the count written, or `null` if the socket is full. Throws on errors. */
  write(bytes: Uint8Array): number | null;
  /**
   * SEQPACKET: receives one whole message into `into` (a stable buffer, see
   * ffi's `stableBuffer`); `null` if none waits, length 0 at end of file.
   * Throws on errors.
   */
  receiveMessage(into: Uint8Array<ArrayBuffer>): ReceivedMessage | null;
  /**
   * SEQPACKET: sends one whole message; false if the socket is full. Throws
   * on errors. A promise instead means the send waits on a helper thread
   * (sockets whose non-blocking send may cut a message): `bytes` must stay
   * untouched and no other message may be sent until it settles.
   */
  sendMessage(bytes: Uint8Array, options: { eor: boolean }): boolean | Promise<void>;
  /** Half-closes: the host peer reads end of file, the stream can still receive. */
  shutdownWrite(): void;
  /**
   * Asks the kernel to hold at least `bytes` the host program has not read
   * yet (`SO_SNDBUF`), so a guest's whole credit window fits there instead of
   * in the device's own buffer. Best effort.
   */
  reserveSendBuffer(bytes: number): void;
  /** Closes the stream. */
  close(): void;
}

/**
 * Called when a host program asks to reach guest port `port`. Returns
 * whether the device took the stream; if not, the backend closes it.
 */
export type HostConnectHandler = (stream: HostStream, port: number) => boolean;

/** Where the guest's host-bound connections go, and where host-initiated ones come from. */
export interface HostBackend {
  /** Short description for log lines, e.g. `unix:/run/vm4.vsock`. */
  readonly description: string;
  /** Starts accepting host-initiated connections, handing each to `handler`. */
  start(handler: HostConnectHandler): void;
  /**
   * Connects for a guest connecting to the host on `port` (a SOCK_SEQPACKET
   * socket with `seqpacket`). Throws if that fails.
   */
  connect(port: number, options?: { seqpacket?: boolean }): HostStream;
  /**
   * What a host-initiated stream is sent once the guest accepted on guest
   * `port` (hybrid vsock's `OK <port>\n`), or `null` for nothing.
   */
  confirmation(port: number): Uint8Array | null;
  /**
   * Stops accepting and releases the backend's own sockets and files.
   * `unwatch: false` when the event loop is already closed.
   */
  close(options?: { unwatch?: boolean }): void;
}

/** A {@link HostStream} over a non-blocking socket descriptor, through ffi/. */
export class SocketStream implements HostStream {
  /** The socket. */
  readonly fd: number;
  readonly pending: boolean;
  readonly seqpacket: boolean;
  readonly #helperThreadSends: boolean;
  #blocking = false;
  static #defaultSendBuffer: number | null = null;
  #canCount = true;

  /**
   * Wraps a (connecting or) connected non-blocking socket, of type
   * SOCK_SEQPACKET if `seqpacket`; the stream owns it from now on.
   * `helperThreadSends`: messages are sent from a helper thread that may
   * wait (AF_VSOCK SOCK_SEQPACKET, see ffi's `sendMessageOnHelperThread`).
   */
  constructor(
    fd: number,
    options: { pending?: boolean; seqpacket?: boolean; helperThreadSends?: boolean } = {},
  ) {
    this.fd = fd;
    this.pending = options.pending ?? false;
    this.seqpacket = options.seqpacket ?? false;
    this.#helperThreadSends = options.helperThreadSends ?? false;
  }

  receiveMessage(into: Uint8Array<ArrayBuffer>): ReceivedMessage | null {
    return receiveMessage(this.fd, into);
  }

  sendMessage(bytes: Uint8Array, options: { eor: boolean }): boolean | Promise<void> {
    if (!this.#helperThreadSends) return sendMessage(this.fd, bytes, options);
    // Connected by now: the helper thread's send may wait; every other call here does not
    // (receives pass MSG_DONTWAIT).
    if (!this.#blocking) {
      setNonBlocking(this.fd, false);
      this.#blocking = true;
    }
    return sendMessageOnHelperThread(this.fd, bytes, options);
  }

  readv(iov: IovecList): number | null {
    return readv(this.fd, iov);
  }

  writev(iov: IovecList): number | null {
    return writev(this.fd, iov);
  }

  readable(): number | null {
    if (!this.#canCount) return null;
    try {
      return bytesReadable(this.fd);
    } catch {
      // A socket family without FIONREAD (AF_VSOCK on older kernels): read a buffer at a time.
      this.#canCount = false;
      return null;
    }
  }

  write(bytes: Uint8Array): number | null {
    return write(this.fd, bytes);
  }

  shutdownWrite(): void {
    shutdownWrite(this.fd);
  }

  reserveSendBuffer(bytes: number): void {
    try {
      // New sockets start at the system's default: ask once, then one call at most per stream.
      SocketStream.#defaultSendBuffer ??= sendBufferSize(this.fd);
      // The kernel reports (and counts) twice what is asked; never shrink the default.
      if (SocketStream.#defaultSendBuffer < 2 * bytes) setSendBuffer(this.fd, bytes);
    } catch {
      // The default buffer works too: bytes beyond it wait in the connection's buffer.
    }
  }

  close(): void {
    // A send waiting on a helper thread wakes (EPIPE) instead of waiting for a peer that may never read.
    if (this.#blocking) shutdownSocket(this.fd);
    close(this.fd);
  }
}
