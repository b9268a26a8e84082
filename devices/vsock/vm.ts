/**
 * One VM of the daemon: its configuration, its host side (which outlives
 * front-end connections: host programs may connect while QEMU is away and
 * are turned away), its place in the sibling registry, and the device of
 * the current front-end connection.
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import type { VmConfig } from "./config.ts";
import { VsockDevice } from "./device.ts";
import type { HostBackend } from "./host.ts";
import { LogLimiter } from "./log_limiter.ts";
import { describeHeader, VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_OP_RST } from "./packet.ts";
import type { CidRegistry, SiblingPacket, VsockPeer } from "./registry.ts";
import { resetFor, SiblingFlows } from "./sibling_flows.ts";
import { UnixHostBackend } from "./uds_backend.ts";
import { VsockHostBackend } from "./vsock_backend.ts";

/** Options of {@link VsockVm}. */
export interface VsockVmOptions {
  /** The daemon's event loop. */
  readonly loop: EventLoop;
  /** The VM's logger. */
  readonly log: Logger;
  /** The process-wide CID map. */
  readonly registry: CidRegistry;
  /** A host side to use instead of the one the config names (tests). */
  readonly backend?: HostBackend;
}

/** Builds the host side a VM's config names. */
export function createBackend(
  config: VmConfig,
  options: { loop: EventLoop; log: Logger },
): HostBackend {
  const backend = config.backend;
  if (backend.kind === "unix") {
    return new UnixHostBackend(backend.udsPath, { ...options, seqpacket: config.seqpacket });
  }
  return new VsockHostBackend({
    forwardCid: backend.forwardCid,
    listenPorts: backend.forwardListen,
    seqpacketPorts: backend.forwardListenSeqpacket,
  }, options);
}

/** One VM served by the daemon. */
export class VsockVm implements VsockPeer {
  /** Its configuration. */
  readonly config: VmConfig;
  /** The guest CID. */
  readonly cid: number;
  /** Its sibling groups. */
  readonly groups: ReadonlySet<string>;
  readonly #backend: HostBackend;
  readonly #registry: CidRegistry;
  readonly #log: Logger;
  readonly #limited: LogLimiter;
  readonly #flows = new SiblingFlows();
  #device: VsockDevice | null = null;
  #started = false;

  /** A VM for `config`; nothing is bound until {@link start}. */
  constructor(config: VmConfig, options: VsockVmOptions) {
    this.config = config;
    this.cid = config.guestCid;
    this.groups = new Set(config.groups);
    this.#registry = options.registry;
    this.#log = options.log;
    this.#limited = new LogLimiter(options.log);
    this.#backend = options.backend ?? createBackend(config, options);
  }

  /** Joins the CID registry and starts the host side. */
  start(): void {
    this.#registry.add(this);
    this.#started = true;
    this.#backend.start((stream, port) => this.#device?.hostConnect(stream, port) ?? false);
    this.#log.info(
      `guest CID ${this.cid}: vhost-user socket ${this.config.socket}, host side ${this.#backend.description}, ` +
        `groups ${[...this.groups].join("+")}`,
    );
  }

  /** A device for a new front-end connection (the previous one was reset by the core). */
  createDevice(): VsockDevice {
    this.#device = new VsockDevice({
      guestCid: this.cid,
      queueSize: this.config.queueSize,
      txBufferSize: this.config.txBufferSize,
      seqpacket: this.config.seqpacket,
      backend: this.#backend,
      route: (packet) => this.#route(packet),
      detached: () => this.#detached(),
    });
    return this.#device;
  }

  deliver(packet: SiblingPacket): boolean {
    const delivered = this.#device?.deliverSibling(packet) ?? false;
    if (delivered) this.#flows.received(packet.header);
    return delivered;
  }

  /** Leaves the registry and closes the host side; `unwatch: false` once the loop is closed. */
  close(options: { unwatch?: boolean } = {}): void {
    if (!this.#started) return;
    this.#started = false;
    this.#registry.remove(this.cid);
    this.#backend.close(options);
  }

  /** The guest is gone: its sibling peers get the RSTs it can no longer send. */
  #detached(): void {
    const resets = this.#flows.takeResets();
    if (resets.length > 0) {
      this.#log.info(`guest CID ${this.cid} left: resetting ${resets.length} sibling connections`);
    }
    for (const header of resets) {
      this.#registry.route(this, { header, payload: new Uint8Array(0) });
    }
  }

  #route(packet: SiblingPacket): void {
    const outcome = this.#registry.route(this, packet);
    if (outcome === "delivered") {
      this.#flows.sent(packet.header);
      return;
    }
    // Refuse at once what cannot be delivered, as a host without a listener
    // would, rather than let the guest's connect time out (upstream drops it).
    const op = packet.header.op;
    if (op !== VIRTIO_VSOCK_OP_RST && (outcome !== "dropped" || op === VIRTIO_VSOCK_OP_REQUEST)) {
      this.#device?.deliverSibling({ header: resetFor(packet.header), payload: new Uint8Array(0) });
    }
    if (outcome === "unknown-cid") {
      this.#limited.warn(
        "unknown-cid",
        `dropping a packet for unknown CID ${packet.header.dstCid}: ${
          describeHeader(packet.header)
        }`,
      );
    } else if (outcome === "no-shared-group") {
      this.#limited.info(
        "group",
        `dropping a packet for CID ${packet.header.dstCid}: no shared group: ${
          describeHeader(packet.header)
        }`,
      );
    } else if (outcome === "dropped") {
      this.#limited.info(
        "sibling-down",
        `dropping a packet for CID ${packet.header.dstCid}: its guest is not attached or is full`,
      );
    }
  }
}
