/**
 * The virtio socket device (VIRTIO 1.2 §5.10): stream connections between
 * the guest and host streams, with credit-based flow control both ways.
 *
 * Data path: guest payload goes to the host stream with `writev` on iovecs
 * that point into guest memory; host bytes come back with `readv` straight
 * into the guest's rx buffers. When a host stream is full its bytes wait in
 * the connection's own buffer (at most the `buf_alloc` we advertise) and the
 * guest gets no more credit until the host drains it, so a slow host reader
 * stalls its own connection only.
 *
 * @module
 */

import { DeferredPass } from "../../core/deferred_pass.ts";
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT } from "../../ffi/epoll.ts";
import { IOV_MAX, IovecList } from "../../ffi/iovec.ts";
import { stableBuffer } from "../../ffi/structs.ts";
import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import type { Timer } from "../../core/event_loop.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import {
  type DescriptorChain,
  pushIovecs,
  readSlices,
  writeSlices,
} from "../../core/virtio/descriptor_chain.ts";
import {
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
} from "../../core/virtio/features.ts";
import type { SplitQueue } from "../../core/virtio/split_queue.ts";
import type { MemoryRegion } from "../../core/memory/guest_memory.ts";
import { Fifo } from "./fifo.ts";
import { Connection, connectionKey } from "./connection.ts";
import type { HostBackend, HostStream } from "./host.ts";
import { LogLimiter } from "./log_limiter.ts";
import {
  decodeHeader,
  decodeHeaderAt,
  describeHeader,
  encodeHeader,
  encodeHeaderAt,
  opName,
  VIRTIO_VSOCK_F_SEQPACKET,
  VIRTIO_VSOCK_OP_CREDIT_REQUEST,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_SEQ_EOM,
  VIRTIO_VSOCK_SEQ_EOR,
  VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE,
  VIRTIO_VSOCK_SHUTDOWN_F_SEND,
  VIRTIO_VSOCK_TYPE_SEQPACKET,
  VIRTIO_VSOCK_TYPE_STREAM,
  VMADDR_CID_HOST,
  VSOCK_CONFIG_SIZE,
  VSOCK_HEADER_SIZE,
  VSOCK_RX_QUEUE,
  VSOCK_TX_QUEUE,
  type VsockHeader,
} from "./packet.ts";
import type { SiblingPacket } from "./registry.ts";
import { OutgoingMessage, pieceFlags } from "./seqpacket.ts";

/** Control packets waiting for rx buffers before the device stops taking tx chains. */
export const MAX_PENDING_CONTROL = 1024;
/** Sibling bytes waiting for this guest's rx buffers before more are dropped. */
export const MAX_SIBLING_BYTES = 8 << 20;
/** How long a host-initiated REQUEST waits for the guest's RESPONSE. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** How long a connection whose host side is gone waits for the guest's RST. */
export const CLOSING_TIMEOUT_MS = 30_000;
/** First port handed out for host-initiated connections. */
export const FIRST_LOCAL_PORT = 1024;

/** tx chains served per pass before the loop serves other fds (and other VMs). */
export const TX_BUDGET = 256;
/** Most rx chains one host read fills (64 of Linux's 4 KiB buffers). */
export const RX_BATCH_CHAINS = 64;
/**
 * Most bytes one host read takes for one connection, so connections take
 * turns. Each batch is published and notified at once: the guest consumes
 * it, and returns credit, while the next is read (docs/architecture.md,
 * "The vsock data path").
 */
export const RX_BATCH_BYTES = 64 * 1024;

/** Options of {@link VsockDevice}. */
export interface VsockDeviceOptions {
  /** The guest's CID (config space, and the only source CID accepted). */
  readonly guestCid: number;
  /** Largest queue size accepted. */
  readonly queueSize: number;
  /** Per-connection host buffer, advertised as `buf_alloc`; also the largest SEQPACKET message. */
  readonly txBufferSize: number;
  /** Offer VIRTIO_VSOCK_F_SEQPACKET (§5.10.3); default false, as upstream. */
  readonly seqpacket?: boolean;
  /** The host side; it outlives the device (one per VM). */
  readonly backend: HostBackend;
  /** Sends a packet for another CID to the sibling registry. */
  readonly route: (packet: SiblingPacket) => void;
  /** Called when the front-end connection ends (the device is reset). */
  readonly detached?: () => void;
}

/** A control packet waiting for an rx buffer. */
type Control =
  | { readonly conn: Connection; readonly op: number; readonly flags: number }
  | { readonly conn: null; readonly header: VsockHeader };

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The vsock device for one front-end connection of one VM. */
export class VsockDevice implements VirtioDevice {
  readonly name = "vsock";
  /** rx, tx and event (QEMU sets up only rx and tx; the event queue stays in QEMU). */
  readonly numQueues = 3;
  readonly maxQueueSize: number;
  /** Like rust-vmm: no INDIRECT_DESC (QEMU would allow it); SEQPACKET only if asked. */
  readonly features: bigint;
  readonly protocolFeatures: bigint = bit(P.MQ) | bit(P.CONFIG);
  /** The guest's CID. */
  readonly guestCid: number;
  readonly #txBufferSize: number;
  readonly #backend: HostBackend;
  readonly #route: (packet: SiblingPacket) => void;
  readonly #detached: (() => void) | undefined;
  readonly #connections = new Map<string, Connection>();
  readonly #localPorts = new Set<number>();
  readonly #control = new Fifo<Control>();
  readonly #siblings = new Fifo<{ packet: SiblingPacket; offset: number }>();
  /** Connections whose host stream has bytes (or end of file) for the guest, in turn order. */
  readonly #rxReady = new Set<Connection>();
  /** Connections that forwarded bytes this tx batch: candidates for a CREDIT_UPDATE. */
  readonly #forwardedTo = new Set<Connection>();
  readonly #iov = new IovecList(64);
  /** Guest payload gathered for one host `writev` (see {@link #forwardToHost}). */
  readonly #pendingIov = new IovecList(64);
  readonly #pendingParts: { chain: DescriptorChain; length: number }[] = [];
  #pendingConn: Connection | null = null;
  #pendingBytes = 0;
  /** The chains of one rx batch and the payload bytes each can take (reused). */
  readonly #rxChains: DescriptorChain[] = [];
  readonly #rxSizes: number[] = [];
  readonly #header = new Uint8Array(VSOCK_HEADER_SIZE);
  #context: DeviceContext | null = null;
  /** The connection the last guest packet was for (see {@link #lookup}). */
  #lastFound: Connection | null = null;
  /** Views of guest memory regions; a new memory table brings new regions, the old ones go. */
  readonly #regionViews = new WeakMap<MemoryRegion, DataView>();
  /** A tx pass is deferred (the budget ran out with chains waiting). */
  readonly #txPass = new DeferredPass(() => this.#processTx());
  #limited: LogLimiter | null = null;
  #siblingBytes = 0;
  #nextLocalPort = FIRST_LOCAL_PORT;
  #txStalled = false;
  #inRx = false;
  #rxAgain = false;
  #inTx = false;
  #txAgain = false;
  #sweepTimer: Timer | null = null;
  /** The driver accepted VIRTIO_VSOCK_F_SEQPACKET. */
  #seqpacket = false;
  /** One host SEQPACKET message at a time is received here (allocated on first use). */
  #messageBuffer: Uint8Array<ArrayBuffer> | null = null;

  /** A device for the guest `guestCid`. */
  constructor(options: VsockDeviceOptions) {
    this.features = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_NOTIFY_ON_EMPTY) |
      bit(VIRTIO_RING_F_EVENT_IDX) | (options.seqpacket ? bit(VIRTIO_VSOCK_F_SEQPACKET) : 0n);
    this.guestCid = options.guestCid;
    this.maxQueueSize = options.queueSize;
    this.#txBufferSize = options.txBufferSize;
    this.#backend = options.backend;
    this.#route = options.route;
    this.#detached = options.detached;
  }

  /** Live connections (for tests and diagnostics). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** §5.10.3: SEQPACKET connections only once the driver accepted the feature. */
  acknowledgeFeatures(features: bigint): void {
    this.#seqpacket = (features & this.features & bit(VIRTIO_VSOCK_F_SEQPACKET)) !== 0n;
  }

  activate(context: DeviceContext): void {
    this.#context = context;
    this.#limited = new LogLimiter(context.log);
  }

  /** §5.10.4: `le64 guest_cid`. */
  readConfig(offset: number, length: number): Uint8Array {
    if (offset + length > VSOCK_CONFIG_SIZE) {
      throw new RangeError(`config [${offset}, +${length}) is outside ${VSOCK_CONFIG_SIZE} bytes`);
    }
    const config = new Uint8Array(VSOCK_CONFIG_SIZE);
    const view = new DataView(config.buffer);
    view.setUint32(0, this.guestCid % 4294967296, true);
    view.setUint32(4, Math.floor(this.guestCid / 4294967296), true);
    return config.slice(offset, offset + length);
  }

  onKick(queue: number): void {
    if (queue === VSOCK_TX_QUEUE) this.#processTx();
    else if (queue === VSOCK_RX_QUEUE) this.#processRx();
  }

  reset(): void {
    this.#lastFound = null;
    this.#pendingConn = null;
    this.#pendingParts.length = 0;
    this.#pendingBytes = 0;
    this.#pendingIov.clear();
    for (const conn of this.#connections.values()) this.#closeStream(conn);
    this.#connections.clear();
    this.#localPorts.clear();
    this.#control.clear();
    this.#siblings.clear();
    this.#siblingBytes = 0;
    this.#rxReady.clear();
    this.#forwardedTo.clear();
    this.#sweepTimer?.cancel();
    this.#sweepTimer = null;
    this.#txStalled = false;
    this.#context = null;
    this.#detached?.();
  }

  /**
   * A host program asks for guest port `port` (hybrid vsock CONNECT):
   * sends the guest a REQUEST. Returns false (the caller closes the stream)
   * while no guest is attached.
   */
  hostConnect(stream: HostStream, port: number): boolean {
    const context = this.#context;
    if (!context || !context.memory()) return false;
    if (stream.seqpacket && !this.#seqpacket) {
      this.#limited?.info(
        "seqpacket-off",
        `a SOCK_SEQPACKET host program asked for guest port ${port}, but the guest did not accept VIRTIO_VSOCK_F_SEQPACKET`,
      );
      return false;
    }
    const localPort = this.#allocateLocalPort(port);
    const conn = new Connection({ localPort, peerPort: port }, {
      state: "connecting",
      stream,
      bufAlloc: this.#txBufferSize,
      seqpacket: stream.seqpacket,
    });
    conn.deadline = performance.now() + CONNECT_TIMEOUT_MS;
    this.#reserve(stream);
    this.#connections.set(conn.key, conn);
    this.#localPorts.add(localPort);
    context.log.debug(`host connects to guest port ${port} from local port ${localPort}`);
    this.#setEvents(conn);
    this.#queueControl(conn, VIRTIO_VSOCK_OP_REQUEST);
    this.#scheduleSweep();
    this.#processRx();
    return true;
  }

  /** A sibling VM's guest sent this guest a packet. Returns false if it was dropped. */
  deliverSibling(packet: SiblingPacket): boolean {
    if (!this.#context) return false;
    // A guest without the feature would RST it anyway; its sender learns at once.
    if (packet.header.type === VIRTIO_VSOCK_TYPE_SEQPACKET && !this.#seqpacket) return false;
    if (this.#siblingBytes + packet.payload.length > MAX_SIBLING_BYTES) {
      this.#limited?.warn(
        "sibling-full",
        `dropping a packet from CID ${packet.header.srcCid}: ${this.#siblingBytes} bytes already wait for rx buffers`,
      );
      return false;
    }
    this.#siblingBytes += packet.payload.length;
    this.#siblings.push({ packet, offset: 0 });
    this.#processRx();
    return true;
  }

  // ---- tx: packets from the guest (§5.10.6.1)

  #processTx(): void {
    if (this.#inTx) {
      this.#txAgain = true;
      return;
    }
    const queue = this.#context?.queue(VSOCK_TX_QUEUE);
    if (!queue) return;
    this.#inTx = true;
    try {
      do {
        this.#txAgain = false;
        this.#drainTx(queue);
      } while (this.#txAgain);
    } finally {
      this.#inTx = false;
    }
    for (const conn of this.#forwardedTo) this.#maybeCreditUpdate(conn);
    this.#forwardedTo.clear();
    // rx first: credit the guest just returned becomes data on rx before the
    // used tx buffers' notification, so one wake-up of the guest finds both.
    try {
      this.#processRx();
    } finally {
      queue.notify();
    }
  }

  #drainTx(queue: SplitQueue): void {
    this.#txStalled = false;
    let more: boolean;
    let served = 0;
    do {
      queue.disableNotification();
      for (;;) {
        // Replies wait for rx buffers: stop taking requests until the guest gives some.
        if (this.#control.length >= MAX_PENDING_CONTROL) {
          this.#txStalled = true;
          this.#flushPending();
          queue.notify();
          return;
        }
        // A guest that keeps its ring full gets its turn, then the other fds theirs.
        if (served === TX_BUDGET && queue.hasAvailable()) {
          this.#flushPending();
          queue.notify();
          if (this.#context) this.#txPass.schedule(this.#context.loop);
          return;
        }
        const chain = queue.next();
        if (chain === null) break;
        this.#handleTxChain(chain);
        queue.addUsed(chain.head, 0);
        served++;
      }
      // The chains go back to the guest at notify() (#processTx): their payload is written before.
      this.#flushPending();
      more = queue.enableNotification();
    } while (more);
  }

  #handleTxChain(chain: DescriptorChain): void {
    if (chain.readableLength < VSOCK_HEADER_SIZE) {
      this.#limited?.warn(
        "short",
        `tx chain ${chain.head} has ${chain.readableLength} readable bytes, less than a header: dropped`,
      );
      return;
    }
    // One read of each field: the guest may change shared memory under us. Linux puts the
    // header in a descriptor of its own, so it is read in place, without a copy.
    const first = chain.readable[0];
    const header = first.length >= VSOCK_HEADER_SIZE
      ? decodeHeaderAt(this.#viewOf(first.region), first.offset)
      : decodeHeader(readSlices(chain.readable, { length: VSOCK_HEADER_SIZE }));
    if (header.srcCid !== this.guestCid) {
      this.#limited?.warn(
        "src-cid",
        `dropping a packet with source CID ${header.srcCid}, not the guest's ${this.guestCid}: ` +
          describeHeader(header),
      );
      return;
    }
    const available = chain.readableLength - VSOCK_HEADER_SIZE;
    // Anything but more payload for the gathered connection sees its bytes written first.
    const pending = this.#pendingConn;
    if (
      pending !== null &&
      (header.op !== VIRTIO_VSOCK_OP_RW || header.dstCid !== VMADDR_CID_HOST ||
        header.srcPort !== pending.peerPort || header.dstPort !== pending.localPort)
    ) {
      this.#flushPending();
    }
    if (header.dstCid === VMADDR_CID_HOST) {
      this.#handleHostPacket(header, { chain, available });
    } else {
      this.#forwardToSibling(header, { chain, available });
    }
  }

  #forwardToSibling(
    header: VsockHeader,
    payload: { chain: DescriptorChain; available: number },
  ): void {
    if (header.dstCid === this.guestCid || Number.isNaN(header.dstCid)) {
      this.#limited?.warn("dst-cid", `dropping a packet for CID ${header.dstCid}`);
      return;
    }
    if (!this.#typeSupported(header)) return;
    const length = header.op === VIRTIO_VSOCK_OP_RW ? Math.min(header.len, payload.available) : 0;
    // The payload is copied: bound it before allocating (guest descriptors may alias).
    if (length > MAX_SIBLING_BYTES) {
      this.#limited?.warn(
        "sibling-size",
        `dropping a ${length}-byte packet for CID ${header.dstCid}`,
      );
      return;
    }
    const bytes = length > 0
      ? readSlices(payload.chain.readable, { skip: VSOCK_HEADER_SIZE, length })
      : new Uint8Array(0);
    this.#route({ header: { ...header, len: bytes.length }, payload: bytes });
  }

  #handleHostPacket(
    header: VsockHeader,
    payload: { chain: DescriptorChain; available: number },
  ): void {
    if (!this.#typeSupported(header)) return;
    const conn = this.#lookup(header.dstPort, header.srcPort);
    if (conn && conn.type !== header.type) {
      this.#abort(conn, `a packet of socket type ${header.type} on a type ${conn.type} connection`);
      return;
    }
    if (!conn) {
      if (header.op === VIRTIO_VSOCK_OP_REQUEST) this.#acceptGuestConnect(header);
      else this.#resetReply(header);
      return;
    }
    if (conn.updatePeerCredit(header.bufAlloc, header.fwdCnt)) this.#creditArrived(conn);
    switch (header.op) {
      case VIRTIO_VSOCK_OP_RESPONSE:
        if (conn.state === "connecting") this.#established(conn);
        else this.#abort(conn, "an unexpected RESPONSE");
        return;
      case VIRTIO_VSOCK_OP_RST:
        this.#context?.log.debug(`guest reset ${this.#describe(conn)}`);
        this.#remove(conn, { reset: false });
        return;
      case VIRTIO_VSOCK_OP_SHUTDOWN:
        this.#guestShutdown(conn, header.flags);
        return;
      case VIRTIO_VSOCK_OP_RW:
        if (conn.state !== "established" || conn.guestShutSend) {
          this.#abort(conn, `data in state ${conn.state}`);
        } else if (header.len > payload.available) {
          this.#abort(
            conn,
            `an RW header claiming ${header.len} bytes with ${payload.available} in the chain`,
          );
        } else if (conn.seqpacket) {
          this.#messageToHost(conn, { header, chain: payload.chain });
        } else {
          this.#forwardToHost(conn, { chain: payload.chain, length: header.len });
        }
        return;
      case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
        return;
      case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
        this.#queueCreditUpdate(conn);
        return;
      case VIRTIO_VSOCK_OP_REQUEST:
        this.#abort(conn, "a REQUEST for a connection that exists");
        return;
      default:
        this.#abort(conn, `unknown ${opName(header.op)}`);
    }
  }

  /**
   * STREAM always; SEQPACKET once the driver accepted the feature (§5.10.3).
   * Anything else gets an RST, as Linux's vhost-vsock answers.
   */
  #typeSupported(header: VsockHeader): boolean {
    if (
      header.type === VIRTIO_VSOCK_TYPE_STREAM ||
      (header.type === VIRTIO_VSOCK_TYPE_SEQPACKET && this.#seqpacket)
    ) {
      return true;
    }
    this.#limited?.info(
      "type",
      `socket type ${header.type} is not supported` +
        (header.type === VIRTIO_VSOCK_TYPE_SEQPACKET
          ? " (VIRTIO_VSOCK_F_SEQPACKET was not negotiated)"
          : "") +
        `: ${describeHeader(header)}`,
    );
    this.#resetReply(header);
    return false;
  }

  /** The connection of a guest packet; the last one found is checked first (a stream's packets come in runs). */
  #lookup(localPort: number, peerPort: number): Connection | undefined {
    const last = this.#lastFound;
    if (
      last !== null && !last.removed && last.localPort === localPort && last.peerPort === peerPort
    ) {
      return last;
    }
    const conn = this.#connections.get(connectionKey(localPort, peerPort));
    this.#lastFound = conn ?? null;
    return conn;
  }

  /** A DataView over a whole guest memory region, made once per region. */
  #viewOf(region: MemoryRegion): DataView {
    let view = this.#regionViews.get(region);
    if (view === undefined) {
      view = new DataView(region.bytes.buffer, region.bytes.byteOffset, region.bytes.byteLength);
      this.#regionViews.set(region, view);
    }
    return view;
  }

  /** §5.10.6.2: the guest connects to a host port. */
  #acceptGuestConnect(header: VsockHeader): void {
    let stream: HostStream;
    const seqpacket = header.type === VIRTIO_VSOCK_TYPE_SEQPACKET;
    try {
      stream = this.#backend.connect(header.dstPort, { seqpacket });
    } catch (error) {
      this.#context?.log.debug(
        `guest port ${header.srcPort} cannot reach host port ${header.dstPort}: ${
          errorText(error)
        }`,
      );
      this.#resetReply(header);
      return;
    }
    const conn = new Connection({ localPort: header.dstPort, peerPort: header.srcPort }, {
      state: stream.pending ? "host-connecting" : "established",
      stream,
      bufAlloc: this.#txBufferSize,
      seqpacket,
    });
    conn.updatePeerCredit(header.bufAlloc, header.fwdCnt);
    this.#reserve(stream);
    this.#connections.set(conn.key, conn);
    if (stream.pending) {
      conn.deadline = performance.now() + CONNECT_TIMEOUT_MS;
      this.#scheduleSweep();
    } else {
      this.#context?.log.debug(`guest connected ${this.#describe(conn)}`);
      this.#queueControl(conn, VIRTIO_VSOCK_OP_RESPONSE);
    }
    this.#setEvents(conn);
  }

  /**
   * The guest may have `buf_alloc` bytes in flight: the host socket should
   * hold them all, so a host program that reads a little late costs no
   * copies into the connection's buffer (Linux's default send buffer is
   * 208 KiB of kernel bookkeeping, less than 256 KiB of payload).
   */
  #reserve(stream: HostStream): void {
    stream.reserveSendBuffer(this.#txBufferSize);
  }

  /** The host stream's connect ended: RESPONSE if it worked, else RST. */
  #hostConnectDone(conn: Connection, flags: number): void {
    if (flags & (EPOLLERR | EPOLLHUP)) {
      this.#context?.log.debug(`${this.#describe(conn)}: the host refused the connection`);
      this.#remove(conn, { reset: true });
    } else if (flags & EPOLLOUT) {
      conn.state = "established";
      conn.deadline = Infinity;
      this.#context?.log.debug(`guest connected ${this.#describe(conn)}`);
      this.#queueControl(conn, VIRTIO_VSOCK_OP_RESPONSE);
      this.#setEvents(conn);
    }
    this.#processRx();
  }

  /**
   * The guest accepted a host-initiated connection: tell the host program if
   * its side wants it (hybrid vsock's `OK <port>`; nothing over AF_VSOCK).
   */
  #established(conn: Connection): void {
    const line = this.#backend.confirmation(conn.peerPort);
    if (line) {
      let written: number | null = null;
      try {
        written = conn.stream?.write(line) ?? null;
      } catch (error) {
        this.#context?.log.debug(`host side of ${this.#describe(conn)} left: ${errorText(error)}`);
      }
      if (written !== line.length) {
        this.#remove(conn, { reset: true });
        return;
      }
    }
    conn.state = "established";
    conn.deadline = Infinity;
    this.#setEvents(conn);
  }

  /** §5.10.6.4: the guest will send and/or receive no more. */
  #guestShutdown(conn: Connection, flags: number): void {
    if (flags & VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE) {
      conn.guestShutReceive = true;
      this.#rxReady.delete(conn);
    }
    if (flags & VIRTIO_VSOCK_SHUTDOWN_F_SEND) conn.guestShutSend = true;
    if (conn.state !== "established") {
      // The host side is gone (or never came): the clean close ends with our RST.
      this.#remove(conn, { reset: true });
      return;
    }
    if (conn.guestShutReceive && conn.guestShutSend) {
      if (conn.txEmpty) this.#remove(conn, { reset: true });
      else conn.closeAfterFlush = true;
      return;
    }
    if (conn.guestShutSend && conn.txEmpty) this.#shutHostWrite(conn);
    this.#setEvents(conn);
  }

  /**
   * A SEQPACKET RW: its payload joins the message being gathered; at EOM
   * the whole message goes to the host socket in one send (§5.10.6). The
   * gathered and waiting bytes are what credit allows the guest, at most
   * our `buf_alloc`: beyond it the guest broke the protocol.
   */
  #messageToHost(conn: Connection, packet: { header: VsockHeader; chain: DescriptorChain }): void {
    const { header, chain } = packet;
    const messages = conn.messages;
    if (header.len > messages.free) {
      this.#abort(
        conn,
        `a SEQPACKET message past its credit: ${header.len} more bytes with ` +
          `${messages.free} of ${conn.bufAlloc} free`,
      );
      return;
    }
    // Straight from guest memory into the connection's buffer: one copy.
    let skip = VSOCK_HEADER_SIZE;
    let left = header.len;
    for (const slice of chain.readable) {
      if (left === 0) break;
      if (skip >= slice.length) {
        skip -= slice.length;
        continue;
      }
      const take = Math.min(slice.length - skip, left);
      const start = slice.offset + skip;
      messages.append(slice.region.bytes.subarray(start, start + take));
      left -= take;
      skip = 0;
    }
    if (!(header.flags & VIRTIO_VSOCK_SEQ_EOM)) return;
    if (!messages.end({ eor: (header.flags & VIRTIO_VSOCK_SEQ_EOR) !== 0 })) return;
    if (messages.count === 1) this.#flushMessages(conn);
  }

  /**
   * SEQPACKET: sends the waiting whole messages to the host socket, in
   * order, until it is full. A send that waits on a helper thread (AF_VSOCK)
   * goes on when it is done; until then nothing else is sent.
   */
  #flushMessages(conn: Connection): void {
    const stream = conn.stream;
    if (!stream || conn.messageInFlight) return;
    for (let message = conn.messages.peek(); message; message = conn.messages.peek()) {
      let sent: boolean | Promise<void>;
      try {
        sent = stream.sendMessage(message.bytes, { eor: message.eor });
      } catch (error) {
        this.#hostFailed(conn, error);
        return;
      }
      if (sent === false) break;
      if (sent !== true) {
        conn.messageInFlight = true;
        this.#awaitMessage(conn, sent);
        break;
      }
      this.#messageSent(conn);
    }
    this.#setEvents(conn);
  }

  /** The head of `conn.messages` went to the host: it counts as forwarded (§5.10.6.3). */
  #messageSent(conn: Connection): void {
    conn.forwarded(conn.messages.shift());
    this.#forwardedTo.add(conn);
  }

  /** A message sent on a helper thread: the next goes once it is done, with a CREDIT_UPDATE if due. */
  #awaitMessage(conn: Connection, sending: Promise<void>): void {
    const done = (error?: unknown): void => {
      conn.messageInFlight = false;
      // A connection closed meanwhile (or a device reset) lost its messages with its stream.
      if (!conn.stream || conn.removed || !this.#context) return;
      if (error !== undefined) {
        this.#hostFailed(conn, error);
      } else {
        this.#messageSent(conn);
        this.#flushMessages(conn);
        if (conn.stream && conn.txEmpty && conn.closeAfterFlush) {
          this.#remove(conn, { reset: true });
        } else if (conn.stream && conn.txEmpty && conn.guestShutSend) {
          this.#shutHostWrite(conn);
        }
      }
      for (const forwarded of this.#forwardedTo) this.#maybeCreditUpdate(forwarded);
      this.#forwardedTo.clear();
      this.#processRx();
    };
    const tracked = this.#context?.loop.track(sending) ?? sending;
    tracked.then(() => done(), (error) => done(error ?? new Error("send failed")));
  }

  /**
   * Guest payload to the host stream: straight from guest memory, buffered
   * only if the host is full. Consecutive RW packets of one connection are
   * gathered and written with one `writev` ({@link #flushPending}), before
   * the chains go back to the guest.
   */
  #forwardToHost(conn: Connection, payload: { chain: DescriptorChain; length: number }): void {
    const { chain, length } = payload;
    if (length === 0) return;
    if (this.#pendingConn !== conn || this.#pendingIov.count + chain.readable.length > IOV_MAX) {
      this.#flushPending();
    }
    if (!conn.stream) return;
    if (conn.txBuffer.empty) {
      pushIovecs(chain.readable, this.#pendingIov, { skip: VSOCK_HEADER_SIZE, max: length });
      this.#pendingConn = conn;
      this.#pendingParts.push({ chain, length });
      this.#pendingBytes += length;
      return;
    }
    this.#buffer(conn, { parts: [{ chain, length }], skip: 0 });
  }

  /** Writes the gathered payload of {@link #forwardToHost} to its host stream. */
  #flushPending(): void {
    const conn = this.#pendingConn;
    if (conn === null) return;
    const parts = this.#pendingParts.splice(0);
    const total = this.#pendingBytes;
    this.#pendingConn = null;
    this.#pendingBytes = 0;
    const iov = this.#pendingIov;
    if (!conn.stream) {
      iov.clear();
      return;
    }
    let written: number;
    try {
      written = conn.stream.writev(iov) ?? 0;
    } catch (error) {
      this.#hostFailed(conn, error);
      return;
    } finally {
      iov.clear();
    }
    conn.forwarded(written);
    this.#forwardedTo.add(conn);
    if (written < total) this.#buffer(conn, { parts, skip: written });
  }

  /** Copies the payload of `parts` after its first `skip` bytes into the connection's buffer. */
  #buffer(
    conn: Connection,
    pending: { parts: readonly { chain: DescriptorChain; length: number }[]; skip: number },
  ): void {
    let skip = pending.skip;
    let rest = -skip;
    for (const part of pending.parts) rest += part.length;
    if (rest > conn.txBuffer.free) {
      this.#abort(
        conn,
        `${rest} bytes beyond the credit it was given (${conn.txBuffer.free} bytes free)`,
      );
      return;
    }
    for (const part of pending.parts) {
      if (skip >= part.length) {
        skip -= part.length;
        continue;
      }
      // Straight from guest memory into the buffer: one copy, no temporary array.
      let from = VSOCK_HEADER_SIZE + skip;
      let left = part.length - skip;
      for (const slice of part.chain.readable) {
        if (left === 0) break;
        if (from >= slice.length) {
          from -= slice.length;
          continue;
        }
        const take = Math.min(slice.length - from, left);
        const start = slice.offset + from;
        conn.txBuffer.push(slice.region.bytes.subarray(start, start + take));
        left -= take;
        from = 0;
      }
      skip = 0;
    }
    this.#setEvents(conn);
  }

  /** The host stream can take bytes again: write out what waits. */
  #flush(conn: Connection): void {
    const stream = conn.stream;
    if (!stream) return;
    // (A SEQPACKET connection's buffer holds messages: they go whole, never as a byte run.)
    if (conn.seqpacket) this.#flushMessages(conn);
    if (!conn.stream) return;
    while (!conn.seqpacket && !conn.txBuffer.empty) {
      const chunk = conn.txBuffer.peek();
      let written: number | null;
      try {
        written = stream.write(chunk);
      } catch (error) {
        this.#hostFailed(conn, error);
        return;
      }
      if (written === null) break;
      conn.txBuffer.consume(written);
      conn.forwarded(written);
      if (written < chunk.length) break;
    }
    if (conn.txEmpty) {
      if (conn.closeAfterFlush) {
        this.#remove(conn, { reset: true });
        return;
      }
      if (conn.guestShutSend) this.#shutHostWrite(conn);
    }
    this.#maybeCreditUpdate(conn);
    this.#setEvents(conn);
  }

  #shutHostWrite(conn: Connection): void {
    if (conn.hostWriteShut || !conn.stream) return;
    conn.hostWriteShut = true;
    conn.stream.shutdownWrite();
  }

  // ---- host stream events

  #onHostEvent(conn: Connection, flags: number): void {
    if (!conn.stream) return;
    if (conn.state === "host-connecting") {
      this.#hostConnectDone(conn, flags);
      return;
    }
    if (flags & EPOLLOUT) this.#flush(conn);
    if (!conn.stream) {
      this.#processRx();
      return;
    }
    if (flags & (EPOLLHUP | EPOLLERR)) {
      // Hang-up cannot be masked: stop watching, read what is left through #rxReady.
      conn.hostHup = true;
      this.#unwatch(conn);
      if (conn.state === "connecting") {
        this.#context?.log.debug(
          `host gave up on ${this.#describe(conn)} before the guest answered`,
        );
        this.#remove(conn, { reset: true });
      } else if (!conn.txEmpty) {
        this.#abort(conn, "the host left with bytes still to deliver", { level: "debug" });
      } else if (conn.hostEof || conn.guestShutReceive) {
        this.#hostGone(conn);
      } else {
        this.#rxReady.add(conn);
      }
    } else if (flags & EPOLLIN) {
      this.#rxReady.add(conn);
      this.#processRx();
      // Only now: a read that drained the stream leaves EPOLLIN as it was (no epoll_ctl),
      // one still waiting for credit or rx buffers stops watching it.
      this.#setEvents(conn);
      return;
    }
    this.#processRx();
  }

  /** The host can neither send nor receive: tell the guest, and wait for its RST (§5.10.6.4). */
  #hostGone(conn: Connection): void {
    this.#queueControl(
      conn,
      VIRTIO_VSOCK_OP_SHUTDOWN,
      VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE | VIRTIO_VSOCK_SHUTDOWN_F_SEND,
    );
    this.#closing(conn);
  }

  #closing(conn: Connection): void {
    this.#closeStream(conn);
    this.#rxReady.delete(conn);
    conn.state = "closing";
    conn.deadline = performance.now() + CLOSING_TIMEOUT_MS;
    this.#scheduleSweep();
  }

  /** A host write failed (EPIPE, ECONNRESET): the connection is lost. */
  #hostFailed(conn: Connection, error: unknown): void {
    this.#context?.log.debug(`host side of ${this.#describe(conn)} failed: ${errorText(error)}`);
    this.#remove(conn, { reset: true });
  }

  /** Epoll interest follows state: EPOLLIN while the guest can take bytes, EPOLLOUT while some wait. */
  #setEvents(conn: Connection): void {
    const stream = conn.stream;
    const loop = this.#context?.loop;
    if (!stream || !loop || conn.hostHup) return;
    let events = 0;
    if (
      conn.state === "established" && !conn.hostEof && !conn.guestShutReceive &&
      !this.#rxReady.has(conn) && !conn.creditRequested && conn.peerCredit > 0
    ) {
      events |= EPOLLIN;
    }
    // (A message on a helper thread says when it is done: no EPOLLOUT for it.)
    if ((!conn.txEmpty && !conn.messageInFlight) || conn.state === "host-connecting") {
      events |= EPOLLOUT;
    }
    if (conn.events === null) {
      loop.watch(stream.fd, (flags) => this.#onHostEvent(conn, flags), { events });
    } else if (conn.events !== events) {
      loop.rewatch(stream.fd, events);
    }
    conn.events = events;
  }

  #unwatch(conn: Connection): void {
    if (conn.events !== null && conn.stream) this.#context?.loop.unwatch(conn.stream.fd);
    conn.events = null;
  }

  /** Credit went from none to some: read the host stream again. */
  #creditArrived(conn: Connection): void {
    if (conn.state !== "established" || conn.hostEof || conn.guestShutReceive) return;
    // A SEQPACKET message half sent waits in the connection, not the socket: no EPOLLIN for it.
    if (conn.hostHup || conn.outgoing !== null) this.#rxReady.add(conn);
    else this.#setEvents(conn);
  }

  // ---- rx: packets to the guest (§5.10.6.1)

  #processRx(): void {
    if (this.#inRx) {
      this.#rxAgain = true;
      return;
    }
    const queue = this.#context?.queue(VSOCK_RX_QUEUE);
    if (!queue) return;
    this.#inRx = true;
    try {
      do {
        this.#rxAgain = false;
        this.#fillRx(queue);
      } while (this.#rxAgain);
    } finally {
      this.#inRx = false;
    }
    if (this.#txStalled && this.#control.length < MAX_PENDING_CONTROL / 2) this.#processTx();
  }

  #fillRx(queue: SplitQueue): void {
    let used = 0;
    for (;;) {
      this.#dropStaleControl();
      let conn: Connection | null = null;
      if (this.#control.length === 0 && this.#siblings.length === 0) {
        conn = this.#nextReady();
        // Out of connections to serve, unless one just asked for credit.
        if (conn === null && this.#control.length === 0) break;
        if (conn === null) continue;
      }
      const chain = queue.next() ?? (queue.enableNotification() ? queue.next() : null);
      if (chain === null) break;
      let length: number;
      if (chain.writableLength < VSOCK_HEADER_SIZE) {
        this.#shortRx(chain);
        length = 0;
      } else if (this.#control.length > 0) {
        length = this.#sendControl(chain, this.#control.shift()!);
      } else if (this.#siblings.length > 0) {
        length = this.#sendSibling(chain);
      } else if (conn!.seqpacket) {
        length = this.#sendMessagePiece(chain, conn!);
      } else {
        const readable = conn!.stream!.readable();
        if (readable !== null && readable > 0) {
          this.#sendDataBatch(queue, { first: chain, conn: conn!, readable });
          queue.notify();
          continue;
        }
        length = this.#sendData(chain, conn!);
      }
      queue.addUsed(chain.head, length);
      used++;
    }
    if (used > 0) queue.notify();
  }

  /**
   * Host bytes for `conn` into as many rx chains as the stream holds bytes
   * for (and the guest has credit for), with one `readv` across them all;
   * a header per chain. All of them are added to the used ring.
   * At 64 KiB host writes and Linux's 4 KiB rx buffers this is one system
   * call where a buffer at a time took sixteen.
   */
  #sendDataBatch(
    queue: SplitQueue,
    batch: { first: DescriptorChain; conn: Connection; readable: number },
  ): void {
    const { first, conn, readable } = batch;
    const budget = Math.min(conn.peerCredit, readable, RX_BATCH_BYTES);
    const chains = this.#rxChains;
    const sizes = this.#rxSizes;
    chains.length = 0;
    sizes.length = 0;
    const iov = this.#iov;
    iov.clear();
    let total = 0;
    for (let chain: DescriptorChain | null = first; chain !== null;) {
      const size = pushIovecs(chain.writable, iov, {
        skip: VSOCK_HEADER_SIZE,
        max: budget - total,
      });
      chains.push(chain);
      sizes.push(size);
      total += size;
      if (total >= budget || chains.length >= RX_BATCH_CHAINS || iov.count >= IOV_MAX) break;
      chain = queue.next();
      if (chain !== null && chain.writableLength < VSOCK_HEADER_SIZE) {
        // Not even a header fits: end the batch here and let #fillRx report it.
        this.#shortRx(chain);
        queue.addUsed(chain.head, 0);
        break;
      }
    }
    let count: number;
    try {
      count = conn.stream!.readv(iov) ?? 0;
    } catch (error) {
      // ECONNRESET: whatever the host sent is lost; so is the connection.
      this.#context?.log.debug(`host side of ${this.#describe(conn)} failed: ${errorText(error)}`);
      this.#remove(conn, { reset: false });
      queue.addUsed(
        first.head,
        this.#writeConnHeader(first, conn, { op: VIRTIO_VSOCK_OP_RST, flags: 0, len: 0 }),
      );
      // The other buffers carry nothing: a used length shorter than a header is dropped by the driver.
      for (let i = 1; i < chains.length; i++) queue.addUsed(chains[i].head, 0);
      return;
    }
    let left = count;
    for (let i = 0; i < chains.length; i++) {
      const take = Math.min(sizes[i], left);
      left -= take;
      conn.sentToGuest(take);
      // A buffer the read did not reach (the stream held less than it said) carries our credit.
      const length = this.#writeConnHeader(chains[i], conn, {
        op: take > 0 ? VIRTIO_VSOCK_OP_RW : VIRTIO_VSOCK_OP_CREDIT_UPDATE,
        flags: 0,
        len: take,
      });
      queue.addUsed(chains[i].head, length);
    }
    if (count >= readable && !conn.hostHup) {
      // Everything the stream held is read: wait for EPOLLIN rather than try again.
      this.#rxReady.delete(conn);
      this.#setEvents(conn);
    }
  }

  #shortRx(chain: DescriptorChain): void {
    this.#limited?.warn(
      "rx-short",
      `rx chain ${chain.head} has ${chain.writableLength} writable bytes, less than a header`,
    );
  }

  /** The next connection with host bytes and guest credit, taking turns; `null` if none. */
  #nextReady(): Connection | null {
    for (const conn of this.#rxReady) {
      this.#rxReady.delete(conn);
      if (conn.peerCredit > 0) {
        // Back of the line: connections take turns per packet.
        this.#rxReady.add(conn);
        return conn;
      }
      // No credit: ask for it once, and wait for the guest's CREDIT_UPDATE (§5.10.6.3).
      if (!conn.creditRequested) {
        conn.creditRequested = true;
        this.#queueControl(conn, VIRTIO_VSOCK_OP_CREDIT_REQUEST);
      }
      this.#setEvents(conn);
      if (this.#control.length > 0) return null;
    }
    return null;
  }

  /** Control packets of connections removed since they were queued are not sent. */
  #dropStaleControl(): void {
    for (let head = this.#control.peek(); head?.conn?.removed; head = this.#control.peek()) {
      this.#control.shift();
    }
  }

  #sendControl(chain: DescriptorChain, control: Control): number {
    if (control.conn === null) return this.#writeHeader(chain, control.header);
    const conn = control.conn;
    if (control.op === VIRTIO_VSOCK_OP_CREDIT_UPDATE) conn.creditUpdateQueued = false;
    return this.#writeConnHeader(chain, conn, { op: control.op, flags: control.flags, len: 0 });
  }

  #sendSibling(chain: DescriptorChain): number {
    const item = this.#siblings.peek()!;
    const { header, payload } = item.packet;
    const room = chain.writableLength - VSOCK_HEADER_SIZE;
    // An RW larger than the buffer goes as several RW packets; a SEQPACKET message's EOM/EOR
    // stay on the last of them.
    const take = Math.min(payload.length - item.offset, room);
    const last = item.offset + take >= payload.length;
    this.#writeHeader(chain, { ...header, len: take, flags: pieceFlags(header.flags, { last }) });
    if (take > 0) {
      writeSlices(
        chain.writable,
        payload.subarray(item.offset, item.offset + take),
        { skip: VSOCK_HEADER_SIZE },
      );
    }
    item.offset += take;
    if (item.offset >= payload.length) {
      this.#siblings.shift();
      this.#siblingBytes -= payload.length;
    }
    return VSOCK_HEADER_SIZE + take;
  }

  /** Host bytes for `conn` straight into the guest buffer; or its end of file as SHUTDOWN. */
  #sendData(chain: DescriptorChain, conn: Connection): number {
    const max = Math.min(conn.peerCredit, chain.writableLength - VSOCK_HEADER_SIZE);
    const iov = this.#iov;
    iov.clear();
    pushIovecs(chain.writable, iov, { skip: VSOCK_HEADER_SIZE, max });
    let count: number | null;
    try {
      count = max > 0 ? conn.stream!.readv(iov) : null;
    } catch (error) {
      // ECONNRESET: whatever the host sent is lost; so is the connection.
      this.#context?.log.debug(`host side of ${this.#describe(conn)} failed: ${errorText(error)}`);
      this.#remove(conn, { reset: false });
      return this.#writeConnHeader(chain, conn, { op: VIRTIO_VSOCK_OP_RST, flags: 0, len: 0 });
    }
    if (count === null) return this.#nothingToRead(chain, conn);
    if (count === 0) return this.#hostEnded(chain, conn);
    conn.sentToGuest(count);
    if (count < max && !conn.hostHup) {
      // Probably drained: wait for EPOLLIN rather than try again.
      this.#rxReady.delete(conn);
      this.#setEvents(conn);
    }
    return this.#writeConnHeader(chain, conn, { op: VIRTIO_VSOCK_OP_RW, flags: 0, len: count });
  }

  /** Nothing to read after all: this buffer carries a credit update instead. */
  #nothingToRead(chain: DescriptorChain, conn: Connection): number {
    this.#rxReady.delete(conn);
    this.#setEvents(conn);
    return this.#writeConnHeader(chain, conn, {
      op: VIRTIO_VSOCK_OP_CREDIT_UPDATE,
      flags: 0,
      len: 0,
    });
  }

  /** The host stream's end of file, as SHUTDOWN (§5.10.6.4). */
  #hostEnded(chain: DescriptorChain, conn: Connection): number {
    conn.hostEof = true;
    this.#rxReady.delete(conn);
    if (conn.hostHup || conn.guestShutSend) {
      const length = this.#writeConnHeader(chain, conn, {
        op: VIRTIO_VSOCK_OP_SHUTDOWN,
        flags: VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE | VIRTIO_VSOCK_SHUTDOWN_F_SEND,
        len: 0,
      });
      if (conn.hostHup) this.#closing(conn);
      else this.#setEvents(conn);
      return length;
    }
    this.#setEvents(conn);
    return this.#writeConnHeader(chain, conn, {
      op: VIRTIO_VSOCK_OP_SHUTDOWN,
      flags: VIRTIO_VSOCK_SHUTDOWN_F_SEND,
      len: 0,
    });
  }

  /**
   * SEQPACKET: the next piece of the host message on its way to `conn`'s
   * guest, as much as the buffer and credit take, EOM on the last piece
   * (§5.10.6). A message is received whole from the host socket first; one
   * larger than our buffer, or than the guest's whole `buf_alloc` (Linux
   * drops what does not fit), can never arrive intact: the connection is
   * reset with a log line.
   */
  #sendMessagePiece(chain: DescriptorChain, conn: Connection): number {
    if (conn.outgoing === null) {
      const buffer = this.#messageBuffer ??= stableBuffer(this.#txBufferSize);
      let got;
      try {
        got = conn.stream!.receiveMessage(buffer);
      } catch (error) {
        this.#context?.log.debug(
          `host side of ${this.#describe(conn)} failed: ${errorText(error)}`,
        );
        this.#remove(conn, { reset: false });
        return this.#writeConnHeader(chain, conn, { op: VIRTIO_VSOCK_OP_RST, flags: 0, len: 0 });
      }
      if (got === null) return this.#nothingToRead(chain, conn);
      if (got.length === 0) return this.#hostEnded(chain, conn);
      if (got.truncated || got.length > conn.peerBufAlloc) {
        this.#limited?.warn(
          "message-size",
          `resetting ${this.#describe(conn)}: a ${got.length}-byte host message exceeds ` +
            (got.truncated
              ? `the connection's buffer (${buffer.length} bytes)`
              : `the guest's buffer (${conn.peerBufAlloc} bytes)`),
        );
        this.#remove(conn, { reset: false });
        return this.#writeConnHeader(chain, conn, { op: VIRTIO_VSOCK_OP_RST, flags: 0, len: 0 });
      }
      conn.outgoing = new OutgoingMessage(buffer.slice(0, got.length), { eor: got.eor });
    }
    const message = conn.outgoing;
    const room = Math.min(conn.peerCredit, chain.writableLength - VSOCK_HEADER_SIZE);
    if (room <= 0) {
      // A buffer with room for a header only (credit is there, or the turn had not come):
      // it carries our credit, and the message waits for the next buffer.
      return this.#writeConnHeader(chain, conn, {
        op: VIRTIO_VSOCK_OP_CREDIT_UPDATE,
        flags: 0,
        len: 0,
      });
    }
    const piece = message.next(room);
    writeSlices(chain.writable, piece.bytes, { skip: VSOCK_HEADER_SIZE });
    conn.sentToGuest(piece.bytes.length);
    if (message.remaining === 0) {
      conn.outgoing = null;
      // The next message is read when this connection's turn comes again. A socket that holds
      // none (FIONREAD) waits for EPOLLIN instead, rather than cost the guest a buffer.
      if (!conn.hostHup && conn.stream!.readable() === 0) {
        this.#rxReady.delete(conn);
        this.#setEvents(conn);
      }
    }
    return this.#writeConnHeader(chain, conn, {
      op: VIRTIO_VSOCK_OP_RW,
      flags: piece.flags,
      len: piece.bytes.length,
    });
  }

  /** Writes a header for `conn` carrying our current credit; returns the header size plus `len`. */
  #writeConnHeader(
    chain: DescriptorChain,
    conn: Connection,
    fields: { op: number; flags: number; len: number },
  ): number {
    conn.advertisedFwdCnt = conn.fwdCnt;
    this.#writeHeader(chain, {
      srcCid: VMADDR_CID_HOST,
      dstCid: this.guestCid,
      srcPort: conn.localPort,
      dstPort: conn.peerPort,
      len: fields.len,
      type: conn.type,
      op: fields.op,
      flags: fields.flags,
      bufAlloc: conn.bufAlloc,
      fwdCnt: conn.fwdCnt,
    });
    return VSOCK_HEADER_SIZE + fields.len;
  }

  #writeHeader(chain: DescriptorChain, header: VsockHeader): number {
    const first = chain.writable[0];
    if (first.length >= VSOCK_HEADER_SIZE) {
      // Linux's rx buffers start with room for the header: write it in place.
      encodeHeaderAt(header, this.#viewOf(first.region), first.offset);
    } else {
      encodeHeader(header, this.#header);
      writeSlices(chain.writable, this.#header);
    }
    return VSOCK_HEADER_SIZE + header.len;
  }

  // ---- control packets and connection teardown

  #queueControl(conn: Connection, op: number, flags = 0): void {
    this.#control.push({ conn, op, flags });
  }

  #queueCreditUpdate(conn: Connection): void {
    if (conn.creditUpdateQueued || conn.state === "closing") return;
    conn.creditUpdateQueued = true;
    this.#queueControl(conn, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
  }

  #maybeCreditUpdate(conn: Connection): void {
    if (conn.stream && conn.creditUpdateDue) this.#queueCreditUpdate(conn);
  }

  /** RST in answer to a packet for no connection (never to an RST). */
  #resetReply(header: VsockHeader): void {
    if (header.op === VIRTIO_VSOCK_OP_RST) return;
    this.#control.push({
      conn: null,
      header: {
        srcCid: VMADDR_CID_HOST,
        dstCid: this.guestCid,
        srcPort: header.dstPort,
        dstPort: header.srcPort,
        len: 0,
        type: header.type,
        op: VIRTIO_VSOCK_OP_RST,
        flags: 0,
        bufAlloc: 0,
        fwdCnt: 0,
      },
    });
  }

  /** The guest broke the protocol on `conn`: log, RST, forget. */
  #abort(conn: Connection, why: string, options: { level?: "warn" | "debug" } = {}): void {
    const message = `resetting ${this.#describe(conn)}: ${why}`;
    if (options.level === "debug") this.#context?.log.debug(message);
    else this.#limited?.warn("abort", message);
    this.#remove(conn, { reset: true });
  }

  #remove(conn: Connection, options: { reset: boolean }): void {
    if (this.#connections.get(conn.key) === conn) this.#connections.delete(conn.key);
    this.#localPorts.delete(conn.localPort);
    this.#rxReady.delete(conn);
    this.#closeStream(conn);
    conn.state = "closing";
    conn.removed = true;
    conn.deadline = Infinity;
    if (options.reset) this.#resetConn(conn);
  }

  /** Queues an RST carrying the connection's ports. */
  #resetConn(conn: Connection): void {
    this.#control.push({
      conn: null,
      header: {
        srcCid: VMADDR_CID_HOST,
        dstCid: this.guestCid,
        srcPort: conn.localPort,
        dstPort: conn.peerPort,
        len: 0,
        type: conn.type,
        op: VIRTIO_VSOCK_OP_RST,
        flags: 0,
        bufAlloc: conn.bufAlloc,
        fwdCnt: conn.fwdCnt,
      },
    });
  }

  #closeStream(conn: Connection): void {
    const stream = conn.stream;
    if (!stream) return;
    this.#unwatch(conn);
    conn.stream = null;
    stream.close();
  }

  #allocateLocalPort(peerPort: number): number {
    for (;;) {
      const port = this.#nextLocalPort;
      this.#nextLocalPort = port >= 0xfffffffe ? FIRST_LOCAL_PORT : port + 1;
      if (
        !this.#localPorts.has(port) && !this.#connections.has(connectionKey(port, peerPort))
      ) {
        return port;
      }
    }
  }

  #scheduleSweep(): void {
    if (this.#sweepTimer || !this.#context) return;
    this.#sweepTimer = this.#context.loop.setTimer(1000, () => {
      this.#sweepTimer = null;
      this.#sweep();
    });
  }

  /** Gives up on connections past their deadline. */
  #sweep(): void {
    const now = performance.now();
    let waiting = false;
    for (const conn of [...this.#connections.values()]) {
      if (conn.deadline > now) {
        if (conn.deadline !== Infinity) waiting = true;
        continue;
      }
      if (conn.state === "connecting" || conn.state === "host-connecting") {
        this.#limited?.info(
          "connect-timeout",
          `guest did not answer the host's connection to port ${conn.peerPort}`,
        );
        this.#remove(conn, { reset: true });
      } else {
        // The guest never sent its RST: forget quietly; later packets get an RST.
        this.#remove(conn, { reset: false });
      }
    }
    if (waiting) this.#scheduleSweep();
    this.#processRx();
  }

  #describe(conn: Connection): string {
    return `host port ${conn.localPort} <-> guest ${this.guestCid}:${conn.peerPort}`;
  }
}
