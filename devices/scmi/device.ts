/**
 * The virtio SCMI device (VIRTIO 1.2 §5.21, device ID 32; QEMU's
 * vhost-user-scmi-pci supplies the ID): commands arrive on the cmdq as a
 * device-readable request and a device-writable response buffer
 * (§5.21.6.1); with VIRTIO_SCMI_F_P2A_CHANNELS the driver fills the eventq
 * with device-writable buffers that carry notifications (§5.21.6.2).
 *
 * @module
 */

import { DeferredPass } from "../../core/deferred_pass.ts";
import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import type { Logger } from "../../core/log.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import {
  type DescriptorChain,
  readSlices,
  writeSlices,
} from "../../core/virtio/descriptor_chain.ts";
import { VIRTIO_DEVICE_FEATURES } from "../../core/virtio/features.ts";
import { BaseProtocol } from "./base_protocol.ts";
import { SCMI_PROTOCOL_SENSOR } from "./message.ts";
import { ScmiPlatform } from "./platform.ts";
import type { Sensor } from "./sensor.ts";
import { SensorProtocol } from "./sensor_protocol.ts";

/** §5.21.2: the command queue (agent to platform). */
export const CMDQ = 0;
/** §5.21.2: the event queue (platform to agent notifications). */
export const EVENTQ = 1;
/** Largest queue size accepted, as upstream. */
export const QUEUE_MAX_SIZE = 1024;
/** §5.21.3: the device can send notifications on the eventq. */
export const VIRTIO_SCMI_F_P2A_CHANNELS = 0;
/** Largest request read from the cmdq: Linux's messages are at most 128 bytes of payload. */
export const MAX_REQUEST_SIZE = 4096;
/** Commands served per pass before the loop serves other fds. */
export const BUDGET = 256;

/** Options of {@link ScmiDevice}. */
export interface ScmiDeviceOptions {
  /** The host sensors (shared by connections). */
  readonly sensors: readonly Sensor[];
  /** DISCOVER_IMPLEMENTATION_VERSION's value. */
  readonly implementationVersion: number;
}

/** The SCMI device for one front-end connection. */
export class ScmiDevice implements VirtioDevice {
  readonly name = "scmi";
  readonly numQueues = 2;
  readonly maxQueueSize: number = QUEUE_MAX_SIZE;
  /** Upstream's bits: the standard ones and P2A_CHANNELS (no shared memory, bit 1). */
  readonly features: bigint = VIRTIO_DEVICE_FEATURES | bit(VIRTIO_SCMI_F_P2A_CHANNELS);
  /** MQ as upstream; REPLY_ACK and CONFIGURE_MEM_SLOTS as the other devices here. */
  readonly protocolFeatures: bigint = bit(P.MQ) | bit(P.REPLY_ACK) | bit(P.CONFIGURE_MEM_SLOTS);
  readonly #options: ScmiDeviceOptions;
  #context: DeviceContext | null = null;
  #platform: ScmiPlatform | null = null;
  #sensorProtocol: SensorProtocol | null = null;
  #p2a = false;
  readonly #pass = new DeferredPass(() => this.#serveCommands());
  #eventsRejected = 0;
  /** Bumped when the cmdq's buffers go away (ring stopped, reset): late answers are dropped. */
  #generation = 0;

  /** A device serving `options.sensors`. */
  constructor(options: ScmiDeviceOptions) {
    this.#options = options;
  }

  acknowledgeFeatures(features: bigint): void {
    this.#p2a = (features & bit(VIRTIO_SCMI_F_P2A_CHANNELS)) !== 0n;
  }

  activate(context: DeviceContext): void {
    this.#context = context;
    this.#generation++;
    this.#sensorProtocol?.close();
    this.#sensorProtocol = new SensorProtocol({
      sensors: this.#options.sensors,
      log: context.log,
      scheduler: context.loop,
      notify: (message) => this.#notify(message),
    });
    const base = new BaseProtocol({
      protocols: [SCMI_PROTOCOL_SENSOR],
      implementationVersion: this.#options.implementationVersion,
    });
    this.#platform = new ScmiPlatform([base, this.#sensorProtocol], { log: context.log });
  }

  onKick(queue: number): void {
    // Eventq buffers wait in the ring until a notification takes one.
    if (queue === CMDQ) this.#serveCommands();
  }

  queueStopped(queue: number): void {
    if (queue === CMDQ) this.#generation++;
  }

  reset(): void {
    this.#generation++;
    this.#sensorProtocol?.close();
    this.#sensorProtocol = null;
    this.#platform = null;
    this.#context = null;
    this.#p2a = false;
  }

  #serveCommands(): void {
    const context = this.#context;
    const platform = this.#platform;
    const queue = context?.queue(CMDQ);
    if (!context || !platform || !queue) return;
    let served = 0;
    do {
      queue.disableNotification();
      for (let chain = queue.next(); chain !== null; chain = queue.next()) {
        // §5.21.6.1: the request is device-readable, the response device-writable.
        const request = readSlices(chain.readable, {
          length: Math.min(chain.readableLength, MAX_REQUEST_SIZE),
        });
        const response = platform.handle(request, chain.writableLength);
        if (response instanceof Promise) {
          this.#answerLater(context, chain, response);
        } else {
          queue.addUsed(chain.head, response === null ? 0 : writeSlices(chain.writable, response));
        }
        // A guest that keeps the ring full gets its turn, then the other fds theirs.
        if (++served >= BUDGET && queue.hasAvailable()) {
          queue.notify();
          this.#pass.schedule(context.loop);
          return;
        }
      }
    } while (queue.enableNotification());
    queue.notify();
  }

  /**
   * Returns `chain` when its answer, waiting for host I/O, is ready; other
   * commands are served meanwhile (the used ring may be out of order,
   * §2.7.8; Linux matches responses by their header's token).
   */
  #answerLater(
    context: DeviceContext,
    chain: DescriptorChain,
    response: Promise<Uint8Array | null>,
  ): void {
    const generation = this.#generation;
    void context.loop.track(response).then((bytes) => {
      // The ring stopped or the connection ended meanwhile: its buffers are gone.
      // A ring rebuilt over a new memory table is the same ring: answer there.
      const current = context.queue(CMDQ);
      if (generation !== this.#generation || !current) return;
      current.addUsed(chain.head, bytes === null ? 0 : writeSlices(chain.writable, bytes));
      current.notify();
    });
  }

  /** Puts a notification in the next eventq buffer; false when there is none (§5.21.6.2). */
  #notify(message: Uint8Array): boolean {
    const context = this.#context;
    const queue = this.#p2a ? context?.queue(EVENTQ) : null;
    if (!context || !queue) return false;
    for (let chain = queue.next(); chain !== null; chain = queue.next()) {
      if (chain.readable.length > 0 || chain.writableLength < message.length) {
        this.#rejectEvent(context.log, chain.head, chain.writableLength, message.length);
        queue.addUsed(chain.head, 0);
        continue;
      }
      queue.addUsed(chain.head, writeSlices(chain.writable, message));
      queue.notify();
      return true;
    }
    queue.notify();
    return false;
  }

  #rejectEvent(log: Logger, head: number, room: number, needed: number): void {
    this.#eventsRejected++;
    const message = `eventq buffer at head ${head} rejected: it must be ${needed}+ ` +
      `device-writable bytes only, has ${room} writable (§5.21.6.2)`;
    if (this.#eventsRejected <= 10) log.warn(message);
    else log.debug(message);
  }
}
