/**
 * The fuzzer's generator: from a seed, one burst of operations on one
 * connection. Pure (no fds, no I/O): an operation names the descriptors it
 * attaches by kind, so a burst written to a file replays exactly.
 *
 * A burst usually opens with a plausible handshake (so later messages reach
 * deep states: live rings, a memory table) and goes on with mutated
 * messages and attacks on the rings: descriptor loops, addresses outside
 * memory or overflowing, indirect tables of bad sizes or nested, buffers
 * aliasing the rings themselves, heads out of range, avail-index jumps.
 *
 * @module
 */

import {
  bit,
  FrontendRequest as R,
  HEADER_SIZE,
  NEED_REPLY_FLAG,
  ProtocolFeature as P,
  VERSION,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VRING_NOFD_MASK,
} from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../../core/virtio/features.ts";
import { Random } from "./random.ts";

/**
 * A descriptor attached to a message: the burst's kick/call/err eventfd of
 * queue `q`, the guest RAM memfd, a fresh one-page memfd, one end of a
 * socket pair, or a fresh eventfd.
 */
export type FdKind = "kick" | "call" | "err" | "ram" | "page" | "pair" | "eventfd";

/** One step of a burst. */
export type Op =
  /** A whole vhost-user message (header and payload, hex) and its fds. */
  | {
    readonly op: "msg";
    readonly hex: string;
    readonly fds?: readonly FdKind[];
    readonly q?: number;
  }
  /** Bytes written into guest RAM at `at` (an offset of the RAM memfd). */
  | { readonly op: "mem"; readonly at: number; readonly hex: string }
  /** Signal queue `q`'s kick eventfd. */
  | { readonly op: "kick"; readonly q: number };

/** Guest RAM the fuzzer shares: one memfd region at guest-physical 0. */
export const RAM_SIZE = 1 << 20;
/**
 * The front-end "virtual" address of RAM's first byte. The back-end only
 * translates ring addresses through it, so a fixed value keeps bursts
 * reproducible (QEMU sends its own mapping's address; any value works).
 */
export const RAM_USER_ADDR = 0x7f12_3400_0000;
/** Queues the fuzzer sets up and attacks. */
export const FUZZ_QUEUES = 2;
/** Where queue q's ring starts (guest-physical): desc, avail at +4 KiB, used at +8 KiB. */
export function ringBase(q: number): number {
  return 0x1000 + q * 0x10000;
}
const DATA_BASE = 0x80000;
const NOMINAL_SIZE = 256;

const U64_EDGES: readonly bigint[] = [
  0n,
  1n,
  0xfffn,
  0x1000n,
  BigInt(RAM_SIZE) - 1n,
  BigInt(RAM_SIZE),
  0xffff_ffffn,
  0x1_0000_0000n,
  1n << 52n,
  1n << 53n,
  1n << 63n,
  0xffff_ffff_ffff_f000n,
  0xffff_ffff_ffff_ffffn,
];
const U32_EDGES: readonly number[] = [
  0,
  1,
  2,
  3,
  0xff,
  0x100,
  0x7fff,
  0x8000,
  0x8001,
  0xffff,
  0x1_0000,
  0x7fff_ffff,
  0xffff_ffff,
];
const QUEUE_SIZES: readonly number[] = [0, 1, 2, 3, 16, 64, 256, 1024, 32768, 65535, 65536];

function hexOf(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Decodes the hex of an {@link Op}. */
export function bytesOf(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Little-endian payload builder. */
class Payload {
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
  }
  u16(at: number, v: number): this {
    this.#view.setUint16(at, v & 0xffff, true);
    return this;
  }
  u32(at: number, v: number): this {
    this.#view.setUint32(at, v >>> 0, true);
    return this;
  }
  u64(at: number, v: bigint): this {
    this.#view.setBigUint64(at, BigInt.asUintN(64, v), true);
    return this;
  }
}

/** A generator of bursts for one run. */
export class BurstGenerator {
  readonly #rng: Random;
  readonly #ops: Op[] = [];
  readonly #avail: number[] = new Array(FUZZ_QUEUES).fill(0);
  #needReply = 0.5;
  #sizes: number[] = new Array(FUZZ_QUEUES).fill(NOMINAL_SIZE);
  #messages = 0;

  /** A generator for burst `index` of a run seeded with `seed`. */
  constructor(seed: number, index: number) {
    this.#rng = new Random(seed, index);
  }

  /** The burst: about `length` vhost-user messages, plus ring writes and kicks. */
  burst(length: number): Op[] {
    const r = this.#rng;
    this.#needReply = r.pick([0, 0.3, 1]);
    if (r.chance(0.85)) this.#handshake();
    while (this.messageCount() < length) {
      const roll = r.below(100);
      if (roll < 30) this.#ringAttack();
      else if (roll < 92) this.#mutatedMessage();
      else this.#randomMessage();
    }
    return this.#ops;
  }

  /** vhost-user messages so far (ring writes and kicks not counted). */
  messageCount(): number {
    return this.#messages;
  }

  // ---- Messages

  #flags(): number {
    const r = this.#rng;
    if (r.chance(0.001)) return r.pick([0, 2, 3, VERSION | 0x100, VERSION | 0x4, r.u32()]);
    return VERSION | (r.chance(this.#needReply) ? NEED_REPLY_FLAG : 0);
  }

  #msg(request: number, payload: Uint8Array, options: { fds?: FdKind[]; q?: number } = {}): void {
    const bytes = new Uint8Array(HEADER_SIZE + payload.length);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, request, true);
    view.setUint32(4, this.#flags(), true);
    view.setUint32(8, payload.length, true);
    bytes.set(payload, HEADER_SIZE);
    const op: Op = {
      op: "msg",
      hex: hexOf(bytes),
      ...(options.fds && options.fds.length > 0 ? { fds: options.fds } : {}),
      ...(options.q !== undefined ? { q: options.q } : {}),
    };
    this.#ops.push(op);
    this.#messages++;
  }

  #u64(value: bigint): Uint8Array {
    return new Payload(8).u64(0, value).bytes;
  }

  #state(index: number, num: number): Uint8Array {
    return new Payload(8).u32(0, index).u32(4, num).bytes;
  }

  #queueIndex(): number {
    const r = this.#rng;
    return r.chance(0.9) ? r.below(FUZZ_QUEUES) : r.pick([2, 3, 0xff, 0x100, r.u32()]);
  }

  #anyU64(): bigint {
    return this.#rng.chance(0.7) ? this.#rng.pick(U64_EDGES) : this.#rng.u64();
  }

  #anyU32(): number {
    return this.#rng.chance(0.7) ? this.#rng.pick(U32_EDGES) : this.#rng.u32();
  }

  #validRegion(p: Payload, at: number): void {
    p.u64(at, 0n).u64(at + 8, BigInt(RAM_SIZE)).u64(at + 16, BigInt(RAM_USER_ADDR)).u64(
      at + 24,
      0n,
    );
  }

  #region(p: Payload, at: number): void {
    this.#validRegion(p, at);
    const r = this.#rng;
    if (r.chance(0.6)) p.u64(at + 8 * r.below(4), this.#anyU64());
    if (r.chance(0.2)) p.u64(at + 8 * r.below(4), this.#anyU64());
  }

  #fdKinds(max: number): FdKind[] {
    const r = this.#rng;
    const n = r.chance(0.7) ? 1 : r.below(max + 1);
    return Array.from(
      { length: n },
      () => r.pick(["kick", "call", "err", "ram", "page", "pair", "eventfd"] as const),
    );
  }

  #ringAddresses(q: number): Payload {
    const base = BigInt(RAM_USER_ADDR + ringBase(q));
    return new Payload(40).u32(0, q).u32(4, 0).u64(8, base).u64(16, base + 0x2000n).u64(
      24,
      base + 0x1000n,
    ).u64(32, 0n);
  }

  #handshake(): void {
    const r = this.#rng;
    const features = bit(VIRTIO_F_VERSION_1) | bit(VHOST_USER_F_PROTOCOL_FEATURES) |
      (r.chance(0.5) ? bit(VIRTIO_RING_F_EVENT_IDX) : 0n) |
      (r.chance(0.5) ? bit(VIRTIO_RING_F_INDIRECT_DESC) : 0n);
    const protocol = bit(P.MQ) | (r.chance(0.7) ? bit(P.REPLY_ACK) : 0n) |
      (r.chance(0.5) ? bit(P.CONFIGURE_MEM_SLOTS) : 0n) | (r.chance(0.3) ? bit(P.CONFIG) : 0n) |
      (r.chance(0.3) ? bit(P.STATUS) : 0n) | (r.chance(0.2) ? bit(P.RESET_DEVICE) : 0n);
    this.#msg(R.GET_FEATURES, new Uint8Array(0));
    this.#msg(R.GET_PROTOCOL_FEATURES, new Uint8Array(0));
    this.#msg(R.SET_PROTOCOL_FEATURES, this.#u64(protocol));
    this.#msg(R.SET_OWNER, new Uint8Array(0));
    this.#msg(R.SET_FEATURES, this.#u64(features));
    const table = new Payload(40).u32(0, 1);
    this.#validRegion(table, 8);
    this.#msg(R.SET_MEM_TABLE, table.bytes, { fds: ["ram"] });
    for (let q = 0; q < FUZZ_QUEUES; q++) {
      const size = r.chance(0.8) ? r.pick([16, 64, 256]) : r.pick(QUEUE_SIZES);
      this.#sizes[q] = size > 0 && size <= NOMINAL_SIZE && (size & (size - 1)) === 0
        ? size
        : NOMINAL_SIZE;
      this.#msg(R.SET_VRING_NUM, this.#state(q, size));
      this.#msg(R.SET_VRING_BASE, this.#state(q, 0));
      this.#msg(R.SET_VRING_ADDR, this.#ringAddresses(q).bytes);
      this.#msg(R.SET_VRING_CALL, this.#u64(BigInt(q)), { fds: ["call"], q });
      this.#msg(R.SET_VRING_KICK, this.#u64(BigInt(q)), { fds: ["kick"], q });
      this.#msg(R.SET_VRING_ENABLE, this.#state(q, 1));
    }
  }

  /** A known request with a payload of the right shape and mutated fields. */
  #mutatedMessage(): void {
    const r = this.#rng;
    const q = this.#queueIndex();
    switch (r.below(22)) {
      case 0:
        return this.#msg(R.GET_FEATURES, new Uint8Array(0));
      case 1:
        return this.#msg(
          R.SET_FEATURES,
          this.#u64(r.chance(0.5) ? this.#anyU64() : 0x1_7000_0000n),
        );
      case 2:
        return this.#msg(
          R.SET_PROTOCOL_FEATURES,
          this.#u64(r.chance(0.5) ? this.#anyU64() : r.u64() & 0xfffffn),
        );
      case 3:
        return this.#msg(r.pick([R.SET_OWNER, R.RESET_OWNER, R.RESET_DEVICE]), new Uint8Array(0));
      case 4: {
        const n = r.chance(0.8) ? r.below(3) + 1 : r.below(10);
        const claimed = r.chance(0.9) ? n : this.#anyU32();
        const table = new Payload(8 + 32 * n).u32(0, claimed);
        for (let i = 0; i < n; i++) this.#region(table, 8 + 32 * i);
        const fds = r.chance(0.8)
          ? Array.from({ length: n }, () => r.chance(0.8) ? "ram" as const : "page" as const)
          : this.#fdKinds(9);
        return this.#msg(R.SET_MEM_TABLE, table.bytes, { fds });
      }
      case 5:
      case 6: {
        const p = new Payload(40).u64(0, r.chance(0.9) ? 0n : r.u64());
        this.#region(p, 8);
        const add = r.chance(0.6);
        return this.#msg(add ? R.ADD_MEM_REG : R.REM_MEM_REG, p.bytes, {
          fds: add ? (r.chance(0.8) ? ["ram"] : this.#fdKinds(2)) : r.chance(0.9) ? [] : ["ram"],
        });
      }
      case 7:
        return this.#msg(R.SET_VRING_NUM, this.#state(q, r.pick(QUEUE_SIZES)));
      case 8: {
        const p = this.#ringAddresses(q % FUZZ_QUEUES).u32(0, q);
        const field = r.below(5);
        if (field === 0) p.u32(4, this.#anyU32());
        else {p.u64(
            8 * field,
            r.chance(0.5) ? this.#anyU64() : BigInt(RAM_USER_ADDR + r.below(RAM_SIZE + 0x2000)),
          );}
        return this.#msg(R.SET_VRING_ADDR, p.bytes);
      }
      case 9:
        return this.#msg(R.SET_VRING_BASE, this.#state(q, this.#anyU32()));
      case 10:
        return this.#msg(R.GET_VRING_BASE, this.#state(q, 0));
      case 11:
      case 12:
      case 13: {
        const request = [R.SET_VRING_KICK, R.SET_VRING_CALL, R.SET_VRING_ERR][r.below(3)];
        const nofd = r.chance(0.15);
        const value = BigInt(q) | (nofd ? BigInt(VRING_NOFD_MASK) : 0n) |
          (r.chance(0.05) ? r.u64() & ~0x1ffn : 0n);
        const own = (["kick", "call", "err"] as const)[r.below(3)];
        const fds: FdKind[] = r.chance(0.8) ? (nofd ? [] : [own]) : this.#fdKinds(3);
        return this.#msg(request, this.#u64(value), { fds, q: q % FUZZ_QUEUES });
      }
      case 14:
        return this.#msg(
          R.SET_VRING_ENABLE,
          this.#state(q, r.chance(0.8) ? r.below(2) : this.#anyU32()),
        );
      case 15:
      case 16: {
        const size = r.chance(0.7) ? r.pick([0, 1, 4, 8, 60, 256, 257]) : this.#anyU32();
        const data = r.below(300);
        const p = new Payload(12 + data).u32(0, r.chance(0.6) ? r.below(300) : this.#anyU32()).u32(
          4,
          size,
        ).u32(8, r.chance(0.9) ? r.below(2) : r.u32());
        p.bytes.set(r.bytes(data), 12);
        return this.#msg(r.chance(0.6) ? R.GET_CONFIG : R.SET_CONFIG, p.bytes);
      }
      case 17:
        return this.#msg(
          r.pick([R.SET_STATUS, R.GET_STATUS]),
          this.#u64(r.chance(0.5) ? BigInt(r.below(256)) : this.#anyU64()),
        );
      case 18:
        return this.#msg(
          r.pick([R.GET_QUEUE_NUM, R.GET_MAX_MEM_SLOTS, R.GET_PROTOCOL_FEATURES]),
          new Uint8Array(0),
        );
      case 19:
        return this.#msg(R.SET_BACKEND_REQ_FD, new Uint8Array(0), {
          fds: r.chance(0.6) ? ["pair"] : this.#fdKinds(2),
        });
      case 20: {
        // SET_LOG_BASE (mmap_size, mmap_offset) / inflight (mmap_size, offset, num_queues, queue_size).
        const request = r.pick([
          R.SET_LOG_BASE,
          R.SET_LOG_FD,
          R.GET_INFLIGHT_FD,
          R.SET_INFLIGHT_FD,
        ]);
        const p = new Payload(
          r.chance(0.8) ? 16 + (request >= R.GET_INFLIGHT_FD ? 8 : 0) : r.below(40),
        );
        if (p.bytes.length >= 16) p.u64(0, this.#anyU64()).u64(8, this.#anyU64());
        if (p.bytes.length >= 24) p.u16(16, r.below(4)).u16(18, r.pick(QUEUE_SIZES));
        return this.#msg(request, p.bytes, {
          fds: r.chance(0.7) ? [r.pick(["ram", "page", "eventfd"] as const)] : [],
        });
      }
      default:
        return this.#msg(R.SET_VRING_NUM, this.#state(q, r.pick([16, 64, 256])));
    }
  }

  /** Any request code (known, reserved or unknown) with random bytes. */
  #randomMessage(): void {
    const r = this.#rng;
    const request = r.chance(0.7) ? 1 + r.below(44) : r.pick([0, 45, 99, 0x8000_0001, r.u32()]);
    const length = r.chance(0.995) ? r.below(64) : r.pick([0x1000, 0x1001, r.below(0x1100)]);
    this.#msg(request, r.bytes(length), { fds: r.chance(0.3) ? this.#fdKinds(4) : [] });
  }

  // ---- Rings

  #mem(at: number, bytes: Uint8Array): void {
    this.#ops.push({ op: "mem", at, hex: hexOf(bytes) });
  }

  #descriptor(
    q: number,
    index: number,
    d: { addr: bigint; len: number; flags: number; next: number },
  ): void {
    const p = new Payload(16).u64(0, d.addr).u32(8, d.len).u16(12, d.flags).u16(14, d.next);
    this.#mem(ringBase(q) + 16 * (index % NOMINAL_SIZE), p.bytes);
  }

  #publish(q: number, head: number): void {
    const size = this.#sizes[q];
    const slot = this.#avail[q] & (size - 1);
    this.#mem(ringBase(q) + 0x1000 + 4 + 2 * slot, new Payload(2).u16(0, head).bytes);
    this.#avail[q] = (this.#avail[q] + 1) & 0xffff;
    this.#mem(ringBase(q) + 0x1000 + 2, new Payload(2).u16(0, this.#avail[q]).bytes);
  }

  #buffer(): bigint {
    return BigInt(DATA_BASE + 16 * this.#rng.below((RAM_SIZE - DATA_BASE) / 16 - 256));
  }

  #ringAttack(): void {
    const r = this.#rng;
    const q = r.below(FUZZ_QUEUES);
    const size = this.#sizes[q];
    const head = r.below(size);
    const next = (head + 1) % size;
    const writable = r.chance(0.6) ? VIRTQ_DESC_F_WRITE : 0;
    switch (r.below(12)) {
      case 0: // a loop of two descriptors
        this.#descriptor(q, head, {
          addr: this.#buffer(),
          len: 64,
          flags: VIRTQ_DESC_F_NEXT | writable,
          next,
        });
        this.#descriptor(q, next, {
          addr: this.#buffer(),
          len: 64,
          flags: VIRTQ_DESC_F_NEXT | writable,
          next: head,
        });
        break;
      case 1: // outside memory, or overflowing
        this.#descriptor(q, head, {
          addr: r.pick(U64_EDGES),
          len: r.chance(0.5) ? r.pick(U32_EDGES) : 64,
          flags: writable,
          next: 0,
        });
        break;
      case 2: { // an indirect table of a bad size, or nested, or looping
        const table = this.#buffer();
        const entries = 1 + r.below(8);
        for (let i = 0; i < entries; i++) {
          const p = new Payload(16).u64(0, r.chance(0.7) ? this.#buffer() : r.pick(U64_EDGES)).u32(
            8,
            r.chance(0.8) ? 64 : this.#anyU32(),
          )
            .u16(
              12,
              r.pick([
                0,
                VIRTQ_DESC_F_NEXT,
                VIRTQ_DESC_F_WRITE,
                VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
                VIRTQ_DESC_F_INDIRECT,
                r.u32(),
              ]),
            )
            .u16(14, r.chance(0.7) ? (i + 1) % entries : r.below(0x10000));
          this.#mem(Number(table) + 16 * i, p.bytes);
        }
        const len = r.chance(0.5)
          ? 16 * entries
          : r.pick([0, 1, 15, 17, 16 * entries + 8, 0xffff_fff0, r.u32()]);
        this.#descriptor(q, head, {
          addr: table,
          len,
          flags: VIRTQ_DESC_F_INDIRECT | (r.chance(0.2) ? VIRTQ_DESC_F_NEXT | writable : 0),
          next,
        });
        break;
      }
      case 3: // a buffer aliasing the rings themselves
        this.#descriptor(q, head, {
          addr: BigInt(ringBase(r.below(FUZZ_QUEUES)) + r.pick([0, 0x1000, 0x2000, 0x1ff0])),
          len: r.pick([16, 0x1000, 0x3000, 0x10000]),
          flags: VIRTQ_DESC_F_WRITE,
          next: 0,
        });
        break;
      case 4: // a chain through every descriptor, longer than the queue with a loop back
        for (let i = 0; i < size; i++) {
          this.#descriptor(q, i, {
            addr: this.#buffer(),
            len: 16,
            flags: VIRTQ_DESC_F_NEXT | writable,
            next: (i + 1) % size,
          });
        }
        break;
      case 5: // a head out of range
        this.#publish(q, r.pick([size, size + 1, 0xffff, r.below(0x10000)]));
        return this.#kick(q);
      case 6: { // an avail index jump
        this.#avail[q] = (this.#avail[q] + r.pick([size + 1, 0x8000, 0xffff, r.below(0x10000)])) &
          0xffff;
        this.#mem(ringBase(q) + 0x1000 + 2, new Payload(2).u16(0, this.#avail[q]).bytes);
        return this.#kick(q);
      }
      case 7: // random bytes over part of the ring
        this.#mem(ringBase(q) + r.below(0x2800), r.bytes(1 + r.below(64)));
        return this.#kick(q);
      case 8: // flags and event indices
        this.#mem(
          ringBase(q) + r.pick([0x1000, 0x1000 + 4 + 2 * size, 0x2000, 0x2000 + 4 + 8 * size]),
          r.bytes(2),
        );
        return this.#kick(q);
      case 9: // the same buffer twice, readable then writable (aliasing)
        {
          const buffer = this.#buffer();
          this.#descriptor(q, head, { addr: buffer, len: 4096, flags: VIRTQ_DESC_F_NEXT, next });
          this.#descriptor(q, next, {
            addr: buffer,
            len: r.pick([4096, 0xffff_ffff]),
            flags: VIRTQ_DESC_F_WRITE,
            next: 0,
          });
        }
        break;
      default: { // a well-formed chain: readable then writable
        const readable = r.below(3);
        const total = readable + 1 + r.below(2);
        for (let i = 0; i < total; i++) {
          const last = i === total - 1;
          this.#descriptor(q, (head + i) % size, {
            addr: this.#buffer(),
            len: r.pick([1, 8, 44, 64, 512, 4096]),
            flags: (i >= readable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
            next: (head + i + 1) % size,
          });
        }
      }
    }
    this.#publish(q, head);
    this.#kick(q);
  }

  #kick(q: number): void {
    this.#ops.push({ op: "kick", q });
  }
}
