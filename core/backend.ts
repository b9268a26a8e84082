/**
 * The vhost-user back-end state machine for one front-end connection: one
 * handler per message, each following docs/interop/vhost-user.rst. It owns
 * the connection's descriptors, guest memory and rings, and drives a
 * {@link VirtioDevice} through its hooks.
 *
 * @module
 */

import { EPOLLET, EPOLLIN } from "../ffi/epoll.ts";
import { signalEventFd } from "../ffi/eventfd.ts";
import { close, setNonBlocking } from "../ffi/fd.ts";
import { sendWithFds } from "../ffi/socket.ts";
import type { DeviceContext, VirtioDevice } from "./device.ts";
import type { EventLoop, Poller } from "./event_loop.ts";
import type { Logger } from "./log.ts";
import { GuestMemory, mapRegion, type MemoryRegion } from "./memory/guest_memory.ts";
import {
  BackendRequest,
  bit,
  MAX_CONFIG_SIZE,
  MAX_MEM_SLOTS,
  ProtocolFeature as P,
  requestName,
  VERSION,
  VHOST_USER_F_PROTOCOL_FEATURES,
} from "./protocol/constants.ts";
import {
  type ConfigAccess,
  type Decoded,
  decodeMessage,
  encodeConfig,
  encodeMessage,
  encodeReply,
  encodeU64,
  encodeVringState,
  type FrontendMessage,
  type MemoryRegionDescriptor,
  ProtocolError,
  type VringAddresses,
} from "./protocol/message.ts";
import { END_OF_STREAM, MessageReader, type RawMessage } from "./protocol/reader.ts";
import { VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from "./virtio/features.ts";
import { ringSizes, SplitQueue } from "./virtio/split_queue.ts";

/** Protocol features this core implements; a device may offer any subset. */
export const IMPLEMENTED_PROTOCOL_FEATURES: bigint = bit(P.MQ) | bit(P.REPLY_ACK) |
  bit(P.BACKEND_REQ) |
  bit(P.CONFIG) | bit(P.RESET_DEVICE) | bit(P.CONFIGURE_MEM_SLOTS) | bit(P.STATUS);

const PROTOCOL_FEATURES_BIT = bit(VHOST_USER_F_PROTOCOL_FEATURES);

/** A request the back-end refuses; the front-end gets a failed ack if it asked for one. */
class RequestError extends Error {}

/** One ring's vhost-user state (docs "Ring states"). */
class Vring {
  size = 0;
  addresses: VringAddresses | null = null;
  base = 0;
  kickFd: number | null = null;
  callFd: number | null = null;
  errFd: number | null = null;
  enabled = false;
  queue: SplitQueue | null = null;
  /** The ring used buffers while it had no call fd: the next one is signalled at once. */
  callMissed = false;

  /** Signals the call fd, or remembers the call until SET_VRING_CALL brings one. */
  call(): void {
    if (this.callFd === null) this.callMissed = true;
    else signalEventFd(this.callFd);
  }

  /**
   * Takes a new call fd (SET_VRING_CALL), closing the old one. A ring started
   * by SET_VRING_KICK may serve (by polling) before its call fd arrives: a
   * call missed meanwhile is signalled now, as QEMU holds a masked vector's
   * interrupt.
   */
  setCallFd(fd: number | null): void {
    if (this.callFd !== null) close(this.callFd);
    this.callFd = fd;
    if (fd !== null && this.callMissed) {
      this.callMissed = false;
      signalEventFd(fd);
    }
  }

  /** Closes every descriptor the ring holds. */
  closeFds(): void {
    for (const fd of [this.kickFd, this.callFd, this.errFd]) if (fd !== null) close(fd);
    this.kickFd = this.callFd = this.errFd = null;
  }
}

/** Options for {@link Backend}. */
export interface BackendOptions {
  /** The loop the connection and kick fds are watched on. */
  readonly loop: EventLoop;
  /** The connection's logger. */
  readonly log: Logger;
  /** Called once when the connection has ended and everything is released. */
  readonly onClose: () => void;
}

/** Serves one front-end connection. */
export class Backend {
  readonly #fd: number;
  readonly #device: VirtioDevice;
  readonly #loop: EventLoop;
  readonly #log: Logger;
  readonly #onClose: () => void;
  readonly #reader: MessageReader;
  readonly #vrings: Vring[];
  readonly #offeredFeatures: bigint;
  readonly #offeredProtocol: bigint;
  #ackedFeatures = 0n;
  #ackedProtocol = 0n;
  #featuresSet = false;
  #memory: GuestMemory | null = null;
  /** Replaced tables still mapped for chains in flight (see {@link #setMemory}). */
  readonly #retiredMemory: GuestMemory[] = [];
  #backendChannel: number | null = null;
  #status = 0;
  #activated = false;
  #closed = false;

  /** Starts serving the connected socket `fd` (made non-blocking here). */
  constructor(fd: number, device: VirtioDevice, options: BackendOptions) {
    this.#fd = fd;
    this.#device = device;
    this.#loop = options.loop;
    this.#log = options.log;
    this.#onClose = options.onClose;
    this.#reader = new MessageReader(fd);
    this.#vrings = Array.from({ length: device.numQueues }, () => new Vring());
    this.#offeredFeatures = device.features | PROTOCOL_FEATURES_BIT;
    this.#offeredProtocol = device.protocolFeatures & IMPLEMENTED_PROTOCOL_FEATURES;
    setNonBlocking(fd, true);
    this.#loop.watch(fd, () => this.#onReadable());
    this.#loop.addPoller(this.#poller);
  }

  /**
   * While the loop polls, live rings keep notifications off and are looked
   * at in memory instead: a new available index stands for the kick the
   * driver did not send (as vhost-net's busy polling does).
   */
  readonly #poller: Poller = {
    poll: () => {
      let found = false;
      for (let index = 0; index < this.#vrings.length; index++) {
        const vring = this.#vrings[index];
        if (vring.enabled && vring.queue?.pollAvailable()) {
          this.#kick(index);
          found = true;
        }
      }
      return found;
    },
    arm: () => {
      let found = false;
      for (let index = 0; index < this.#vrings.length; index++) {
        const queue = this.#vrings[index].queue;
        if (queue?.unarmed && queue.armPolled()) {
          this.#kick(index);
          found = true;
        }
      }
      return found;
    },
  };

  /**
   * Ends the connection: stops rings, releases memory and descriptors, resets
   * the device. `failure` marks an end the front-end caused by misbehaving.
   */
  close(reason: string, options: { failure?: boolean } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    if (options.failure) this.#log.error(`front-end connection dropped: ${reason}`);
    else this.#log.info(`front-end connection closed: ${reason}`);
    this.#reader.discard();
    this.#loop.removePoller(this.#poller);
    this.#loop.unwatch(this.#fd);
    close(this.#fd);
    this.#resetRings();
    this.#setBackendChannel(null);
    this.#setMemory(null);
    this.#resetDevice();
    this.#onClose();
  }

  #onReadable(): void {
    while (!this.#closed) {
      let raw: RawMessage | null | typeof END_OF_STREAM;
      try {
        raw = this.#reader.next();
      } catch (error) {
        this.close(`${error instanceof Error ? error.message : error}`, { failure: true });
        return;
      }
      if (raw === null) return;
      if (raw === END_OF_STREAM) {
        this.close("the front-end hung up");
        return;
      }
      this.#handleRaw(raw);
    }
  }

  #handleRaw(raw: RawMessage): void {
    const name = requestName(raw.header.request);
    let decoded: Decoded;
    try {
      decoded = decodeMessage(raw.header, { payload: raw.payload, fds: raw.fds });
    } catch (error) {
      for (const fd of raw.fds) close(fd);
      if (!(error instanceof ProtocolError)) throw error;
      this.#log.error(`malformed message: ${error.message}`);
      this.#replyAck(raw.header.request, (raw.header.flags & 0x8) !== 0, false);
      return;
    }
    const owned = ownedFds(decoded.message);
    for (const fd of raw.fds) if (!owned.includes(fd)) close(fd);
    if (this.#log.enabled("debug")) this.#log.debug(`${name} ${describe(decoded.message)}`);
    let ok = true;
    try {
      const reply = this.#handle(decoded.message);
      if (this.#closed) return;
      if (reply) {
        this.#send(encodeReply(raw.header.request, reply));
        return;
      }
    } catch (error) {
      if (!(error instanceof RequestError || error instanceof RangeError)) {
        this.#log.error(
          `${name} failed in the device: ${error instanceof Error ? error.stack : error}`,
        );
      } else {
        this.#log.error(`${name} refused: ${error.message}`);
      }
      ok = false;
    }
    this.#replyAck(raw.header.request, decoded.needReply, ok);
  }

  /** Sends the REPLY_ACK u64 when negotiated and asked for (0 success, 1 failure). */
  #replyAck(request: number, needReply: boolean, ok: boolean): void {
    if (this.#closed || !needReply || !(this.#ackedProtocol & bit(P.REPLY_ACK))) return;
    this.#send(encodeReply(request, encodeU64(ok ? 0n : 1n)));
  }

  #send(bytes: Uint8Array): void {
    try {
      // Replies are tiny; a socket too full to take one means the front-end stopped reading.
      if (sendWithFds(this.#fd, bytes) !== bytes.length) {
        this.close("the front-end is not reading replies");
      }
    } catch (error) {
      this.close(`sending a reply failed: ${error instanceof Error ? error.message : error}`, {
        failure: true,
      });
    }
  }

  /** Acts on one message; returns the reply payload for requests that have one. */
  #handle(message: FrontendMessage): Uint8Array | void {
    switch (message.kind) {
      case "GET_FEATURES":
        return encodeU64(this.#offeredFeatures);
      case "SET_FEATURES":
        return this.#setFeatures(message.features);
      case "GET_PROTOCOL_FEATURES":
        return encodeU64(this.#offeredProtocol);
      case "SET_PROTOCOL_FEATURES":
        // Bits we did not offer are dropped, as QEMU masks ours.
        this.#ackedProtocol = message.features & this.#offeredProtocol;
        return;
      case "GET_QUEUE_NUM":
        return encodeU64(BigInt(this.#device.numQueues));
      case "SET_OWNER":
        return;
      case "RESET_OWNER":
      case "RESET_DEVICE":
        this.#resetRings();
        this.#resetDevice();
        this.#ackedFeatures = 0n;
        this.#featuresSet = false;
        return;
      case "SET_MEM_TABLE":
        return this.#setMemTable(message.regions, message.fds);
      case "GET_MAX_MEM_SLOTS":
        return encodeU64(BigInt(MAX_MEM_SLOTS));
      case "ADD_MEM_REG":
        return this.#addMemRegion(message.region, message.fd);
      case "REM_MEM_REG":
        return this.#removeMemRegion(message.region);
      case "SET_VRING_NUM":
        return this.#setVringNum(message.index, message.num);
      case "SET_VRING_ADDR":
        return this.#setVringAddr(message.addresses);
      case "SET_VRING_BASE": {
        const vring = this.#vring(message.index);
        if (vring.queue) {
          throw new RequestError(`queue ${message.index}: SET_VRING_BASE while the ring runs`);
        }
        vring.base = message.num & 0xffff;
        return;
      }
      case "GET_VRING_BASE":
        return encodeVringState(message.index, this.#stopRing(message.index));
      case "SET_VRING_KICK":
        return this.#setVringKick(message.index, message.fd);
      case "SET_VRING_CALL": {
        // Swapped while the ring runs when QEMU masks or unmasks the vector.
        this.#vringTaking(message.index, message.fd).setCallFd(message.fd);
        return;
      }
      case "SET_VRING_ERR": {
        const vring = this.#vringTaking(message.index, message.fd);
        if (vring.errFd !== null) close(vring.errFd);
        vring.errFd = message.fd;
        return;
      }
      case "SET_VRING_ENABLE":
        return this.#setVringEnable(message.index, message.enable);
      case "SET_BACKEND_REQ_FD":
        if (!(this.#ackedProtocol & bit(P.BACKEND_REQ))) close(message.fd);
        this.#requireProtocol(P.BACKEND_REQ, "SET_BACKEND_REQ_FD");
        this.#setBackendChannel(message.fd);
        return;
      case "GET_CONFIG":
        return this.#getConfig(message.config);
      case "SET_CONFIG":
        this.#requireProtocol(P.CONFIG, "SET_CONFIG");
        if (!this.#device.writeConfig) {
          throw new RequestError(`${this.#device.name} has no writable config space`);
        }
        this.#device.writeConfig(message.config.offset, message.config.data);
        return;
      case "SET_STATUS":
        this.#requireProtocol(P.STATUS, "SET_STATUS");
        this.#status = message.status;
        return;
      case "GET_STATUS":
        this.#requireProtocol(P.STATUS, "GET_STATUS");
        return encodeU64(BigInt(this.#status));
      case "SET_LOG_BASE":
      case "SET_LOG_FD":
      case "GET_INFLIGHT_FD":
        throw new RequestError(
          `${message.kind} needs a protocol feature this back-end does not offer`,
        );
      case "UNSUPPORTED":
        throw new RequestError(`unsupported request ${message.name}`);
    }
  }

  #requireProtocol(feature: number, what: string): void {
    if (!(this.#ackedProtocol & bit(feature))) {
      throw new RequestError(`${what} without its protocol feature negotiated`);
    }
  }

  #vring(index: number): Vring {
    const vring = this.#vrings[index];
    if (!vring) {
      throw new RequestError(`queue index ${index} out of range (${this.#vrings.length} queues)`);
    }
    return vring;
  }

  /** {@link #vring}, closing `fd` (which the ring would have taken) if `index` is bad. */
  #vringTaking(index: number, fd: number | null): Vring {
    if (!this.#vrings[index] && fd !== null) close(fd);
    return this.#vring(index);
  }

  #setFeatures(features: bigint): void {
    const unknown = features & ~this.#offeredFeatures;
    if (unknown) throw new RequestError(`features 0x${unknown.toString(16)} were not offered`);
    this.#ackedFeatures = features;
    this.#featuresSet = true;
    // EVENT_IDX and INDIRECT_DESC follow SET_FEATURES even for live rings
    // (rust-vmm/vhost#240: a front-end need not set the ring up again).
    this.#vrings.forEach((vring, index) => {
      if (vring.queue) this.#startRing(index);
    });
    // Without VHOST_USER_F_PROTOCOL_FEATURES rings start enabled (docs "Ring states").
    if (!(features & PROTOCOL_FEATURES_BIT)) {
      for (let i = 0; i < this.#vrings.length; i++) this.#setVringEnable(i, true);
    }
    this.#device.acknowledgeFeatures?.(features & ~PROTOCOL_FEATURES_BIT);
  }

  /** Maps a whole new table; takes ownership of `fds` (one per region, in order). */
  #setMemTable(regions: readonly MemoryRegionDescriptor[], fds: readonly number[]): void {
    const mapped: MemoryRegion[] = [];
    let failure: unknown = null;
    regions.forEach((descriptor, i) => {
      if (failure !== null) return close(fds[i]);
      try {
        mapped.push(mapRegion(descriptor, fds[i]));
      } catch (error) {
        failure = error;
      }
    });
    if (failure !== null) {
      for (const region of mapped) region.unmapUnused();
      throw new RequestError(
        `SET_MEM_TABLE: ${failure instanceof Error ? failure.message : failure}`,
      );
    }
    this.#replaceMemory(mapped);
  }

  #addMemRegion(descriptor: MemoryRegionDescriptor, fd: number): void {
    const current = this.#memory?.regions ?? [];
    if (current.length >= MAX_MEM_SLOTS) {
      close(fd);
      throw new RequestError(`all ${MAX_MEM_SLOTS} memory slots are in use`);
    }
    let region: MemoryRegion;
    try {
      region = mapRegion(descriptor, fd);
    } catch (error) {
      throw new RequestError(`${error instanceof Error ? error.message : error}`);
    }
    this.#replaceMemory([...current, region]);
  }

  #removeMemRegion(descriptor: MemoryRegionDescriptor): void {
    const current = this.#memory?.regions ?? [];
    // Matched by address, front-end address and size; mmap_offset is ignored (docs REM_MEM_REG).
    const kept = current.filter((r) =>
      !(r.descriptor.guestPhysAddr === descriptor.guestPhysAddr &&
        r.descriptor.userspaceAddr === descriptor.userspaceAddr &&
        r.descriptor.memorySize === descriptor.memorySize)
    );
    if (kept.length === current.length) {
      throw new RequestError(
        `no region at 0x${descriptor.guestPhysAddr.toString(16)}`,
      );
    }
    this.#replaceMemory(kept);
  }

  /** Installs a new table built from `regions` and rebuilds live rings over it. */
  #replaceMemory(regions: MemoryRegion[]): void {
    let memory: GuestMemory;
    try {
      memory = new GuestMemory(regions);
    } catch (error) {
      for (const region of regions) region.unmapUnused();
      throw new RequestError(`${error instanceof Error ? error.message : error}`);
    }
    this.#setMemory(memory);
    // Every live ring is rebuilt over the new table before any failure is
    // reported: a ring left on the old table would read unmapped memory.
    const failures: string[] = [];
    this.#vrings.forEach((vring, index) => {
      if (!vring.queue) return;
      try {
        this.#startRing(index);
      } catch (error) {
        failures.push(error instanceof Error ? error.message : String(error));
      }
    });
    if (failures.length > 0) throw new RequestError(failures.join("; "));
  }

  /**
   * A replaced table stays mapped while any ring has chains the device took
   * and has not returned: a device may still write into them (a paced sound
   * period, a held event buffer). It is released at the first later change
   * with nothing in flight, or when the connection ends.
   */
  #setMemory(memory: GuestMemory | null): void {
    if (this.#memory) this.#retiredMemory.push(this.#memory);
    this.#memory = memory;
    if (memory !== null && this.#chainsInFlight()) return;
    for (const table of this.#retiredMemory.splice(0)) table.release();
  }

  /** Whether a live ring has chains the device took and has not returned yet. */
  #chainsInFlight(): boolean {
    return this.#vrings.some((vring) =>
      vring.queue !== null && ((vring.queue.nextAvail - vring.queue.nextUsed) & 0xffff) !== 0
    );
  }

  #setVringNum(index: number, num: number): void {
    const vring = this.#vring(index);
    const max = this.#device.maxQueueSize;
    if (num === 0 || num > max || (num & (num - 1)) !== 0) {
      throw new RequestError(`queue ${index}: size ${num} is not a power of 2 in 1..${max}`);
    }
    if (vring.queue) throw new RequestError(`queue ${index}: SET_VRING_NUM while the ring runs`);
    vring.size = num;
  }

  #setVringAddr(addresses: VringAddresses): void {
    const vring = this.#vring(addresses.index);
    // Alignment of §2.7: descriptor table 16, available ring 2, used ring 4.
    if (addresses.descUser % 16 || addresses.availUser % 2 || addresses.usedUser % 4) {
      throw new RequestError(`queue ${addresses.index}: misaligned ring address`);
    }
    vring.addresses = addresses;
    if (vring.queue) this.#startRing(addresses.index);
  }

  #setVringKick(index: number, fd: number | null): void {
    const vring = this.#vringTaking(index, fd);
    if (vring.kickFd !== null) {
      this.#loop.unwatch(vring.kickFd);
      close(vring.kickFd);
    }
    vring.kickFd = fd;
    if (fd === null) {
      this.#log.warn(
        `queue ${index}: kick without an fd (polling) is not supported; the ring waits for enable`,
      );
    }
    // The ring starts on SET_VRING_KICK (docs "Ring states"; rust-vmm does the same).
    this.#startRing(index);
  }

  /** Builds the ring's queue over current memory; on failure the ring stays stopped. */
  #startRing(index: number): void {
    const vring = this.#vrings[index];
    const previous = vring.queue;
    vring.queue = null;
    if (previous) vring.base = previous.nextAvail;
    if (!this.#memory) throw new RequestError(`queue ${index}: ring started before SET_MEM_TABLE`);
    if (!vring.addresses) {
      throw new RequestError(`queue ${index}: ring started before SET_VRING_ADDR`);
    }
    if (vring.size === 0) {
      throw new RequestError(`queue ${index}: ring started before SET_VRING_NUM`);
    }
    const sizes = ringSizes(vring.size);
    const eventIdx = (this.#ackedFeatures & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
    const desc = this.#memory.userBytes(vring.addresses.descUser, sizes.desc);
    const avail = this.#memory.userBytes(vring.addresses.availUser, sizes.avail);
    const used = this.#memory.userBytes(vring.addresses.usedUser, sizes.used);
    if (!desc || !avail || !used) {
      throw new RequestError(`queue ${index}: ring addresses are outside guest memory`);
    }
    try {
      vring.queue = new SplitQueue({
        index,
        size: vring.size,
        desc,
        avail,
        used,
        memory: this.#memory,
        nextAvail: vring.base,
        eventIdx,
        indirect: (this.#ackedFeatures & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n,
        notify: () => vring.call(),
        fail: () => {
          if (vring.errFd !== null) signalEventFd(vring.errFd);
        },
        log: this.#log,
        deferArming: () => this.#loop.pollsNext,
      });
    } catch (error) {
      throw new RequestError(`${error instanceof Error ? error.message : error}`);
    }
    this.#activate();
    this.#updateKickWatch(index);
    // The ring was rebuilt (new memory table, new features) while its loop
    // polled it with kicks off, or into the other notification scheme: the
    // new queue knows nothing of the old state, so turn kicks on here in its
    // scheme, and serve what came meanwhile.
    if (previous && (previous.unarmed || previous.eventIdx !== eventIdx)) {
      vring.queue.markUnarmed();
      if (vring.queue.armNotification()) this.#kick(index);
    }
  }

  /** Stops a ring (GET_VRING_BASE) and returns the next available index. */
  #stopRing(index: number): number {
    const vring = this.#vring(index);
    if (vring.queue) {
      this.#callDevice(`quiescing queue ${index}`, () => this.#device.quiesce?.(index));
      // A stopped ring is left as an unpolled one would be: kicks on.
      if (vring.queue.unarmed) vring.queue.armNotification();
      vring.base = vring.queue.nextAvail;
      vring.queue = null;
      this.#callDevice(`stopping queue ${index}`, () => this.#device.queueStopped?.(index));
    }
    // rust-vmm drops the kick fd here; the ring restarts on the next SET_VRING_KICK.
    if (vring.kickFd !== null) {
      if (this.#loop.watching(vring.kickFd)) this.#loop.unwatch(vring.kickFd);
      close(vring.kickFd);
      vring.kickFd = null;
    }
    return vring.base;
  }

  #setVringEnable(index: number, enable: boolean): void {
    const vring = this.#vring(index);
    if (this.#featuresSet && !(this.#ackedFeatures & PROTOCOL_FEATURES_BIT) && !enable) {
      throw new RequestError(
        `queue ${index}: SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES`,
      );
    }
    vring.enabled = enable;
    this.#updateKickWatch(index);
  }

  /** Watches the kick fd while the ring is started and enabled; serves kicks missed meanwhile. */
  #updateKickWatch(index: number): void {
    const vring = this.#vrings[index];
    const live = vring.enabled && vring.queue !== null && vring.kickFd !== null;
    const kickFd = vring.kickFd;
    if (kickFd === null) return;
    const watched = this.#loop.watching(kickFd);
    if (live && !watched) {
      // Edge-triggered, so the kick counter need not be read: one syscall
      // less per request. Every eventfd write raises a new edge; the counter
      // (2^64 - 2 at most) cannot fill in any real lifetime.
      this.#loop.watch(kickFd, () => this.#kick(index), { events: EPOLLIN | EPOLLET });
      // A kick sent before the ring was enabled must not be lost (rust-vmm/vhost#247).
      this.#kick(index);
    } else if (!live && watched) {
      this.#loop.unwatch(kickFd);
    }
  }

  #kick(index: number): void {
    const vring = this.#vrings[index];
    if (!vring.enabled || !vring.queue) return;
    // Not through #callDevice: its label and closure would be built on every kick.
    try {
      this.#device.onKick(index);
    } catch (error) {
      this.#log.error(
        `${this.#device.name}: serving queue ${index} failed: ${
          error instanceof Error ? error.stack : error
        }`,
      );
    }
  }

  #activate(): void {
    if (this.#activated) return;
    this.#activated = true;
    const context: DeviceContext = {
      log: this.#log,
      loop: this.#loop,
      queue: (index) => {
        const vring = this.#vrings[index];
        return vring?.enabled ? vring.queue : null;
      },
      memory: () => this.#memory,
      configChanged: () => this.#sendConfigChange(),
    };
    this.#callDevice("activating", () => this.#device.activate(context));
  }

  #getConfig(access: ConfigAccess): Uint8Array {
    this.#requireProtocol(P.CONFIG, "GET_CONFIG");
    const { offset, size, flags } = access;
    let data: Uint8Array;
    try {
      if (!this.#device.readConfig) {
        throw new RangeError(`${this.#device.name} has no config space`);
      }
      if (offset + size > MAX_CONFIG_SIZE) {
        throw new RangeError(`config [${offset}, +${size}) is out of range`);
      }
      data = this.#device.readConfig(offset, size);
      if (data.length !== size) {
        throw new RangeError(`device returned ${data.length} config bytes, not ${size}`);
      }
    } catch (error) {
      // An empty payload signals failure (docs GET_CONFIG).
      this.#log.error(`GET_CONFIG refused: ${error instanceof Error ? error.message : error}`);
      return encodeConfig({ offset, size: 0, flags, data: new Uint8Array(0) });
    }
    return encodeConfig({ offset, size, flags, data });
  }

  #setBackendChannel(fd: number | null): void {
    if (this.#backendChannel !== null) close(this.#backendChannel);
    this.#backendChannel = fd;
    // Never let a front-end that stopped reading stall the loop.
    if (fd !== null) setNonBlocking(fd, true);
  }

  #sendConfigChange(): void {
    const fd = this.#backendChannel;
    if (fd === null || !(this.#ackedProtocol & bit(P.CONFIG))) {
      this.#log.debug("config changed, but the front-end gave no back-end channel to say so");
      return;
    }
    try {
      const message = encodeMessage(BackendRequest.CONFIG_CHANGE_MSG, { flags: VERSION });
      if (sendWithFds(fd, message) !== message.length) {
        this.#log.warn("back-end channel full: config change not sent");
      }
    } catch (error) {
      this.#log.warn(
        `back-end channel failed, closing it: ${error instanceof Error ? error.message : error}`,
      );
      this.#setBackendChannel(null);
    }
  }

  #resetRings(): void {
    this.#vrings.forEach((vring, index) => {
      if (vring.queue) this.#stopRing(index);
      if (vring.kickFd !== null && this.#loop.watching(vring.kickFd)) {
        this.#loop.unwatch(vring.kickFd);
      }
      vring.closeFds();
      this.#vrings[index] = new Vring();
    });
  }

  #resetDevice(): void {
    if (!this.#activated) return;
    this.#activated = false;
    this.#callDevice("resetting", () => this.#device.reset());
  }

  /** Runs a device hook; a throwing device fails that step, never the daemon. */
  #callDevice(what: string, hook: () => void): void {
    try {
      hook();
    } catch (error) {
      this.#log.error(
        `${this.#device.name}: ${what} failed: ${error instanceof Error ? error.stack : error}`,
      );
    }
  }
}

/**
 * The descriptors a decoded message hands to its handler, which then owns
 * them (closing them if it refuses the message); every other attached fd is
 * closed on arrival.
 */
function ownedFds(message: FrontendMessage): number[] {
  switch (message.kind) {
    case "SET_VRING_KICK":
    case "SET_VRING_CALL":
    case "SET_VRING_ERR":
      return message.fd === null ? [] : [message.fd];
    case "SET_BACKEND_REQ_FD":
    case "ADD_MEM_REG":
      return [message.fd];
    case "SET_MEM_TABLE":
      return [...message.fds];
    default:
      return [];
  }
}

/** A short rendering of a message for debug logs. */
function describe(message: FrontendMessage): string {
  const { kind: _, ...fields } = message;
  return JSON.stringify(
    fields,
    (_key, value) => typeof value === "bigint" ? `0x${value.toString(16)}` : value,
  );
}
