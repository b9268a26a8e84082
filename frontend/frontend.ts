/**
 * A vhost-user front-end: the part QEMU plays, written to drive and check
 * any back-end. It knows the protocol (docs/interop/vhost-user.rst) and
 * nothing of any particular device.
 *
 * Every call is synchronous: replies are awaited by blocking in epoll_wait on
 * a non-blocking socket, with a deadline, so a missing reply is an error that
 * names the request rather than a hang. Replies are checked as QEMU checks
 * them (`vhost_user_read_header`): flags exactly REPLY|version (0x5), the
 * request code echoed, the exact payload size.
 *
 * @module
 */

import {
  close,
  connectUnix,
  createEventFd,
  drainEventFd,
  ECONNREFUSED,
  ECONNRESET,
  Epoll,
  EPOLLIN,
  EPOLLOUT,
  receiveWithFds,
  sendWithFds,
  setNonBlocking,
  signalEventFd,
  socketPair,
  SyscallError,
} from "../ffi/mod.ts";
import {
  bit,
  FrontendRequest as R,
  HEADER_SIZE,
  MAX_PAYLOAD_SIZE,
  NEED_REPLY_FLAG,
  ProtocolFeature as P,
  REPLY_FLAG,
  requestName,
  VERSION,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VRING_NOFD_MASK,
} from "../core/protocol/constants.ts";
import {
  encodeConfig,
  encodeMemoryTable,
  encodeMessage,
  encodeSingleRegion,
  encodeU64,
  encodeVringAddr,
  encodeVringState,
  type MemoryRegionDescriptor,
} from "../core/protocol/message.ts";
import type { DriverMemory, DriverRegion } from "./driver_memory.ts";
import type { DriverQueue } from "./driver_queue.ts";

const ENOENT = 2;
/** Reply flags QEMU accepts: REPLY | version 1, nothing else. */
export const REPLY_FLAGS = REPLY_FLAG | VERSION;

/** Virtio device status bits (VIRTIO 1.2 §2.1). */
export const DeviceStatus = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/**
 * Protocol features this front-end can act on, offered back by
 * {@link VhostUserFrontend.init} (masked with the back-end's).
 */
export const SUPPORTED_PROTOCOL_FEATURES: bigint = bit(P.MQ) | bit(P.REPLY_ACK) |
  bit(P.BACKEND_REQ) | bit(P.CONFIG) | bit(P.RESET_DEVICE) | bit(P.CONFIGURE_MEM_SLOTS) |
  bit(P.STATUS);

/**
 * When to set NEED_REPLY once REPLY_ACK is negotiated:
 * - `"qemu"`: on the messages QEMU 10.0 flags (SET_MEM_TABLE, ADD/REM_MEM_REG,
 *   SET_BACKEND_REQ_FD, SET_CONFIG, SET_VRING_ENABLE, SET_STATUS); without
 *   REPLY_ACK, SET_VRING_ENABLE and SET_STATUS are followed by a GET_FEATURES
 *   barrier, as `vhost_user_write_sync` does.
 * - `"qemu-7.2"`: on the messages QEMU 7.2 flags (the same without
 *   SET_VRING_ENABLE and SET_STATUS, and no GET_FEATURES barrier: 7.2 did not
 *   wait for SET_VRING_ENABLE).
 * - `"all"`: on every message that has no reply of its own (errors surface at once).
 * - `"none"`: never.
 */
export type ReplyAckPolicy = "qemu" | "qemu-7.2" | "all" | "none";

const QEMU_ACKED: ReadonlySet<number> = new Set([
  R.SET_MEM_TABLE,
  R.ADD_MEM_REG,
  R.REM_MEM_REG,
  R.SET_BACKEND_REQ_FD,
  R.SET_CONFIG,
  R.SET_VRING_ENABLE,
  R.SET_STATUS,
]);
const QEMU_SYNC: ReadonlySet<number> = new Set([R.SET_VRING_ENABLE, R.SET_STATUS]);
const QEMU_72_ACKED: ReadonlySet<number> = new Set([
  R.SET_MEM_TABLE,
  R.ADD_MEM_REG,
  R.REM_MEM_REG,
  R.SET_BACKEND_REQ_FD,
  R.SET_CONFIG,
]);

/** Options of {@link VhostUserFrontend}. */
export interface FrontendOptions {
  /** How long to wait for each reply, in milliseconds. Default 5000. */
  readonly timeoutMs?: number;
  /** NEED_REPLY policy. Default `"qemu"`. */
  readonly replyAck?: ReplyAckPolicy;
  /** Protocol features to accept; default {@link SUPPORTED_PROTOCOL_FEATURES}. */
  readonly protocolFeatures?: bigint;
}

/** Per-request options. */
export interface RequestOptions {
  /**
   * Set NEED_REPLY and check the u64 ack, overriding the policy. `true` sets
   * it even if REPLY_ACK was not negotiated (to test that a back-end ignores it:
   * expect a timeout then).
   */
  readonly needReply?: boolean;
}

/** A message read off a socket without interpretation. */
export interface RawMessage {
  /** Request code. */
  readonly request: number;
  /** Header flags. */
  readonly flags: number;
  /** Payload size from the header. */
  readonly size: number;
  /** The payload bytes. */
  readonly payload: Uint8Array;
  /** Descriptors that came with the message; the caller owns them. */
  readonly fds: number[];
}

/** What {@link VhostUserFrontend.init} learned. */
export interface InitResult {
  /** GET_FEATURES (the second one, after SET_OWNER). */
  readonly features: bigint;
  /** Protocol features negotiated (offered ∩ supported), 0 without bit 30. */
  readonly protocolFeatures: bigint;
  /** GET_QUEUE_NUM, or null without MQ. */
  readonly queueNum: number | null;
  /** GET_MAX_MEM_SLOTS, or null without CONFIGURE_MEM_SLOTS. */
  readonly maxMemSlots: number | null;
  /** Queues whose call/err eventfds were set. */
  readonly queueCount: number;
}

/** Options of {@link VhostUserFrontend.start}. */
export interface StartOptions {
  /** Guest RAM to share. */
  readonly memory: DriverMemory;
  /** The queues to start, vring index = position. */
  readonly queues: readonly DriverQueue[];
  /**
   * Virtio features the "guest" acks. Bit 30 is added if the back-end offered
   * it, as QEMU adds its `backend_features`.
   */
  readonly features: bigint;
  /**
   * How to send the memory table: `"table"` (SET_MEM_TABLE), `"regions"`
   * (REM_MEM_REG/ADD_MEM_REG diffs), or `"auto"` (regions if
   * CONFIGURE_MEM_SLOTS is negotiated, as QEMU does). Default `"auto"`.
   */
  readonly memoryUpdate?: "auto" | "table" | "regions";
}

/** A failure of the back-end as the front-end sees it; `request` names the message. */
export class VhostUserFrontendError extends Error {
  /** The request being served, e.g. "GET_FEATURES". */
  readonly request: string;

  /** Builds the error for `request`. */
  constructor(request: string, message: string) {
    super(`${request}: ${message}`);
    this.name = "VhostUserFrontendError";
    this.request = request;
  }
}

/** Waits for one fd to become ready, with a deadline. */
class FdWaiter {
  readonly #epoll = new Epoll(1);
  readonly #fd: number;
  #events: number;

  constructor(fd: number, events: number) {
    this.#fd = fd;
    this.#events = events;
    this.#epoll.add(fd, { events, token: 0 });
  }

  /** Waits until the fd is ready for `events` or `deadline` (performance.now()) passes. */
  wait(events: number, deadline: number): boolean {
    if (events !== this.#events) {
      this.#epoll.modify(this.#fd, { events, token: 0 });
      this.#events = events;
    }
    for (;;) {
      const remaining = Math.max(0, Math.ceil(deadline - performance.now()));
      if (this.#epoll.wait(remaining) > 0) return true;
      if (remaining === 0) return false;
    }
  }

  close(): void {
    this.#epoll.close();
  }
}

interface Notifiers {
  readonly kick: number;
  readonly call: number;
  readonly err: number;
  readonly callWaiter: FdWaiter;
}

/**
 * A vhost-user front-end connected to one back-end socket. After any error
 * the stream may be out of step (a late reply); close the connection.
 */
export class VhostUserFrontend {
  /** The connected socket. */
  readonly fd: number;
  readonly #timeoutMs: number;
  readonly #policy: ReplyAckPolicy;
  readonly #supported: bigint;
  readonly #waiter: FdWaiter;
  readonly #notifiers: Notifiers[] = [];
  #backendChannel: { fd: number; waiter: FdWaiter } | null = null;
  #offeredFeatures = 0n;
  #ackedProtocol = 0n;
  #sentRegions: DriverRegion[] = [];
  #started: readonly DriverQueue[] = [];
  #closed = false;

  /**
   * Wraps a connected stream socket (made non-blocking here); the front-end
   * owns it from now on.
   */
  constructor(fd: number, options: FrontendOptions = {}) {
    this.fd = fd;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#policy = options.replyAck ?? "qemu";
    this.#supported = options.protocolFeatures ?? SUPPORTED_PROTOCOL_FEATURES;
    setNonBlocking(fd, true);
    this.#waiter = new FdWaiter(fd, EPOLLIN);
  }

  /**
   * Connects to the back-end listening at `path`, retrying while the socket
   * does not exist yet or refuses, for up to `connectTimeoutMs` (default 5000).
   */
  static async connect(
    path: string,
    options: FrontendOptions & { connectTimeoutMs?: number } = {},
  ): Promise<VhostUserFrontend> {
    const deadline = performance.now() + (options.connectTimeoutMs ?? 5000);
    for (;;) {
      try {
        return new VhostUserFrontend(connectUnix(path), options);
      } catch (error) {
        const retry = error instanceof SyscallError &&
          (error.errno === ENOENT || error.errno === ECONNREFUSED);
        if (!retry || performance.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /** The features the back-end offered in the last GET_FEATURES. */
  get backendFeatures(): bigint {
    return this.#offeredFeatures;
  }

  /** Protocol features acked with SET_PROTOCOL_FEATURES. */
  get protocolFeatures(): bigint {
    return this.#ackedProtocol;
  }

  /** Whether REPLY_ACK is negotiated (NEED_REPLY is then honoured). */
  get replyAckNegotiated(): boolean {
    return (this.#ackedProtocol & bit(P.REPLY_ACK)) !== 0n;
  }

  /** Whether `feature` (a ProtocolFeature bit) is negotiated. */
  hasProtocolFeature(feature: number): boolean {
    return (this.#ackedProtocol & bit(feature)) !== 0n;
  }

  // ---- Front-end messages (docs/interop/vhost-user.rst "Front-end message types")

  /** GET_FEATURES: the virtio features the back-end offers (bit 30: protocol features). */
  getFeatures(): bigint {
    const features = this.#u64Request(R.GET_FEATURES);
    this.#offeredFeatures = features;
    return features;
  }

  /** SET_FEATURES: the features acked (sent as given; no bits are added here). */
  setFeatures(features: bigint, options: RequestOptions = {}): void {
    this.#send(R.SET_FEATURES, { payload: encodeU64(features), ...options });
  }

  /** SET_OWNER: starts the session. */
  setOwner(options: RequestOptions = {}): void {
    this.#send(R.SET_OWNER, options);
  }

  /** RESET_OWNER (deprecated). */
  resetOwner(options: RequestOptions = {}): void {
    this.#send(R.RESET_OWNER, options);
  }

  /** SET_MEM_TABLE: replaces the whole table; one fd per region, same order. */
  setMemTable(regions: readonly DriverRegion[], options: RequestOptions = {}): void {
    this.#send(R.SET_MEM_TABLE, {
      payload: encodeMemoryTable(regions.map((r) => r.descriptor)),
      fds: regions.map((r) => r.fd),
      ...options,
    });
    this.#sentRegions = [...regions];
  }

  /** GET_PROTOCOL_FEATURES. */
  getProtocolFeatures(): bigint {
    return this.#u64Request(R.GET_PROTOCOL_FEATURES);
  }

  /** SET_PROTOCOL_FEATURES; REPLY_ACK takes effect from the next message. */
  setProtocolFeatures(features: bigint, options: RequestOptions = {}): void {
    this.#send(R.SET_PROTOCOL_FEATURES, { payload: encodeU64(features), ...options });
    this.#ackedProtocol = features;
  }

  /** GET_QUEUE_NUM (MQ): how many queues the back-end has. */
  getQueueNum(): number {
    return Number(this.#u64Request(R.GET_QUEUE_NUM));
  }

  /** GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS). */
  getMaxMemSlots(): number {
    return Number(this.#u64Request(R.GET_MAX_MEM_SLOTS));
  }

  /** ADD_MEM_REG (CONFIGURE_MEM_SLOTS): one region and its fd. */
  addMemReg(region: DriverRegion, options: RequestOptions = {}): void {
    this.#send(R.ADD_MEM_REG, {
      payload: encodeSingleRegion(region.descriptor),
      fds: [region.fd],
      ...options,
    });
  }

  /** REM_MEM_REG (CONFIGURE_MEM_SLOTS): matched by address and size, no fd. */
  remMemReg(descriptor: MemoryRegionDescriptor, options: RequestOptions = {}): void {
    this.#send(R.REM_MEM_REG, { payload: encodeSingleRegion(descriptor), ...options });
  }

  /** SET_VRING_NUM: the queue size. */
  setVringNum(index: number, num: number, options: RequestOptions = {}): void {
    this.#send(R.SET_VRING_NUM, { payload: encodeVringState(index, num), ...options });
  }

  /** SET_VRING_ADDR: ring addresses in front-end virtual addresses. */
  setVringAddr(
    index: number,
    addresses: {
      descUser: number;
      availUser: number;
      usedUser: number;
      flags?: number;
      logGuest?: number;
    },
    options: RequestOptions = {},
  ): void {
    const payload = encodeVringAddr({
      index,
      flags: addresses.flags ?? 0,
      descUser: addresses.descUser,
      usedUser: addresses.usedUser,
      availUser: addresses.availUser,
      logGuest: addresses.logGuest ?? 0,
    });
    this.#send(R.SET_VRING_ADDR, { payload, ...options });
  }

  /** SET_VRING_BASE: the next available index the back-end processes. */
  setVringBase(index: number, num: number, options: RequestOptions = {}): void {
    this.#send(R.SET_VRING_BASE, { payload: encodeVringState(index, num), ...options });
  }

  /** GET_VRING_BASE: stops the ring and returns its next available index. */
  getVringBase(index: number): number {
    const name = requestName(R.GET_VRING_BASE);
    this.#write(R.GET_VRING_BASE, { payload: encodeVringState(index, 0) });
    const view = toView(this.#readReply(R.GET_VRING_BASE, 8));
    const replyIndex = view.getUint32(0, true);
    if (replyIndex !== index) {
      throw new VhostUserFrontendError(name, `reply is for vring ${replyIndex}, asked ${index}`);
    }
    return view.getUint32(4, true);
  }

  /** SET_VRING_KICK with an eventfd, or `null` for NOFD (the back-end polls). */
  setVringKick(index: number, fd: number | null, options: RequestOptions = {}): void {
    this.#sendVringFd(R.SET_VRING_KICK, index, { fd, ...options });
  }

  /** SET_VRING_CALL with an eventfd, or `null` for NOFD (no interrupts). */
  setVringCall(index: number, fd: number | null, options: RequestOptions = {}): void {
    this.#sendVringFd(R.SET_VRING_CALL, index, { fd, ...options });
  }

  /** SET_VRING_ERR with an eventfd, or `null` for NOFD. */
  setVringErr(index: number, fd: number | null, options: RequestOptions = {}): void {
    this.#sendVringFd(R.SET_VRING_ERR, index, { fd, ...options });
  }

  /** SET_VRING_ENABLE. */
  setVringEnable(index: number, enable: boolean, options: RequestOptions = {}): void {
    this.#send(R.SET_VRING_ENABLE, {
      payload: encodeVringState(index, enable ? 1 : 0),
      ...options,
    });
  }

  /**
   * GET_CONFIG (CONFIG): `size` bytes of config space from `offset`. Checks
   * the reply echoes offset and size; an empty reply is the back-end's error.
   */
  getConfig(offset: number, size: number, options: { flags?: number } = {}): Uint8Array {
    const name = requestName(R.GET_CONFIG);
    const flags = options.flags ?? 0;
    this.#write(R.GET_CONFIG, {
      payload: encodeConfig({ offset, size, flags, data: new Uint8Array(size) }),
    });
    const payload = this.#readReply(R.GET_CONFIG, null);
    if (payload.length !== 12 + size) {
      throw new VhostUserFrontendError(
        name,
        payload.length === 0
          ? "back-end failed (empty reply)"
          : `reply of ${payload.length} bytes, expected ${12 + size}`,
      );
    }
    const view = toView(payload);
    if (view.getUint32(0, true) !== offset || view.getUint32(4, true) !== size) {
      throw new VhostUserFrontendError(
        name,
        `reply is for offset ${view.getUint32(0, true)} size ${view.getUint32(4, true)}`,
      );
    }
    return payload.slice(12);
  }

  /** SET_CONFIG (CONFIG): writes `data` at `offset`; flags 0 = front-end write. */
  setConfig(
    offset: number,
    data: Uint8Array,
    options: RequestOptions & { flags?: number } = {},
  ): void {
    const payload = encodeConfig({ offset, size: data.length, flags: options.flags ?? 0, data });
    this.#send(R.SET_CONFIG, { payload, needReply: options.needReply });
  }

  /**
   * SET_BACKEND_REQ_FD (BACKEND_REQ): creates a socket pair, sends one end and
   * keeps the other for {@link readBackendRequest}. Returns our end.
   */
  setBackendReqFd(options: RequestOptions = {}): number {
    const [ours, theirs] = socketPair();
    try {
      this.#send(R.SET_BACKEND_REQ_FD, { fds: [theirs], ...options });
    } catch (error) {
      close(ours);
      throw error;
    } finally {
      close(theirs);
    }
    setNonBlocking(ours, true);
    this.#closeBackendChannel();
    this.#backendChannel = { fd: ours, waiter: new FdWaiter(ours, EPOLLIN) };
    return ours;
  }

  /** RESET_DEVICE (RESET_DEVICE): rings disabled and state reset, ownership kept. */
  resetDevice(options: RequestOptions = {}): void {
    this.#send(R.RESET_DEVICE, options);
  }

  /** SET_STATUS (STATUS): the virtio device status byte. */
  setStatus(status: number, options: RequestOptions = {}): void {
    this.#send(R.SET_STATUS, { payload: encodeU64(BigInt(status)), ...options });
  }

  /** GET_STATUS (STATUS). */
  getStatus(): number {
    return Number(this.#u64Request(R.GET_STATUS));
  }

  // ---- Back-end → front-end channel (SET_BACKEND_REQ_FD)

  /** Our end of the back-end request channel, or null before {@link setBackendReqFd}. */
  get backendChannelFd(): number | null {
    return this.#backendChannel?.fd ?? null;
  }

  /**
   * Reads one back-end request (e.g. CONFIG_CHANGE_MSG, code 2) from the
   * channel. Returns null if none arrives within `timeoutMs`; throws if the
   * back-end closed the channel. Reply with {@link replyBackendRequest} when
   * the request has NEED_REPLY.
   */
  readBackendRequest(timeoutMs: number): RawMessage | null {
    const channel = this.#backendChannel;
    if (!channel) throw new Error("no back-end channel: call setBackendReqFd first");
    const deadline = performance.now() + timeoutMs;
    if (!channel.waiter.wait(EPOLLIN, deadline)) return null;
    const message = readMessage(channel.fd, {
      waiter: channel.waiter,
      deadline: performance.now() + this.#timeoutMs,
    });
    if (!message) {
      throw new VhostUserFrontendError("back-end channel", "closed by the back-end");
    }
    return message;
  }

  /**
   * Answers a back-end request as QEMU does (`vhost_user_send_resp`): u64
   * `result` (0 = success), flags REPLY|version.
   */
  replyBackendRequest(request: RawMessage, result = 0n): void {
    const channel = this.#backendChannel;
    if (!channel) throw new Error("no back-end channel: call setBackendReqFd first");
    const bytes = encodeMessage(request.request, {
      flags: REPLY_FLAGS,
      payload: encodeU64(result),
    });
    sendAll(channel.fd, bytes, {
      fds: [],
      waiter: channel.waiter,
      deadline: performance.now() + this.#timeoutMs,
    });
  }

  // ---- Raw access for hostile tests

  /** Sends arbitrary bytes (with `fds` on the first byte) on the socket. */
  sendRaw(bytes: Uint8Array, fds: readonly number[] = []): void {
    sendAll(this.fd, bytes, {
      fds,
      waiter: this.#waiter,
      deadline: performance.now() + this.#timeoutMs,
    });
  }

  /**
   * Reads one message without checking it. Returns null if the back-end
   * closed the connection before sending anything; throws on timeout.
   */
  readRawReply(options: { timeoutMs?: number } = {}): RawMessage | null {
    return readMessage(this.fd, {
      waiter: this.#waiter,
      deadline: performance.now() + (options.timeoutMs ?? this.#timeoutMs),
    });
  }

  /**
   * Whether the back-end closes the connection within `timeoutMs` (what
   * rust-vmm back-ends do on a protocol error). Data that arrives meanwhile
   * is read and discarded.
   */
  waitForHangUp(timeoutMs: number): boolean {
    const deadline = performance.now() + timeoutMs;
    const chunk = new Uint8Array(4096);
    for (;;) {
      if (!this.#waiter.wait(EPOLLIN, deadline)) return false;
      let got;
      try {
        got = receiveWithFds(this.fd, chunk);
      } catch (error) {
        if (error instanceof SyscallError && error.errno === ECONNRESET) return true;
        throw error;
      }
      if (got === null) continue;
      got.fds.forEach(close);
      if (got.length === 0) return true;
    }
  }

  // ---- QEMU-like sequences (reference section 4 "Generic order")

  /**
   * Connect-time sequence of `vhost_dev_init`: GET_FEATURES; with bit 30
   * GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES(offered ∩ supported),
   * GET_QUEUE_NUM (MQ), GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS);
   * SET_BACKEND_REQ_FD (BACKEND_REQ); SET_OWNER; GET_FEATURES; per queue
   * SET_VRING_CALL and SET_VRING_ERR with fresh eventfds. `queueCount`
   * defaults to GET_QUEUE_NUM, else 1.
   */
  init(options: { queueCount?: number } = {}): InitResult {
    let features = this.getFeatures();
    let protocolFeatures = 0n;
    let queueNum: number | null = null;
    let maxMemSlots: number | null = null;
    if ((features & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n) {
      protocolFeatures = this.getProtocolFeatures() & this.#supported;
      this.setProtocolFeatures(protocolFeatures);
      if (this.hasProtocolFeature(P.MQ)) queueNum = this.getQueueNum();
      if (this.hasProtocolFeature(P.CONFIGURE_MEM_SLOTS)) maxMemSlots = this.getMaxMemSlots();
      if (this.hasProtocolFeature(P.BACKEND_REQ)) this.setBackendReqFd();
    }
    this.setOwner();
    features = this.getFeatures();
    const queueCount = options.queueCount ?? queueNum ?? 1;
    for (let q = 0; q < queueCount; q++) {
      const n = this.#notifiersOf(q);
      this.setVringCall(q, n.call);
      this.setVringErr(q, n.err);
    }
    return { features, protocolFeatures, queueNum, maxMemSlots, queueCount };
  }

  /**
   * Start sequence of `vhost_dev_start`: SET_FEATURES (+ bit 30 if offered)
   * [GET_STATUS, SET_STATUS(|FEATURES_OK)]; the memory table; per queue
   * SET_VRING_NUM, SET_VRING_BASE(`lastAvailIndex`), SET_VRING_ADDR,
   * SET_VRING_KICK; SET_VRING_ENABLE(1) per queue;
   * [GET_STATUS, SET_STATUS(|ACKNOWLEDGE|DRIVER|DRIVER_OK)]; then
   * SET_VRING_CALL per queue again, as QEMU does when it unmasks notifiers.
   */
  start(options: StartOptions): void {
    const { memory, queues } = options;
    const offeredBit30 = this.#offeredFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES);
    this.setFeatures(options.features | offeredBit30);
    if (this.hasProtocolFeature(P.STATUS)) this.#addStatus(DeviceStatus.FEATURES_OK);
    const mode = options.memoryUpdate ?? "auto";
    const regions = mode === "regions" ||
      (mode === "auto" && this.hasProtocolFeature(P.CONFIGURE_MEM_SLOTS));
    if (regions) this.#updateRegions(memory.regions());
    else this.setMemTable(memory.regions());
    queues.forEach((queue, q) => {
      const n = this.#notifiersOf(q);
      this.setVringNum(q, queue.size);
      this.setVringBase(q, queue.lastAvailIndex);
      this.setVringAddr(q, queue.addresses());
      this.setVringKick(q, n.kick);
    });
    if (offeredBit30 !== 0n) queues.forEach((_, q) => this.setVringEnable(q, true));
    if (this.hasProtocolFeature(P.STATUS)) {
      this.#addStatus(DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK);
    }
    queues.forEach((_, q) => this.setVringCall(q, this.#notifiersOf(q).call));
    this.#started = queues;
  }

  /**
   * Stop sequence of `do_vhost_dev_stop`: SET_VRING_ENABLE(0) per queue (with
   * bit 30), GET_VRING_BASE per queue, [SET_STATUS(0)]. Stores each base in
   * the queue's `lastAvailIndex` and returns them.
   */
  stop(): number[] {
    const queues = this.#started;
    if ((this.#offeredFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n) {
      queues.forEach((_, q) => this.setVringEnable(q, false));
    }
    const bases = queues.map((queue, q) => {
      queue.lastAvailIndex = this.getVringBase(q);
      return queue.lastAvailIndex;
    });
    if (this.hasProtocolFeature(P.STATUS)) this.setStatus(0);
    this.#started = [];
    return bases;
  }

  /** Kicks queue `q` (writes its kick eventfd). */
  kick(q: number): void {
    signalEventFd(this.#notifiersOf(q).kick);
  }

  /**
   * Blocks until queue `q`'s call eventfd is signalled or `timeoutMs` passes;
   * drains it. Returns whether it was signalled.
   */
  waitForCall(q: number, timeoutMs: number): boolean {
    const n = this.#notifiersOf(q);
    const deadline = performance.now() + timeoutMs;
    // epoll first: it returns at once if already signalled, saving a read that would fail.
    while (n.callWaiter.wait(EPOLLIN, deadline)) {
      if (drainEventFd(n.call) > 0) return true;
    }
    return false;
  }

  /** Drains queue `q`'s err eventfd; whether the back-end had signalled it. */
  takeError(q: number): boolean {
    return drainEventFd(this.#notifiersOf(q).err) > 0;
  }

  /** The kick eventfd of queue `q` (created on first use). */
  kickFd(q: number): number {
    return this.#notifiersOf(q).kick;
  }

  /** The call eventfd of queue `q` (created on first use). */
  callFd(q: number): number {
    return this.#notifiersOf(q).call;
  }

  /** The err eventfd of queue `q` (created on first use). */
  errFd(q: number): number {
    return this.#notifiersOf(q).err;
  }

  /** Closes the socket, the back-end channel and every eventfd. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#waiter.close();
    close(this.fd);
    this.#closeBackendChannel();
    for (const n of this.#notifiers) {
      n.callWaiter.close();
      close(n.kick);
      close(n.call);
      close(n.err);
    }
    this.#notifiers.length = 0;
  }

  // ---- Internals

  #notifiersOf(q: number): Notifiers {
    if (!Number.isInteger(q) || q < 0 || q > 0xff) throw new RangeError(`bad queue index ${q}`);
    while (this.#notifiers.length <= q) {
      const call = createEventFd();
      this.#notifiers.push({
        kick: createEventFd(),
        call,
        err: createEventFd(),
        callWaiter: new FdWaiter(call, EPOLLIN),
      });
    }
    return this.#notifiers[q];
  }

  #closeBackendChannel(): void {
    if (!this.#backendChannel) return;
    this.#backendChannel.waiter.close();
    close(this.#backendChannel.fd);
    this.#backendChannel = null;
  }

  /** `vhost_user_add_status`: GET_STATUS, then SET_STATUS(old | bits) unless already set. */
  #addStatus(bits: number): void {
    const status = this.getStatus();
    if ((status & bits) !== bits) this.setStatus(status | bits);
  }

  /** `vhost_user_add_remove_regions`: remove regions no longer present, add new ones. */
  #updateRegions(regions: readonly DriverRegion[]): void {
    const same = (a: DriverRegion, b: DriverRegion): boolean =>
      a.fd === b.fd &&
      a.descriptor.guestPhysAddr === b.descriptor.guestPhysAddr &&
      a.descriptor.memorySize === b.descriptor.memorySize &&
      a.descriptor.userspaceAddr === b.descriptor.userspaceAddr &&
      a.descriptor.mmapOffset === b.descriptor.mmapOffset;
    for (const old of this.#sentRegions) {
      if (!regions.some((r) => same(r, old))) this.remMemReg(old.descriptor);
    }
    for (const region of regions) {
      if (!this.#sentRegions.some((r) => same(r, region))) this.addMemReg(region);
    }
    this.#sentRegions = [...regions];
  }

  #sendVringFd(
    request: number,
    index: number,
    options: RequestOptions & { fd: number | null },
  ): void {
    const value = BigInt(index) | (options.fd === null ? BigInt(VRING_NOFD_MASK) : 0n);
    this.#send(request, {
      payload: encodeU64(value),
      fds: options.fd === null ? [] : [options.fd],
      needReply: options.needReply,
    });
  }

  /** A request answered by a u64 (GET_FEATURES and the like). */
  #u64Request(request: number): bigint {
    this.#write(request, {});
    return toView(this.#readReply(request, 8)).getBigUint64(0, true);
  }

  /** Sends a request that has no reply of its own, applying the REPLY_ACK policy. */
  #send(
    request: number,
    options: { payload?: Uint8Array; fds?: readonly number[]; needReply?: boolean },
  ): void {
    const negotiated = this.replyAckNegotiated;
    const needReply = options.needReply ??
      (negotiated &&
        (this.#policy === "all" || (this.#policy === "qemu" && QEMU_ACKED.has(request)) ||
          (this.#policy === "qemu-7.2" && QEMU_72_ACKED.has(request))));
    this.#write(request, { payload: options.payload, fds: options.fds, needReply });
    if (needReply) {
      const ack = toView(this.#readReply(request, 8)).getBigUint64(0, true);
      if (ack !== 0n) {
        throw new VhostUserFrontendError(requestName(request), `back-end acked failure (${ack})`);
      }
    } else if (this.#policy === "qemu" && !negotiated && QEMU_SYNC.has(request)) {
      // vhost_user_write_sync: without REPLY_ACK, GET_FEATURES proves the message was handled.
      this.getFeatures();
    }
  }

  #write(
    request: number,
    options: { payload?: Uint8Array; fds?: readonly number[]; needReply?: boolean },
  ): void {
    const flags = VERSION | (options.needReply ? NEED_REPLY_FLAG : 0);
    const bytes = encodeMessage(request, { flags, payload: options.payload });
    try {
      sendAll(this.fd, bytes, {
        fds: options.fds ?? [],
        waiter: this.#waiter,
        deadline: performance.now() + this.#timeoutMs,
      });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new VhostUserFrontendError(requestName(request), `send failed: ${detail}`);
    }
  }

  /**
   * Reads the reply to `request` and checks it as QEMU does: flags exactly
   * 0x5, same request code, payload of `size` bytes (any size if null), no fds.
   */
  #readReply(request: number, size: number | null): Uint8Array {
    const name = requestName(request);
    const deadline = performance.now() + this.#timeoutMs;
    let message: RawMessage | null;
    try {
      message = readMessage(this.fd, { waiter: this.#waiter, deadline });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new VhostUserFrontendError(name, `${detail} (timeout ${this.#timeoutMs} ms)`);
    }
    if (!message) throw new VhostUserFrontendError(name, "back-end closed the connection");
    if (message.fds.length > 0) {
      message.fds.forEach(close);
      throw new VhostUserFrontendError(name, `reply carried ${message.fds.length} fds`);
    }
    if (message.flags !== REPLY_FLAGS) {
      throw new VhostUserFrontendError(
        name,
        `reply flags 0x${message.flags.toString(16)}, expected 0x${REPLY_FLAGS.toString(16)}`,
      );
    }
    if (message.request !== request) {
      throw new VhostUserFrontendError(
        name,
        `reply is for request ${requestName(message.request)}`,
      );
    }
    if (size !== null && message.size !== size) {
      throw new VhostUserFrontendError(name, `reply of ${message.size} bytes, expected ${size}`);
    }
    return message.payload;
  }
}

function toView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Sends all of `bytes`, `fds` attached to the first chunk (as QEMU's single write). */
function sendAll(
  fd: number,
  bytes: Uint8Array,
  options: { fds: readonly number[]; waiter: FdWaiter; deadline: number },
): void {
  let sent = 0;
  while (sent < bytes.length) {
    const n = sendWithFds(fd, bytes.subarray(sent), { fds: sent === 0 ? options.fds : [] });
    if (n !== null) {
      sent += n;
      continue;
    }
    if (!options.waiter.wait(EPOLLOUT, options.deadline)) {
      throw new Error(`socket stayed full for the whole timeout (${sent}/${bytes.length} sent)`);
    }
  }
}

/**
 * Reads exactly `into.length` bytes, collecting fds. Returns false on end of
 * file before the first byte; throws on timeout or end of file mid-way.
 */
function receiveExact(
  fd: number,
  into: Uint8Array,
  options: { fds: number[]; waiter: FdWaiter; deadline: number },
): boolean {
  let got = 0;
  while (got < into.length) {
    const r = receiveWithFds(fd, into.subarray(got));
    if (r === null) {
      if (!options.waiter.wait(EPOLLIN, options.deadline)) {
        throw new Error(
          got === 0 ? "no reply before the timeout" : `only ${got}/${into.length} bytes arrived`,
        );
      }
      continue;
    }
    options.fds.push(...r.fds);
    if (r.fdsTruncated) throw new Error("descriptors were truncated (MSG_CTRUNC)");
    if (r.length === 0) {
      if (got === 0) return false;
      throw new Error(`connection closed after ${got}/${into.length} bytes`);
    }
    got += r.length;
  }
  return true;
}

/** Reads one header + payload; null on a clean end of file before the header. */
function readMessage(
  fd: number,
  options: { waiter: FdWaiter; deadline: number },
): RawMessage | null {
  const fds: number[] = [];
  const header = new Uint8Array(HEADER_SIZE);
  try {
    if (!receiveExact(fd, header, { fds, ...options })) return null;
    const view = toView(header);
    const size = view.getUint32(8, true);
    // Do not trust a huge size: it would stall reading bytes that never come.
    if (size > MAX_PAYLOAD_SIZE) {
      throw new Error(`payload size ${size} exceeds ${MAX_PAYLOAD_SIZE}`);
    }
    const payload = new Uint8Array(size);
    if (!receiveExact(fd, payload, { fds, ...options }) && size > 0) {
      throw new Error("connection closed between header and payload");
    }
    return {
      request: view.getUint32(0, true),
      flags: view.getUint32(4, true),
      size,
      payload,
      fds,
    };
  } catch (error) {
    fds.forEach(close);
    throw error;
  }
}
