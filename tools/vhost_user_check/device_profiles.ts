/**
 * What the checker knows of particular devices (`--device`): how many queues
 * QEMU starts, how much config space it reads, and real requests whose
 * answers the virtio spec fixes. Constants are written out here from the
 * VIRTIO 1.2 spec rather than imported from our devices, so a shared
 * mistake cannot hide.
 *
 * @module
 */

import type { DriverQueue, VhostUserFrontend } from "../../frontend/mod.ts";

/** What a device exercise got to use. */
export interface ExerciseContext {
  /** The connected front-end, rings started. */
  readonly frontend: VhostUserFrontend;
  /** The started queues, vring index = position. */
  readonly queues: readonly DriverQueue[];
  /** Whether VIRTIO_RING_F_INDIRECT_DESC was negotiated. */
  readonly indirect: boolean;
  /** The config space read at realize, if any. */
  readonly config: Uint8Array | null;
  /** Milliseconds to wait for an answer. */
  readonly timeoutMs: number;
}

/** A device the checker can push real requests through. */
export interface DeviceProfile {
  /** `--device` name. */
  readonly name: string;
  /** Queues QEMU sets up (vsock: rx and tx; the event queue stays in QEMU). */
  readonly queues: number;
  /** Bytes of config space QEMU reads at realize (GET_CONFIG), or null. */
  readonly configSize: number | null;
  /**
   * Pushes real requests and checks the answers; returns one line per
   * check passed, throws on a wrong answer. The chains pushed are all
   * returned before it ends (GET_VRING_BASE then has a known answer).
   */
  exercise(context: ExerciseContext): string[];
}

/** Waits until `count` chains came back on `queue` (index `q`). */
function collect(
  context: ExerciseContext,
  q: number,
  count: number,
): ReturnType<DriverQueue["takeUsed"]> {
  const queue = context.queues[q];
  const out: ReturnType<DriverQueue["takeUsed"]> = [];
  const deadline = performance.now() + context.timeoutMs;
  while (out.length < count) {
    out.push(...queue.takeUsed());
    if (out.length >= count) break;
    const left = deadline - performance.now();
    if (left <= 0) break;
    context.frontend.waitForCall(q, Math.min(left, 100));
  }
  return out;
}

function submit(context: ExerciseContext, q: number): void {
  const queue = context.queues[q];
  queue.publish();
  if (queue.needsKick()) context.frontend.kick(q);
}

/** virtio-rng (VIRTIO 1.2 §5.4): one request queue of device-writable buffers. */
const RNG: DeviceProfile = {
  name: "rng",
  queues: 1,
  configSize: null,
  exercise(context: ExerciseContext): string[] {
    const queue = context.queues[0];
    const chains = [[64], [16, 48], [4096], [1]];
    for (const writable of chains) queue.add({ readable: [], writable });
    if (context.indirect) queue.add({ readable: [], writable: [32, 32], indirect: true });
    const expected = queue.inFlight;
    submit(context, 0);
    const used = collect(context, 0, expected);
    if (used.length !== expected) {
      throw new Error(`rng: ${used.length} of ${expected} requests answered`);
    }
    let nonZero = 0;
    for (const u of used) {
      // §5.4.6.2: the device fills the buffer with random bytes; the used length says how many.
      if (u.length === 0 || u.data.length !== u.length) {
        throw new Error(`rng: request ${u.head} answered with length ${u.length}`);
      }
      nonZero += u.data.some((b) => b !== 0) ? 1 : 0;
    }
    if (nonZero === 0) throw new Error("rng: every answer was all zeros");
    return [`${used.length} entropy requests filled (${nonZero} with non-zero bytes)`];
  },
};

/** §5.10.6 `struct virtio_vsock_hdr`: 44 bytes, packed, little-endian. */
const VSOCK_HEADER_SIZE = 44;
const VIRTIO_VSOCK_TYPE_STREAM = 1;
const VIRTIO_VSOCK_OP_REQUEST = 1;
const VIRTIO_VSOCK_OP_RST = 3;
const VMADDR_CID_HOST = 2;
/** A host port nothing listens on in the checker's `{dir}`. */
const UNUSED_PORT = 0x7eed;
/** The guest port of the next connection request: a new one each time, as a guest would. */
let nextGuestPort = 0x4000;

/**
 * virtio-vsock (VIRTIO 1.2 §5.10): config `le64 guest_cid`; a connection
 * request to a host port nobody listens on must be answered with RST
 * (§5.10.6.3), from CID 2 and that port, to the guest's CID and port.
 */
const VSOCK: DeviceProfile = {
  name: "vsock",
  queues: 2,
  configSize: 8,
  exercise(context: ExerciseContext): string[] {
    const lines: string[] = [];
    if (!context.config) throw new Error("vsock: no config space was read");
    const cid = new DataView(context.config.buffer, context.config.byteOffset).getBigUint64(
      0,
      true,
    );
    // §5.10.4: CIDs 0-2 are reserved (hypervisor, local, host).
    if (cid < 3n || cid >= 0xffff_ffffn) throw new Error(`vsock: guest_cid ${cid} is reserved`);
    lines.push(`config guest_cid = ${cid}`);
    const [rx, tx] = context.queues;
    for (let i = 0; i < 4; i++) rx.add({ readable: [], writable: [VSOCK_HEADER_SIZE + 4096] });
    submit(context, 0);
    const header = new Uint8Array(VSOCK_HEADER_SIZE);
    const view = new DataView(header.buffer);
    const guestPort = nextGuestPort;
    nextGuestPort = nextGuestPort === 0x4fff ? 0x4000 : nextGuestPort + 1;
    view.setBigUint64(0, cid, true);
    view.setBigUint64(8, BigInt(VMADDR_CID_HOST), true);
    view.setUint32(16, guestPort, true);
    view.setUint32(20, UNUSED_PORT, true);
    view.setUint32(24, 0, true);
    view.setUint16(28, VIRTIO_VSOCK_TYPE_STREAM, true);
    view.setUint16(30, VIRTIO_VSOCK_OP_REQUEST, true);
    view.setUint32(36, 65536, true);
    tx.add({ readable: [header], writable: [] });
    submit(context, 1);
    const sent = collect(context, 1, 1);
    if (sent.length !== 1) throw new Error("vsock: the tx request was not returned");
    lines.push("tx: connection request consumed");
    const got = collect(context, 0, 1);
    if (got.length !== 1) throw new Error("vsock: no answer on rx to a request for a closed port");
    const answer = got[0].data;
    if (answer.length < VSOCK_HEADER_SIZE) {
      throw new Error(`vsock: rx answer of ${answer.length} bytes, shorter than a header`);
    }
    const a = new DataView(answer.buffer, answer.byteOffset, answer.byteLength);
    const fields = {
      src_cid: a.getBigUint64(0, true),
      dst_cid: a.getBigUint64(8, true),
      src_port: a.getUint32(16, true),
      dst_port: a.getUint32(20, true),
      op: a.getUint16(30, true),
    };
    if (
      fields.op !== VIRTIO_VSOCK_OP_RST || fields.src_cid !== BigInt(VMADDR_CID_HOST) ||
      fields.dst_cid !== cid || fields.src_port !== UNUSED_PORT || fields.dst_port !== guestPort
    ) {
      throw new Error(
        `vsock: expected RST from 2:${UNUSED_PORT}, got ${
          JSON.stringify(fields, (_, v) => typeof v === "bigint" ? Number(v) : v)
        }`,
      );
    }
    lines.push("rx: RST for a closed host port, addressed back to the guest");
    // Take the spare rx buffers back: stopping the ring leaves them unused, which is fine;
    // GET_VRING_BASE then answers the avail index including them.
    return lines;
  },
};

/** §5.2.6 `struct virtio_blk_req` header: le32 type, le32 reserved, le64 sector. */
const VIRTIO_BLK_HEADER_SIZE = 16;
const VIRTIO_BLK_T_IN = 0;
const VIRTIO_BLK_T_OUT = 1;
const VIRTIO_BLK_T_GET_ID = 8;
const VIRTIO_BLK_S_OK = 0;
const VIRTIO_BLK_S_UNSUPP = 2;
/** §5.2.6: `VIRTIO_BLK_ID_BYTES`. */
const VIRTIO_BLK_ID_BYTES = 20;
const SECTOR_SIZE = 512;

function blkHeader(type: number, sector: bigint): Uint8Array {
  const header = new Uint8Array(VIRTIO_BLK_HEADER_SIZE);
  const view = new DataView(header.buffer);
  view.setUint32(0, type, true);
  view.setBigUint64(8, sector, true);
  return header;
}

/**
 * virtio-blk (VIRTIO 1.2 §5.2): config starts with `le64 capacity` (in
 * 512-byte sectors); a write then a read of the last sector must succeed and
 * return what was written; GET_ID answers OK or UNSUPP; an unknown request
 * type must be answered UNSUPP (§5.2.6.1). The last byte the device writes
 * is the status. The disk's last sector is overwritten.
 */
const BLK: DeviceProfile = {
  name: "blk",
  queues: 1,
  // QEMU reads the config up to its `unused1` field without secure erase or zoned features.
  configSize: 60,
  exercise(context: ExerciseContext): string[] {
    if (!context.config) throw new Error("blk: no config space was read");
    const capacity = new DataView(context.config.buffer, context.config.byteOffset)
      .getBigUint64(0, true);
    if (capacity === 0n) throw new Error("blk: capacity 0");
    const queue = context.queues[0];
    const sector = capacity - 1n;
    const pattern = Uint8Array.from({ length: SECTOR_SIZE }, (_, i) => (i * 31 + 7) & 0xff);
    const run = (
      readable: Uint8Array[],
      writable: number[],
    ): { status: number; data: Uint8Array } => {
      queue.add({ readable, writable });
      submit(context, 0);
      const [used] = collect(context, 0, 1);
      if (!used) throw new Error("blk: a request was not answered");
      const total = writable.reduce((a, b) => a + b, 0);
      if (used.length < 1 || used.length > total) {
        throw new Error(`blk: used length ${used.length} for ${total} writable bytes`);
      }
      // The status is the last byte of the writable part (§5.2.6).
      return { status: used.data[total - 1], data: used.data.subarray(0, total - 1) };
    };
    const lines = [`config capacity = ${capacity} sectors`];
    const write = run([blkHeader(VIRTIO_BLK_T_OUT, sector), pattern], [1]);
    if (write.status !== VIRTIO_BLK_S_OK) throw new Error(`blk: write status ${write.status}`);
    const read = run([blkHeader(VIRTIO_BLK_T_IN, sector)], [SECTOR_SIZE, 1]);
    if (read.status !== VIRTIO_BLK_S_OK) throw new Error(`blk: read status ${read.status}`);
    if (!read.data.every((b, i) => b === pattern[i])) {
      throw new Error("blk: the sector read back differs from what was written");
    }
    lines.push(`sector ${sector} written and read back`);
    const id = run([blkHeader(VIRTIO_BLK_T_GET_ID, 0n)], [VIRTIO_BLK_ID_BYTES, 1]);
    if (id.status !== VIRTIO_BLK_S_OK && id.status !== VIRTIO_BLK_S_UNSUPP) {
      throw new Error(`blk: GET_ID status ${id.status}`);
    }
    lines.push(`GET_ID status ${id.status}`);
    const unknown = run([blkHeader(0xff, 0n)], [1]);
    if (unknown.status !== VIRTIO_BLK_S_UNSUPP) {
      throw new Error(`blk: an unknown request type got status ${unknown.status}, not UNSUPP`);
    }
    lines.push("unknown request type answered UNSUPP");
    return lines;
  },
};

/** The devices `--device` accepts. */
export const DEVICE_PROFILES: Readonly<Record<string, DeviceProfile>> = {
  blk: BLK,
  rng: RNG,
  vsock: VSOCK,
};
