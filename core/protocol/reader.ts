/**
 * Assembles whole messages from a non-blocking stream socket. Descriptors
 * arrive as SCM_RIGHTS data on the message's first bytes; they are collected
 * from every read belonging to the message.
 *
 * @module
 */

import { close } from "../../ffi/fd.ts";
import { receiveWithFds } from "../../ffi/socket.ts";
import { HEADER_SIZE } from "./constants.ts";
import { decodeHeader, type Header, ProtocolError } from "./message.ts";

/** A message read off the socket: decoded header, raw payload, attached fds. */
export interface RawMessage {
  /** The decoded header. */
  readonly header: Header;
  /** `header.size` payload bytes. */
  readonly payload: Uint8Array;
  /** Descriptors that came with it; the receiver owns them. */
  readonly fds: number[];
}

/** The peer closed the connection. */
export const END_OF_STREAM: unique symbol = Symbol("end of stream");

/** Reads messages off one connection without ever blocking. */
export class MessageReader {
  readonly #fd: number;
  readonly #headerBytes = new Uint8Array(HEADER_SIZE);
  #headerFill = 0;
  #header: Header | null = null;
  #payload = new Uint8Array(0);
  #payloadFill = 0;
  #fds: number[] = [];

  /** A reader for the connected socket `fd` (non-blocking). */
  constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Returns the next whole message, `null` if more bytes are needed, or
   * {@link END_OF_STREAM}. Throws {@link ProtocolError} for a bad header or
   * truncated descriptors; the stream cannot be resynchronised after that.
   */
  next(): RawMessage | null | typeof END_OF_STREAM {
    while (this.#header === null) {
      const got = this.#receive(this.#headerBytes.subarray(this.#headerFill));
      if (got === null || got === END_OF_STREAM) return got;
      this.#headerFill += got;
      if (this.#headerFill === HEADER_SIZE) {
        this.#header = decodeHeader(this.#headerBytes);
        this.#payload = new Uint8Array(this.#header.size);
        this.#payloadFill = 0;
      }
    }
    while (this.#payloadFill < this.#payload.length) {
      const got = this.#receive(this.#payload.subarray(this.#payloadFill));
      if (got === null || got === END_OF_STREAM) return got;
      this.#payloadFill += got;
    }
    const message = { header: this.#header, payload: this.#payload, fds: this.#fds };
    this.#header = null;
    this.#headerFill = 0;
    this.#fds = [];
    return message;
  }

  /** Closes descriptors of a partly read message. */
  discard(): void {
    for (const fd of this.#fds) close(fd);
    this.#fds = [];
  }

  #receive(into: Uint8Array): number | null | typeof END_OF_STREAM {
    const got = receiveWithFds(this.#fd, into);
    if (got === null) return null;
    this.#fds.push(...got.fds);
    if (got.fdsTruncated) {
      throw new ProtocolError("too many file descriptors attached to one message");
    }
    if (got.length === 0) return END_OF_STREAM;
    return got.length;
  }
}
