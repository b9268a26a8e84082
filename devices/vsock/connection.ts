/**
 * One stream connection between a guest port and a host stream: its state
 * and both directions' credit (VIRTIO 1.2 §5.10.6.3). All counters are
 * 32-bit and wrap, as the header fields do.
 *
 * Naming, from the device's side:
 * - guest → host: we advertise `bufAlloc` (the tx-buffer size) and
 *   `fwdCnt`, the bytes we have forwarded to the host stream; bytes the
 *   host could not take wait in `txBuffer`.
 * - host → guest: the guest advertises `peerBufAlloc` and `peerFwdCnt`;
 *   `rxCnt` counts the bytes we have put in its rx queue. We never send
 *   more than {@link Connection.peerCredit}.
 *
 * @module
 */

import type { HostStream } from "./host.ts";
import { TxBuffer } from "./tx_buffer.ts";
import { MessageQueue, type OutgoingMessage } from "./seqpacket.ts";
import { VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_TYPE_STREAM } from "./packet.ts";

/** Where a connection is in its life. */
export type ConnectionState =
  /** The host asked for it; our REQUEST awaits the guest's RESPONSE. */
  | "connecting"
  /** The guest asked for it; the host stream's connect is under way. */
  | "host-connecting"
  /** Both sides may exchange data. */
  | "established"
  /** The host side is gone; we await the guest's RST (or a timeout). */
  | "closing";

/** The key of a connection: host-side port and guest port. */
export function connectionKey(localPort: number, peerPort: number): string {
  return `${localPort}:${peerPort}`;
}

/** `(a - b) mod 2^32`. */
export function wrappingSub(a: number, b: number): number {
  return (a - b) >>> 0;
}

/**
 * Bytes a peer that advertised `bufAlloc` and `fwdCnt` can still take after
 * we have sent it `sent` bytes (mod 2^32): `buf_alloc - (tx_cnt - fwd_cnt)`
 * (§5.10.6.3), never negative. A peer claiming to have forwarded more than
 * it was sent gets no credit.
 */
export function creditFor(options: { bufAlloc: number; fwdCnt: number; sent: number }): number {
  const inFlight = wrappingSub(options.sent, options.fwdCnt);
  return inFlight >= options.bufAlloc ? 0 : options.bufAlloc - inFlight;
}

/**
 * Whether a CREDIT_UPDATE is due: the guest has not heard of at least a
 * quarter of our buffer freed. If a guest runs out of credit everything it
 * sent is buffered or unannounced, so by the time the buffer drains an
 * update has gone out and it never waits forever.
 */
export function creditUpdateDue(
  options: { bufAlloc: number; fwdCnt: number; advertised: number },
): boolean {
  const unannounced = wrappingSub(options.fwdCnt, options.advertised);
  return unannounced > 0 && unannounced >= Math.max(1, options.bufAlloc >>> 2);
}

/** A connection's state and credit; the device does its I/O. */
export class Connection {
  /** Host-side port: the guest's `dst_port`, our `src_port`. */
  readonly localPort: number;
  /** Guest port: the guest's `src_port`, our `dst_port`. */
  readonly peerPort: number;
  /** {@link connectionKey} of the two ports. */
  readonly key: string;
  /** Our receive buffer size, advertised as `buf_alloc`. */
  readonly bufAlloc: number;
  /** Guest bytes the host did not take yet. */
  readonly txBuffer: TxBuffer;
  /** §5.10.6: VIRTIO_VSOCK_TYPE_STREAM or VIRTIO_VSOCK_TYPE_SEQPACKET; every packet carries it. */
  readonly type: number;
  /** SEQPACKET: guest messages for the host (in {@link txBuffer}), whole ones and the one gathering. */
  readonly messages: MessageQueue;
  /** SEQPACKET: the head of {@link messages} is being sent on a helper thread. */
  messageInFlight = false;
  /** SEQPACKET: the host message on its way to the guest. */
  outgoing: OutgoingMessage | null = null;
  /** Where it is in its life. */
  state: ConnectionState;
  /** The host stream; `null` once closed. */
  stream: HostStream | null;
  /** Bytes forwarded to the host stream (mod 2^32). */
  fwdCnt = 0;
  /** The `fwd_cnt` the guest last heard from us. */
  advertisedFwdCnt = 0;
  /** Bytes put in the guest's rx queue (mod 2^32). */
  rxCnt = 0;
  /** The guest's last `buf_alloc`. */
  peerBufAlloc = 0;
  /** The guest's last `fwd_cnt`. */
  peerFwdCnt = 0;
  /** The guest said it sends no more (SHUTDOWN with SEND). */
  guestShutSend = false;
  /** The guest said it receives no more (SHUTDOWN with RECEIVE). */
  guestShutReceive = false;
  /** The host stream reached end of file. */
  hostEof = false;
  /** The host stream hung up (EPOLLHUP/EPOLLERR): it is no longer watched. */
  hostHup = false;
  /** Close and RST once `txBuffer` drains (the guest shut both directions). */
  closeAfterFlush = false;
  /** Our host stream's write side is shut. */
  hostWriteShut = false;
  /** A CREDIT_REQUEST went out and no credit arrived since. */
  creditRequested = false;
  /** A CREDIT_UPDATE sits in the control queue. */
  creditUpdateQueued = false;
  /** The device forgot it: queued control packets for it are not sent. */
  removed = false;
  /** Epoll events currently asked for (`null`: not watched). */
  events: number | null = null;
  /** When a connecting or closing connection gives up (performance.now() ms). */
  deadline: number = Infinity;

  /** A connection in `state` over `stream`. */
  constructor(
    ports: { localPort: number; peerPort: number },
    options: { state: ConnectionState; stream: HostStream; bufAlloc: number; seqpacket?: boolean },
  ) {
    this.localPort = ports.localPort;
    this.peerPort = ports.peerPort;
    this.key = connectionKey(ports.localPort, ports.peerPort);
    this.state = options.state;
    this.stream = options.stream;
    this.bufAlloc = options.bufAlloc;
    this.txBuffer = new TxBuffer(options.bufAlloc);
    this.type = options.seqpacket ? VIRTIO_VSOCK_TYPE_SEQPACKET : VIRTIO_VSOCK_TYPE_STREAM;
    this.messages = new MessageQueue(this.txBuffer);
  }

  /** A SOCK_SEQPACKET connection: messages, not a byte stream. */
  get seqpacket(): boolean {
    return this.type === VIRTIO_VSOCK_TYPE_SEQPACKET;
  }

  /** Nothing the guest sent waits for the host socket (a message still gathering does not count). */
  get txEmpty(): boolean {
    return this.seqpacket ? this.messages.count === 0 : this.txBuffer.empty;
  }

  /** Bytes the guest can still take (§5.10.6.3). */
  get peerCredit(): number {
    return creditFor({ bufAlloc: this.peerBufAlloc, fwdCnt: this.peerFwdCnt, sent: this.rxCnt });
  }

  /** Takes the credit fields of a guest packet. Returns whether credit went from none to some. */
  updatePeerCredit(bufAlloc: number, fwdCnt: number): boolean {
    const before = this.peerCredit;
    this.peerBufAlloc = bufAlloc;
    this.peerFwdCnt = fwdCnt;
    const after = this.peerCredit;
    if (after > 0) this.creditRequested = false;
    return before === 0 && after > 0;
  }

  /** Counts `count` bytes sent to the guest. */
  sentToGuest(count: number): void {
    this.rxCnt = (this.rxCnt + count) >>> 0;
  }

  /** Counts `count` bytes forwarded to the host stream. */
  forwarded(count: number): void {
    this.fwdCnt = (this.fwdCnt + count) >>> 0;
  }

  /** Whether enough buffer was freed since the last header to announce it. */
  get creditUpdateDue(): boolean {
    return creditUpdateDue({
      bufAlloc: this.bufAlloc,
      fwdCnt: this.fwdCnt,
      advertised: this.advertisedFwdCnt,
    });
  }
}
