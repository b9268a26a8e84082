/**
 * SCMI messages (Arm DEN0056, §4.1 "Protocol and message format"): the
 * 32-bit message header, return status codes, and a writer for the
 * little-endian values responses and notifications are made of. Guest bytes
 * are decoded once here into a {@link ScmiRequest}; handlers see only typed
 * values.
 *
 * @module
 */

/** Protocol identifiers (DEN0056 §4.1). */
export const SCMI_PROTOCOL_BASE = 0x10;
/** The sensor management protocol (DEN0056 §4.7). */
export const SCMI_PROTOCOL_SENSOR = 0x15;

/** Message types, header bits [9:8] (DEN0056 §4.1). */
export const MessageType = {
  /** A command (agent to platform, answered on the same channel). */
  COMMAND: 0,
  /** A delayed response (platform to agent). */
  DELAYED_RESPONSE: 2,
  /** A notification (platform to agent). */
  NOTIFICATION: 3,
} as const;

/** Message ids every protocol implements (DEN0056 §4.2). */
export const PROTOCOL_VERSION = 0x0;
/** Protocol attributes. */
export const PROTOCOL_ATTRIBUTES = 0x1;
/** Whether a message is implemented, and its attributes. */
export const PROTOCOL_MESSAGE_ATTRIBUTES = 0x2;

/** Return status codes (DEN0056 §4.1). */
export const ScmiStatus = {
  SUCCESS: 0,
  NOT_SUPPORTED: -1,
  INVALID_PARAMETERS: -2,
  DENIED: -3,
  NOT_FOUND: -4,
  OUT_OF_RANGE: -5,
  BUSY: -6,
  COMMS_ERROR: -7,
  GENERIC_ERROR: -8,
  HARDWARE_ERROR: -9,
  PROTOCOL_ERROR: -10,
} as const;

/** One of {@link ScmiStatus}. */
export type ScmiStatusCode = typeof ScmiStatus[keyof typeof ScmiStatus];

/** Bytes of the message header. */
export const HEADER_SIZE = 4;
/** Bytes of a short name (DEN0056: 16 bytes, NUL-terminated). */
export const SHORT_NAME_SIZE = 16;

/** The fields of a message header (DEN0056 §4.1). */
export interface MessageHeader {
  /** Bits [7:0]. */
  readonly messageId: number;
  /** Bits [9:8]: one of {@link MessageType}. */
  readonly messageType: number;
  /** Bits [17:10]. */
  readonly protocolId: number;
  /** Bits [27:18]: chosen by the agent, echoed in the response. */
  readonly token: number;
}

/** Decodes a header word. */
export function decodeHeader(word: number): MessageHeader {
  return {
    messageId: word & 0xff,
    messageType: (word >>> 8) & 0x3,
    protocolId: (word >>> 10) & 0xff,
    token: (word >>> 18) & 0x3ff,
  };
}

/** Encodes a header word (reserved bits [31:28] zero). */
export function encodeHeader(header: MessageHeader): number {
  return ((header.messageId & 0xff) | ((header.messageType & 0x3) << 8) |
    ((header.protocolId & 0xff) << 10) | ((header.token & 0x3ff) << 18)) >>> 0;
}

/** A command as the guest sent it: header word, decoded fields, 32-bit parameters. */
export interface ScmiRequest {
  /** The header word, echoed unchanged in the response (DEN0056 §4.1). */
  readonly headerWord: number;
  /** Its fields. */
  readonly header: MessageHeader;
  /** The payload as little-endian 32-bit words. */
  readonly parameters: readonly number[];
  /** Payload bytes; a payload that is not whole words is malformed. */
  readonly payloadLength: number;
}

/**
 * Decodes a request (header, then parameters). Returns `null` when the
 * bytes cannot hold a header: there is nothing to answer to.
 */
export function decodeRequest(bytes: Uint8Array): ScmiRequest | null {
  if (bytes.length < HEADER_SIZE) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerWord = view.getUint32(0, true);
  const payloadLength = bytes.length - HEADER_SIZE;
  const parameters: number[] = [];
  for (let offset = HEADER_SIZE; offset + 4 <= bytes.length; offset += 4) {
    parameters.push(view.getUint32(offset, true));
  }
  return { headerWord, header: decodeHeader(headerWord), parameters, payloadLength };
}

/** Builds the little-endian words and strings of a response or notification. */
export class MessageWriter {
  #bytes = new Uint8Array(64);
  #view = new DataView(this.#bytes.buffer);
  #length = 0;

  /** Bytes written so far. */
  get length(): number {
    return this.#length;
  }

  /** Appends an unsigned 32-bit value. */
  u32(value: number): this {
    this.#reserve(4);
    this.#view.setUint32(this.#length, value >>> 0, true);
    this.#length += 4;
    return this;
  }

  /** Appends a signed 32-bit value. */
  i32(value: number): this {
    this.#reserve(4);
    this.#view.setInt32(this.#length, value | 0, true);
    this.#length += 4;
    return this;
  }

  /** Appends a signed 64-bit value as low word, high word. */
  i64(value: bigint): this {
    this.#reserve(8);
    this.#view.setBigInt64(this.#length, BigInt.asIntN(64, value), true);
    this.#length += 8;
    return this;
  }

  /** Appends raw bytes. */
  bytes(data: Uint8Array): this {
    this.#reserve(data.length);
    this.#bytes.set(data, this.#length);
    this.#length += data.length;
    return this;
  }

  /**
   * Appends `text` as a NUL-terminated ASCII string in a field of `size`
   * bytes, cut to `size - 1` characters.
   */
  name(text: string, size = SHORT_NAME_SIZE): this {
    const field = new Uint8Array(size);
    for (let i = 0; i < Math.min(text.length, size - 1); i++) {
      const code = text.charCodeAt(i);
      field[i] = code < 0x80 ? code : 0x3f;
    }
    return this.bytes(field);
  }

  /** The bytes written. */
  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(this.#bytes.length * 2, this.#length + extra));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
    this.#view = new DataView(grown.buffer);
  }
}

/** A response without its header: a status and, on success, the return values. */
export interface ScmiReply {
  /** The return status. */
  readonly status: ScmiStatusCode;
  /** Return values after the status (empty unless SUCCESS). */
  readonly values: Uint8Array;
}

/** A reply carrying only `status`. */
export function statusReply(status: ScmiStatusCode): ScmiReply {
  return { status, values: new Uint8Array(0) };
}

/** A SUCCESS reply with `values`. */
export function successReply(values: Uint8Array): ScmiReply {
  return { status: ScmiStatus.SUCCESS, values };
}

/** The response bytes: the request's header word, the status, the values. */
export function encodeResponse(headerWord: number, reply: ScmiReply): Uint8Array {
  return new MessageWriter().u32(headerWord).i32(reply.status).bytes(reply.values).finish();
}
