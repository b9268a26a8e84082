/**
 * The I2C request of VIRTIO 1.2 §5.18.6.1, decoded once from a descriptor
 * chain into a typed value:
 *
 * ```c
 * struct virtio_i2c_req {
 *   struct virtio_i2c_out_hdr { le16 addr; le16 padding; le32 flags; } out_hdr;  // readable
 *   u8 buf[];                                  // readable (write) or writable (read), optional
 *   struct virtio_i2c_in_hdr { u8 status; } in_hdr;                               // writable
 * };
 * ```
 *
 * @module
 */

import { type DescriptorChain, readSlices } from "../../core/virtio/descriptor_chain.ts";

/** §5.18.3: zero-length requests and the M_RD flag; mandatory. */
export const VIRTIO_I2C_F_ZERO_LENGTH_REQUEST = 0;
/** §5.18.6.1: bit 0 of `flags`: more requests of this group follow. */
export const VIRTIO_I2C_FLAGS_FAIL_NEXT = 1 << 0;
/** §5.18.6.1: bit 1 of `flags`: a read request. */
export const VIRTIO_I2C_FLAGS_M_RD = 1 << 1;
/** §5.18.6.1: the status of a request that succeeded. */
export const VIRTIO_I2C_MSG_OK = 0;
/** §5.18.6.1: the status of a request that failed. */
export const VIRTIO_I2C_MSG_ERR = 1;
/** `sizeof(struct virtio_i2c_out_hdr)`. */
export const OUT_HDR_SIZE = 8;
/** `sizeof(struct virtio_i2c_in_hdr)`. */
export const IN_HDR_SIZE = 1;

/**
 * Longest buffer accepted: i2c-dev's own limit per message, which bounds
 * what a guest can make the daemon allocate (a group of up to a queue's
 * worth of requests).
 */
export const MAX_BUFFER = 8192;

/** A well-formed request. */
export interface I2cRequest {
  /** Tag of the union. */
  readonly kind: "request";
  /** 7-bit client address. */
  readonly address: number;
  /** `VIRTIO_I2C_FLAGS_M_RD`. */
  readonly read: boolean;
  /** `VIRTIO_I2C_FLAGS_FAIL_NEXT`: the next request belongs to the same transfer. */
  readonly failNext: boolean;
  /** A write's bytes (copied out of guest memory), or a read's zeroed buffer. */
  readonly data: Uint8Array<ArrayBuffer>;
}

/** A request the device cannot run; answered with VIRTIO_I2C_MSG_ERR if it has a status byte. */
export interface MalformedRequest {
  /** Tag of the union. */
  readonly kind: "malformed";
  /** Why, for the log. */
  readonly reason: string;
  /** The header's FAIL_NEXT if the header was readable (a bad request still belongs to its group). */
  readonly failNext: boolean;
  /** Log it: false for a 10-bit address (the guest may probe; we simply do not support them). */
  readonly loud: boolean;
}

/** What a chain holds. */
export type DecodedRequest = I2cRequest | MalformedRequest;

/** Decodes `chain`; guest memory is read once, into locals. */
export function decodeRequest(chain: DescriptorChain): DecodedRequest {
  const readable = chain.readableLength;
  const writable = chain.writableLength;
  if (readable < OUT_HDR_SIZE) {
    return malformed(`the out header has ${readable} of ${OUT_HDR_SIZE} bytes`, false);
  }
  const header = readSlices(chain.readable, { length: OUT_HDR_SIZE });
  const view = new DataView(header.buffer, header.byteOffset, OUT_HDR_SIZE);
  const addr = view.getUint16(0, true);
  const flags = view.getUint32(4, true);
  const failNext = (flags & VIRTIO_I2C_FLAGS_FAIL_NEXT) !== 0;
  const read = (flags & VIRTIO_I2C_FLAGS_M_RD) !== 0;
  const bad = (reason: string, loud = true): MalformedRequest => ({
    kind: "malformed",
    reason,
    failNext,
    loud,
  });
  if (writable < IN_HDR_SIZE) return bad("no device-writable byte for the status");
  const reserved = flags & ~(VIRTIO_I2C_FLAGS_FAIL_NEXT | VIRTIO_I2C_FLAGS_M_RD);
  if (reserved !== 0) return bad(`reserved flag bits 0x${reserved.toString(16)} set`);
  // §5.18.6.1's address table: 7-bit 0000_0000_AAAA_AAA0, 10-bit AAAA_AAAA_1111_0AA0.
  if ((addr & 0x00f9) === 0x00f0 && (addr & 0xff00) !== 0) {
    return bad("10-bit addresses are not supported", false);
  }
  if ((addr & 0xff01) !== 0) return bad(`addr 0x${addr.toString(16)} is no 7-bit address`);
  const length = read ? writable - IN_HDR_SIZE : readable - OUT_HDR_SIZE;
  if (read && readable !== OUT_HDR_SIZE) {
    return bad(`a read request with ${readable - OUT_HDR_SIZE} device-readable buffer bytes`);
  }
  if (!read && writable !== IN_HDR_SIZE) {
    return bad(`a write request with ${writable - IN_HDR_SIZE} device-writable buffer bytes`);
  }
  if (length > MAX_BUFFER) return bad(`a ${length}-byte buffer (at most ${MAX_BUFFER})`);
  const data = read
    ? new Uint8Array(length)
    : readSlices(chain.readable, { skip: OUT_HDR_SIZE, length }).slice();
  return { kind: "request", address: addr >> 1, read, failNext, data };
}

function malformed(reason: string, failNext: boolean): MalformedRequest {
  return { kind: "malformed", reason, failNext, loud: true };
}
