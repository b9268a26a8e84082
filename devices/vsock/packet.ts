/**
 * The virtio-vsock packet header (VIRTIO 1.2 §5.10.6), decoded once at the
 * edge: everything past this module sees a {@link VsockHeader} of numbers,
 * never the guest's bytes.
 *
 * @module
 */

/** §5.10.4: the device's config space is `le64 guest_cid`. */
export const VSOCK_CONFIG_SIZE = 8;
/** §5.10.2: receive queue index. */
export const VSOCK_RX_QUEUE = 0;
/** §5.10.2: transmit queue index. */
export const VSOCK_TX_QUEUE = 1;
/** §5.10.2: event queue index (QEMU keeps it; the back-end never sees it). */
export const VSOCK_EVENT_QUEUE = 2;
/** Virtio device id of the socket device (§5.10.1). */
export const VIRTIO_ID_VSOCK = 19;

/** §5.10.4: the well-known CID of the host. */
export const VMADDR_CID_HOST = 2;
/** `sizeof(struct virtio_vsock_hdr)`: 44 bytes, packed (§5.10.6). */
export const VSOCK_HEADER_SIZE = 44;

/** §5.10.6: stream socket type. */
export const VIRTIO_VSOCK_TYPE_STREAM = 1;
/** §5.10.6: seqpacket socket type (only once VIRTIO_VSOCK_F_SEQPACKET is negotiated). */
export const VIRTIO_VSOCK_TYPE_SEQPACKET = 2;

/** §5.10.3: feature bit: SOCK_SEQPACKET connections are supported. */
export const VIRTIO_VSOCK_F_SEQPACKET = 1;

/** §5.10.6: RW flag of SEQPACKET: this packet ends a message. */
export const VIRTIO_VSOCK_SEQ_EOM = 1;
/** §5.10.6: RW flag of SEQPACKET: the message ends a record (MSG_EOR). */
export const VIRTIO_VSOCK_SEQ_EOR = 2;

/** §5.10.6: connection request. */
export const VIRTIO_VSOCK_OP_REQUEST = 1;
/** §5.10.6: connection accepted. */
export const VIRTIO_VSOCK_OP_RESPONSE = 2;
/** §5.10.6: connection reset (refused or aborted). */
export const VIRTIO_VSOCK_OP_RST = 3;
/** §5.10.6: no more data will be sent and/or received. */
export const VIRTIO_VSOCK_OP_SHUTDOWN = 4;
/** §5.10.6: payload. */
export const VIRTIO_VSOCK_OP_RW = 5;
/** §5.10.6.3: the sender's buffer space changed. */
export const VIRTIO_VSOCK_OP_CREDIT_UPDATE = 6;
/** §5.10.6.3: asks the peer for a CREDIT_UPDATE. */
export const VIRTIO_VSOCK_OP_CREDIT_REQUEST = 7;

/** §5.10.6.4: SHUTDOWN flag: the sender will receive no more data. */
export const VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE = 1;
/** §5.10.6.4: SHUTDOWN flag: the sender will send no more data. */
export const VIRTIO_VSOCK_SHUTDOWN_F_SEND = 2;

/** One decoded `struct virtio_vsock_hdr`. */
export interface VsockHeader {
  /** Source CID; `NaN` if its upper bits make it no valid CID. */
  readonly srcCid: number;
  /** Destination CID; `NaN` if its upper bits make it no valid CID. */
  readonly dstCid: number;
  /** Source port. */
  readonly srcPort: number;
  /** Destination port. */
  readonly dstPort: number;
  /** Payload length the sender claims. */
  readonly len: number;
  /** Socket type (STREAM = 1, SEQPACKET = 2). */
  readonly type: number;
  /** Operation (VIRTIO_VSOCK_OP_*). */
  readonly op: number;
  /** Operation flags (SHUTDOWN's RECEIVE/SEND; SEQPACKET RW's EOM/EOR). */
  readonly flags: number;
  /** The sender's receive buffer size (§5.10.6.3). */
  readonly bufAlloc: number;
  /** Bytes the sender has consumed from its receive buffer, mod 2^32. */
  readonly fwdCnt: number;
}

const TWO_32 = 4294967296;

/** Reads an le64 CID. §5.10.4 reserves the upper 32 bits; any set makes it invalid (`NaN`). */
function readCid(view: DataView, offset: number): number {
  const low = view.getUint32(offset, true);
  const high = view.getUint32(offset + 4, true);
  return high === 0 ? low : NaN;
}

/**
 * Decodes a header from the first {@link VSOCK_HEADER_SIZE} bytes of
 * `bytes`, which must be a private copy (the guest may rewrite shared
 * memory while we look). Throws `RangeError` if `bytes` is too short.
 */
export function decodeHeader(bytes: Uint8Array): VsockHeader {
  if (bytes.length < VSOCK_HEADER_SIZE) {
    throw new RangeError(`vsock header needs ${VSOCK_HEADER_SIZE} bytes, got ${bytes.length}`);
  }
  return decodeHeaderAt(new DataView(bytes.buffer, bytes.byteOffset, VSOCK_HEADER_SIZE), 0);
}

/**
 * Decodes the header at `offset` of `view` without copying it first: each
 * field is read exactly once, so the result is a private copy even when the
 * view is guest memory the guest may rewrite meanwhile. Throws `RangeError`
 * if the view ends before the header does.
 */
export function decodeHeaderAt(view: DataView, offset: number): VsockHeader {
  return {
    srcCid: readCid(view, offset),
    dstCid: readCid(view, offset + 8),
    srcPort: view.getUint32(offset + 16, true),
    dstPort: view.getUint32(offset + 20, true),
    len: view.getUint32(offset + 24, true),
    type: view.getUint16(offset + 28, true),
    op: view.getUint16(offset + 30, true),
    flags: view.getUint32(offset + 32, true),
    bufAlloc: view.getUint32(offset + 36, true),
    fwdCnt: view.getUint32(offset + 40, true),
  };
}

/** Encodes `header` into the first {@link VSOCK_HEADER_SIZE} bytes of `into`. */
export function encodeHeader(header: VsockHeader, into: Uint8Array): void {
  if (into.length < VSOCK_HEADER_SIZE) {
    throw new RangeError(`vsock header needs ${VSOCK_HEADER_SIZE} bytes, got ${into.length}`);
  }
  encodeHeaderAt(header, new DataView(into.buffer, into.byteOffset, VSOCK_HEADER_SIZE), 0);
}

/**
 * Encodes `header` at `offset` of `view` (e.g. straight into a guest rx
 * buffer). Throws `RangeError` if the view ends before the header does.
 */
export function encodeHeaderAt(header: VsockHeader, view: DataView, offset: number): void {
  if (offset + VSOCK_HEADER_SIZE > view.byteLength) {
    throw new RangeError(`vsock header at ${offset} does not fit in ${view.byteLength} bytes`);
  }
  view.setUint32(offset, header.srcCid % TWO_32, true);
  view.setUint32(offset + 4, Math.floor(header.srcCid / TWO_32), true);
  view.setUint32(offset + 8, header.dstCid % TWO_32, true);
  view.setUint32(offset + 12, Math.floor(header.dstCid / TWO_32), true);
  view.setUint32(offset + 16, header.srcPort, true);
  view.setUint32(offset + 20, header.dstPort, true);
  view.setUint32(offset + 24, header.len, true);
  view.setUint16(offset + 28, header.type, true);
  view.setUint16(offset + 30, header.op, true);
  view.setUint32(offset + 32, header.flags, true);
  view.setUint32(offset + 36, header.bufAlloc, true);
  view.setUint32(offset + 40, header.fwdCnt, true);
}

/** A fresh {@link VSOCK_HEADER_SIZE}-byte encoding of `header`. */
export function headerBytes(header: VsockHeader): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(VSOCK_HEADER_SIZE);
  encodeHeader(header, bytes);
  return bytes;
}

const OP_NAMES: Record<number, string> = {
  [VIRTIO_VSOCK_OP_REQUEST]: "REQUEST",
  [VIRTIO_VSOCK_OP_RESPONSE]: "RESPONSE",
  [VIRTIO_VSOCK_OP_RST]: "RST",
  [VIRTIO_VSOCK_OP_SHUTDOWN]: "SHUTDOWN",
  [VIRTIO_VSOCK_OP_RW]: "RW",
  [VIRTIO_VSOCK_OP_CREDIT_UPDATE]: "CREDIT_UPDATE",
  [VIRTIO_VSOCK_OP_CREDIT_REQUEST]: "CREDIT_REQUEST",
};

/** The spec's name of `op` (without the prefix), for log lines. */
export function opName(op: number): string {
  return OP_NAMES[op] ?? `op ${op}`;
}

/** `src_cid:src_port -> dst_cid:dst_port OP`, for log lines. */
export function describeHeader(header: VsockHeader): string {
  return `${header.srcCid}:${header.srcPort} -> ${header.dstCid}:${header.dstPort} ` +
    `${opName(header.op)} len ${header.len}`;
}
