/**
 * SOCK_SEQPACKET over virtio-vsock (VIRTIO 1.2 §5.10.6, feature
 * `VIRTIO_VSOCK_F_SEQPACKET`): a message travels as one or more RW packets,
 * the last one flagged `VIRTIO_VSOCK_SEQ_EOM` (and `VIRTIO_VSOCK_SEQ_EOR`
 * if the sender ended a record with it). Host sockets of type
 * `SOCK_SEQPACKET` take and give whole messages, so the device gathers a
 * guest message until its EOM before sending it, and cuts a host message
 * into pieces that fit the guest's rx buffers and credit.
 *
 * @module
 */

import { Fifo } from "./fifo.ts";
import { VIRTIO_VSOCK_SEQ_EOM, VIRTIO_VSOCK_SEQ_EOR } from "./packet.ts";
import type { TxBuffer } from "./tx_buffer.ts";

/** The message flags of an RW packet (EOM, EOR); others are not ours to carry. */
export const SEQ_FLAGS: number = VIRTIO_VSOCK_SEQ_EOM | VIRTIO_VSOCK_SEQ_EOR;

/**
 * The flags a piece of a message carries when a packet with `flags` is cut
 * into several: EOM and EOR belong to the last piece only (Linux counts a
 * message per EOM it receives).
 */
export function pieceFlags(flags: number, options: { last: boolean }): number {
  return options.last ? flags : flags & ~SEQ_FLAGS;
}

/** A whole guest message waiting for the host socket. */
export interface HostBoundMessage {
  /** Its bytes: a view of the buffer (or a copy where it wraps), valid until {@link MessageQueue.shift}. */
  readonly bytes: Uint8Array;
  /** The guest ended a record with it (`VIRTIO_VSOCK_SEQ_EOR`): sent with `MSG_EOR`. */
  readonly eor: boolean;
}

/**
 * Guest messages on their way to the host socket, in the connection's byte
 * buffer: the whole messages waiting, then the one being gathered until its
 * EOM. The bytes share the buffer (at most the `buf_alloc` we advertise)
 * and each message costs one number more, so a guest sending many tiny
 * messages costs no more memory than one sending a few large ones.
 */
export class MessageQueue {
  readonly #buffer: TxBuffer;
  /** Each whole message as `length * 2 + eor`. */
  readonly #messages = new Fifo<number>();
  #gathering = 0;

  /** A queue over `buffer` (empty, and used for nothing else). */
  constructor(buffer: TxBuffer) {
    this.#buffer = buffer;
  }

  /** Whole messages waiting. */
  get count(): number {
    return this.#messages.length;
  }

  /** Bytes of the message still being gathered. */
  get gathering(): number {
    return this.#gathering;
  }

  /** Room left in the buffer for more payload. */
  get free(): number {
    return this.#buffer.free;
  }

  /** Appends payload of the message being gathered; throws `RangeError` past the buffer. */
  append(bytes: Uint8Array): void {
    this.#buffer.push(bytes);
    this.#gathering += bytes.length;
  }

  /**
   * The EOM: the gathered bytes become a whole message. Returns false for
   * an empty one, which is not queued (a host reads it as end of file).
   */
  end(options: { eor: boolean }): boolean {
    if (this.#gathering === 0) return false;
    this.#messages.push(this.#gathering * 2 + (options.eor ? 1 : 0));
    this.#gathering = 0;
    return true;
  }

  /** The oldest whole message, or `null`. */
  peek(): HostBoundMessage | null {
    const entry = this.#messages.peek();
    if (entry === undefined) return null;
    return { bytes: this.#buffer.head(entry >>> 1), eor: (entry & 1) === 1 };
  }

  /** Drops the oldest whole message once it was sent; returns its length. */
  shift(): number {
    const entry = this.#messages.shift();
    if (entry === undefined) throw new RangeError("no message to drop");
    const length = entry >>> 1;
    this.#buffer.consume(length);
    return length;
  }
}

/** One packet's worth of a host message: its bytes and RW flags. */
export interface MessagePiece {
  /** The bytes, a view into the message. */
  readonly bytes: Uint8Array;
  /** EOM (and EOR) on the last piece, 0 before. */
  readonly flags: number;
}

/** A host message on its way to the guest, a piece per rx buffer. */
export class OutgoingMessage {
  /** The whole message. */
  readonly bytes: Uint8Array;
  /** The host marked it as ending a record. */
  readonly eor: boolean;
  #offset = 0;

  /** A message of `bytes` (kept, not copied). */
  constructor(bytes: Uint8Array, options: { eor: boolean }) {
    this.bytes = bytes;
    this.eor = options.eor;
  }

  /** Bytes not yet handed out. */
  get remaining(): number {
    return this.bytes.length - this.#offset;
  }

  /**
   * The next piece of at most `max` bytes (at least one byte is due, so
   * `max` must be positive), flagged EOM if it is the last one.
   */
  next(max: number): MessagePiece {
    if (max <= 0) throw new RangeError(`a message piece needs room, got ${max} bytes`);
    const take = Math.min(max, this.remaining);
    const bytes = this.bytes.subarray(this.#offset, this.#offset + take);
    this.#offset += take;
    const last = this.#offset === this.bytes.length;
    const flags = last ? VIRTIO_VSOCK_SEQ_EOM | (this.eor ? VIRTIO_VSOCK_SEQ_EOR : 0) : 0;
    return { bytes, flags };
  }
}
