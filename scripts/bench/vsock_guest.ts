/**
 * A vsock guest at memory speed for `bench:vsock-host`: the TypeScript
 * front-end drives the device's rx and tx queues as Linux's
 * virtio_transport does (4 KiB rx buffers kept available, header and payload
 * in separate tx descriptors, credit accounting on both sides), with no VM
 * and no guest kernel, so the figures are the daemon's. Packets are batched:
 * many published per kick, and calls are waited for only when nothing else
 * can be done. Not a test helper: it asserts only what it needs to go on.
 *
 * rx is driven as a guest driver does it, not through the test driver's
 * general `add`/`takeUsed` (which zero every buffer and copy every payload
 * into a fresh array): one fixed buffer per descriptor, re-posted as soon as
 * it is consumed, and the payload copied once into a scratch buffer, as an
 * application's `read` copies it out of the guest kernel.
 *
 * @module
 */

import { bit } from "../../core/protocol/constants.ts";
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX } from "../../core/virtio/features.ts";
import {
  decodeHeader,
  headerBytes,
  VIRTIO_VSOCK_TYPE_STREAM,
  VMADDR_CID_HOST,
  VSOCK_HEADER_SIZE,
  VSOCK_RX_QUEUE,
  VSOCK_TX_QUEUE,
  type VsockHeader,
} from "../../devices/vsock/packet.ts";
import { Epoll, EPOLLIN } from "../../ffi/mod.ts";
import { VIRTQ_DESC_F_WRITE } from "../../core/virtio/features.ts";
import { DriverMemory, DriverQueue, VhostUserFrontend } from "../../frontend/mod.ts";

export type { VsockHeader };

const QUEUE_SIZE = 256;
const RX_BUFFER = 4096;
/** The guest's receive buffer per connection (Linux's default, 256 KiB). */
export const GUEST_BUF_ALLOC = 256 * 1024;
/**
 * Linux's `virtio_transport_stream_do_dequeue` sends a credit update once the
 * free space the peer knows of falls below `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`
 * (64 KiB): with its 256 KiB buffer, after 192 KiB read unannounced.
 */
const VIRTIO_VSOCK_MAX_PKT_BUF_SIZE = 64 * 1024;

/** One received packet: its header and payload length (the bytes are not kept). */
export interface Received {
  /** The header. */
  readonly header: VsockHeader;
  /** Payload bytes. */
  readonly length: number;
}

/** The guest end of a vsock device under benchmark. */
export class BenchGuest {
  /** The guest's CID. */
  readonly cid: number;
  readonly #frontend: VhostUserFrontend;
  readonly #memory: DriverMemory;
  readonly #rx: DriverQueue;
  readonly #tx: DriverQueue;
  readonly #calls = new Epoll(2);
  /** Each rx descriptor's fixed buffer: the whole of it, and its header. */
  readonly #rxBuffers: Uint8Array[] = [];
  readonly #rxHeaders: Uint8Array[] = [];
  /** Where received payload is "read" to. */
  readonly #scratch = new Uint8Array(RX_BUFFER);

  private constructor(
    frontend: VhostUserFrontend,
    parts: { memory: DriverMemory; rx: DriverQueue; tx: DriverQueue; cid: number },
  ) {
    this.#frontend = frontend;
    this.#memory = parts.memory;
    this.#rx = parts.rx;
    this.#tx = parts.tx;
    this.cid = parts.cid;
    // One descriptor per rx buffer, written once: the ring only cycles their indices.
    for (let i = 0; i < QUEUE_SIZE; i++) {
      const length = VSOCK_HEADER_SIZE + RX_BUFFER;
      const gpa = parts.memory.alloc(length, 16);
      parts.rx.writeDescriptor(i, { addr: gpa, len: length, flags: VIRTQ_DESC_F_WRITE, next: 0 });
      this.#rxBuffers.push(parts.memory.view(gpa, length));
      this.#rxHeaders.push(parts.memory.view(gpa, VSOCK_HEADER_SIZE));
      parts.rx.rawPushAvail(i);
    }
    this.#calls.add(frontend.callFd(VSOCK_RX_QUEUE), { events: EPOLLIN, token: 0 });
    this.#calls.add(frontend.callFd(VSOCK_TX_QUEUE), { events: EPOLLIN, token: 1 });
  }

  /** Attaches to the daemon at `socket` as QEMU does and fills the rx queue. */
  static async attach(socket: string): Promise<BenchGuest> {
    const frontend = await VhostUserFrontend.connect(socket);
    const memory = new DriverMemory({ size: 64 << 20, name: "vsock-bench-guest" });
    const rx = new DriverQueue(memory, { size: QUEUE_SIZE, eventIdx: true });
    const tx = new DriverQueue(memory, { size: QUEUE_SIZE, eventIdx: true });
    const init = frontend.init({ queueCount: 2 });
    const config = frontend.getConfig(0, 8);
    const cid = Number(new DataView(config.buffer, config.byteOffset, 8).getBigUint64(0, true));
    frontend.start({
      memory,
      queues: [rx, tx],
      features: init.features & (bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX)),
    });
    const guest = new BenchGuest(frontend, { memory, rx, tx, cid });
    rx.publish();
    if (rx.needsKick()) frontend.kick(VSOCK_RX_QUEUE);
    return guest;
  }

  /** Free tx descriptors after taking back what the device used. */
  txRoom(): number {
    this.#tx.takeUsed();
    return this.#tx.numFree;
  }

  /**
   * Queues a packet for the host (header and payload in two descriptors);
   * it goes out at the next {@link flush}. Waits for the device if the
   * ring is full.
   */
  queue(header: VsockHeader, payload?: Uint8Array): void {
    const full = { ...header, srcCid: this.cid };
    const readable = payload ? [headerBytes(full), payload] : [headerBytes(full)];
    const deadline = performance.now() + 10_000;
    while (this.txRoom() < readable.length) {
      if (performance.now() > deadline) throw new Error("the device returns no tx chains");
      this.flush();
      this.wait(50);
    }
    this.#tx.add({ readable, writable: [] });
  }

  /** Publishes what was queued, kicking if the device asks for it. */
  flush(): void {
    this.#tx.publish();
    if (this.#tx.needsKick()) this.#frontend.kick(VSOCK_TX_QUEUE);
  }

  /** Takes what the device put on rx (refilling it); waits up to `timeoutMs` for a call if nothing is there. */
  receive(timeoutMs: number): Received[] {
    let out = this.#collect();
    if (out.length === 0 && timeoutMs > 0) {
      this.wait(timeoutMs);
      out = this.#collect();
    }
    return out;
  }

  /** Waits up to `timeoutMs` for a call on either queue. */
  wait(timeoutMs: number): void {
    const ready = this.#calls.wait(Math.ceil(timeoutMs));
    for (let i = 0; i < ready; i++) {
      this.#frontend.waitForCall(
        this.#calls.eventToken(i) === 0 ? VSOCK_RX_QUEUE : VSOCK_TX_QUEUE,
        0,
      );
    }
  }

  /** Hangs up. */
  close(): void {
    try {
      this.#frontend.stop();
    } catch {
      // The daemon may be gone.
    }
    this.#frontend.close();
    this.#calls.close();
    this.#memory.close();
  }

  #collect(): Received[] {
    const out: Received[] = [];
    const rx = this.#rx;
    for (;;) {
      const used = rx.takeUsedRaw();
      if (used.length === 0) break;
      for (const { id, length } of used) {
        if (length >= VSOCK_HEADER_SIZE && id < QUEUE_SIZE) {
          const header = decodeHeader(this.#rxHeaders[id]);
          const payload = Math.min(length, VSOCK_HEADER_SIZE + RX_BUFFER);
          this.#scratch.set(this.#rxBuffers[id].subarray(VSOCK_HEADER_SIZE, payload));
          out.push({ header, length: length - VSOCK_HEADER_SIZE });
        }
        rx.rawPushAvail(id);
      }
      // Interrupt me at the next used buffer, then look again for any that raced in
      // (virtqueue_enable_cb, then virtqueue_poll).
      rx.setUsedEvent(rx.lastUsedIndex);
    }
    if (out.length > 0) {
      rx.publish();
      if (rx.needsKick()) this.#frontend.kick(VSOCK_RX_QUEUE);
    }
    return out;
  }
}

/** The guest's side of one stream connection: credit both ways. */
export class GuestStream {
  /** Our port. */
  readonly localPort: number;
  /** The host's port. */
  readonly peerPort: number;
  #peerBufAlloc = 0;
  #peerFwdCnt = 0;
  #txCnt = 0;
  #fwdCnt = 0;
  #advertised = 0;

  /** A stream between guest port `localPort` and host port `peerPort`. */
  constructor(localPort: number, peerPort: number) {
    this.localPort = localPort;
    this.peerPort = peerPort;
  }

  /** Bytes the host can take now (§5.10.6.3). */
  get credit(): number {
    return this.#peerBufAlloc - ((this.#txCnt - this.#peerFwdCnt) >>> 0);
  }

  /** Records the host's credit fields of a packet for this stream. */
  update(header: VsockHeader): void {
    this.#peerBufAlloc = header.bufAlloc;
    this.#peerFwdCnt = header.fwdCnt;
  }

  /** Counts `count` bytes sent. */
  sent(count: number): void {
    this.#txCnt = (this.#txCnt + count) >>> 0;
  }

  /**
   * Counts `count` bytes consumed; returns whether a credit update is due: as
   * Linux, once the host knows of less than 64 KiB free.
   */
  consumed(count: number): boolean {
    this.#fwdCnt = (this.#fwdCnt + count) >>> 0;
    const unannounced = (this.#fwdCnt - this.#advertised) >>> 0;
    return unannounced > 0 && GUEST_BUF_ALLOC - unannounced < VIRTIO_VSOCK_MAX_PKT_BUF_SIZE;
  }

  /** The header fields for a packet of this stream, carrying our credit. */
  header(op: number, options: { len?: number; flags?: number } = {}): VsockHeader {
    this.#advertised = this.#fwdCnt;
    return {
      srcCid: 0,
      dstCid: VMADDR_CID_HOST,
      srcPort: this.localPort,
      dstPort: this.peerPort,
      len: options.len ?? 0,
      type: VIRTIO_VSOCK_TYPE_STREAM,
      op,
      flags: options.flags ?? 0,
      bufAlloc: GUEST_BUF_ALLOC,
      fwdCnt: this.#fwdCnt,
    };
  }
}
