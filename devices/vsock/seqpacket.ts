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

import { VIRTIO_VSOCK_SEQ_EOM, VIRTIO_VSOCK_SEQ_EOR } from "./packet.ts";

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

/** A guest message being gathered from its RW packets until the one with EOM. */
export class MessageAssembler {
  #parts: Uint8Array[] = [];
  #length = 0;

  /** Bytes gathered so far. */
  get length(): number {
    return this.#length;
  }

  /** Appends a private copy of a packet's payload. */
  append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#parts.push(bytes);
    this.#length += bytes.length;
  }

  /** The whole message gathered so far (one array), leaving the assembler empty. */
  take(): Uint8Array {
    const parts = this.#parts;
    const length = this.#length;
    this.clear();
    if (parts.length === 1) return parts[0];
    const message = new Uint8Array(length);
    let at = 0;
    for (const part of parts) {
      message.set(part, at);
      at += part.length;
    }
    return message;
  }

  /** Forgets what was gathered. */
  clear(): void {
    this.#parts = [];
    this.#length = 0;
  }
}

/** A whole guest message waiting for the host socket. */
export interface HostBoundMessage {
  /** Its bytes. */
  readonly bytes: Uint8Array;
  /** The guest ended a record with it (`VIRTIO_VSOCK_SEQ_EOR`): sent with `MSG_EOR`. */
  readonly eor: boolean;
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
