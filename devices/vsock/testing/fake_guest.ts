/**
 * Test helpers: a vsock guest driver played by the TypeScript vhost-user
 * front-end (rx and tx queues as Linux's virtio_transport lays them out).
 * The daemon itself runs as a child process through
 * tests/integration/daemon_process.ts.
 *
 * @module
 */

import { DriverMemory, DriverQueue, VhostUserFrontend } from "../../../frontend/mod.ts";
import { bit } from "../../../core/protocol/constants.ts";
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX } from "../../../core/virtio/features.ts";
import {
  decodeHeader,
  headerBytes,
  VIRTIO_VSOCK_TYPE_STREAM,
  VMADDR_CID_HOST,
  VSOCK_HEADER_SIZE,
  VSOCK_RX_QUEUE,
  VSOCK_TX_QUEUE,
  type VsockHeader,
} from "../packet.ts";

/** A packet the guest received. */
export interface Packet {
  /** Its header. */
  readonly header: VsockHeader;
  /** Its payload. */
  readonly payload: Uint8Array;
}

/** Options of {@link FakeGuest.attach}. */
export interface FakeGuestOptions {
  /** Queue size of both queues. Default 256. */
  readonly queueSize?: number;
  /** rx buffers kept available. Default 128. */
  readonly rxBuffers?: number;
  /** Payload bytes per rx buffer (the header comes on top). Default 4096, as Linux. */
  readonly rxBufferSize?: number;
  /** Guest RAM. Default 32 MiB. */
  readonly memorySize?: number;
  /** Device features to accept beyond VERSION_1 and EVENT_IDX, if offered (e.g. SEQPACKET). */
  readonly features?: bigint;
}

/** A guest driving the device's rx and tx queues. */
export class FakeGuest {
  /** The CID read from config space. */
  readonly cid: number;
  /** Packets received and not yet taken. */
  readonly inbox: Packet[] = [];
  readonly #frontend: VhostUserFrontend;
  readonly #memory: DriverMemory;
  readonly #rx: DriverQueue;
  readonly #tx: DriverQueue;
  readonly #rxBuffers: number;
  readonly #rxBufferSize: number;
  #closed = false;

  private constructor(
    frontend: VhostUserFrontend,
    parts: { memory: DriverMemory; rx: DriverQueue; tx: DriverQueue; cid: number },
    options: { rxBuffers: number; rxBufferSize: number },
  ) {
    this.#frontend = frontend;
    this.#memory = parts.memory;
    this.#rx = parts.rx;
    this.#tx = parts.tx;
    this.cid = parts.cid;
    this.#rxBuffers = options.rxBuffers;
    this.#rxBufferSize = options.rxBufferSize;
  }

  /** Connects to the daemon at `socket` as QEMU does and starts rx and tx. */
  static async attach(socket: string, options: FakeGuestOptions = {}): Promise<FakeGuest> {
    const frontend = await VhostUserFrontend.connect(socket);
    const size = options.queueSize ?? 256;
    const memory = new DriverMemory({ size: options.memorySize ?? 32 << 20, name: "vsock-guest" });
    const rx = new DriverQueue(memory, { size, eventIdx: true });
    const tx = new DriverQueue(memory, { size, eventIdx: true });
    // QEMU's vhost-user-vsock sets up rx and tx only; the event queue stays in QEMU.
    const init = frontend.init({ queueCount: 2 });
    const config = frontend.getConfig(0, 8);
    const cid = Number(new DataView(config.buffer, config.byteOffset, 8).getBigUint64(0, true));
    frontend.start({
      memory,
      queues: [rx, tx],
      features: init.features &
        (bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) | (options.features ?? 0n)),
    });
    const guest = new FakeGuest(frontend, { memory, rx, tx, cid }, {
      rxBuffers: Math.min(options.rxBuffers ?? 128, size),
      rxBufferSize: options.rxBufferSize ?? 4096,
    });
    guest.refill();
    return guest;
  }

  /** The front-end, for tests of the protocol itself. */
  get frontend(): VhostUserFrontend {
    return this.#frontend;
  }

  /** Tops the rx queue up to its buffer count. */
  refill(): void {
    let added = 0;
    while (this.#rx.inFlight < this.#rxBuffers) {
      this.#rx.add({ readable: [], writable: [VSOCK_HEADER_SIZE + this.#rxBufferSize] });
      added++;
    }
    if (added === 0) return;
    this.#rx.publish();
    if (this.#rx.needsKick()) this.#frontend.kick(VSOCK_RX_QUEUE);
  }

  /**
   * Sends a packet: header (src CID and type filled in unless given) and
   * payload in separate descriptors, as Linux does. `len` defaults to the
   * payload's length.
   */
  send(
    header: Partial<VsockHeader> & Pick<VsockHeader, "op" | "srcPort" | "dstPort">,
    payload: Uint8Array = new Uint8Array(0),
  ): void {
    this.#reclaimTx();
    const full: VsockHeader = {
      srcCid: this.cid,
      dstCid: VMADDR_CID_HOST,
      len: payload.length,
      type: VIRTIO_VSOCK_TYPE_STREAM,
      flags: 0,
      bufAlloc: 256 * 1024,
      fwdCnt: 0,
      ...header,
    };
    const readable = payload.length > 0 ? [headerBytes(full), payload] : [headerBytes(full)];
    this.sendRaw(readable);
  }

  /** Sends a tx chain of raw readable buffers. */
  sendRaw(readable: Uint8Array[]): void {
    this.#reclaimTx();
    const deadline = performance.now() + 5000;
    while (this.#tx.numFree < readable.length) {
      if (performance.now() > deadline) throw new Error("the device returns no tx chains");
      // Keep rx moving meanwhile: the device may wait for rx buffers before taking tx.
      this.poll(0);
      this.#frontend.waitForCall(VSOCK_TX_QUEUE, 2);
      this.#reclaimTx();
    }
    this.#tx.add({ readable, writable: [] });
    this.#tx.publish();
    if (this.#tx.needsKick()) this.#frontend.kick(VSOCK_TX_QUEUE);
  }

  /** Tx chains the device has not returned yet. */
  get txInFlight(): number {
    this.#reclaimTx();
    return this.#tx.inFlight;
  }

  /** Waits up to `timeoutMs` for rx packets; adds them to {@link inbox}. Returns how many came. */
  poll(timeoutMs: number): number {
    let got = this.#collect();
    if (got === 0 && this.#frontend.waitForCall(VSOCK_RX_QUEUE, timeoutMs)) got = this.#collect();
    return got;
  }

  /**
   * Takes the first packet matching `match` from the inbox, polling for up
   * to `timeoutMs`. Throws if none arrives.
   */
  take(match: (packet: Packet) => boolean, timeoutMs = 5000): Packet {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const index = this.inbox.findIndex(match);
      if (index >= 0) return this.inbox.splice(index, 1)[0];
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `no matching packet in ${timeoutMs} ms; inbox: ${
            this.inbox.map((p) => JSON.stringify(p.header)).join("\n")
          }`,
        );
      }
      this.poll(Math.min(left, 50));
    }
  }

  /** Polls for `ms` and returns (and removes) everything that arrived, plus what was waiting. */
  drain(ms: number): Packet[] {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) this.poll(Math.max(1, deadline - performance.now()));
    return this.inbox.splice(0);
  }

  /** Stops the rings (as QEMU on shutdown) and hangs up. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#frontend.stop();
    } catch {
      // The daemon may be gone already.
    }
    this.#frontend.close();
    this.#memory.close();
  }

  #collect(): number {
    let got = 0;
    for (const used of this.#rx.takeUsed()) {
      got++;
      if (used.length < VSOCK_HEADER_SIZE) continue;
      const header = decodeHeader(used.data.slice(0, VSOCK_HEADER_SIZE));
      const payload = used.data.slice(VSOCK_HEADER_SIZE, used.length);
      this.inbox.push({ header, payload });
    }
    if (got > 0) this.refill();
    return got;
  }

  #reclaimTx(): void {
    this.#tx.takeUsed();
  }
}
