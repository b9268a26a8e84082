/**
 * A test device: it echoes each request's readable bytes into its writable
 * buffers, or fills a write-only request with 0xEC bytes. Its 8-byte config
 * space is `le32 served` (read-only) and `le32 scratch` (writable; a write
 * raises a config-change notification). It has no virtio spec chapter: it
 * exists to drive the core through real sockets and rings.
 *
 * @module
 */

import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import {
  type DescriptorChain,
  readSlices,
  writeSlices,
} from "../../core/virtio/descriptor_chain.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import { serveAvailable } from "../../core/virtio/split_queue.ts";

/** Chains served per pass before other fds get a turn. */
export const BUDGET = 256;

/** Byte written into write-only requests. */
export const FILL_BYTE = 0xec;

/** The echo device. */
export class EchoDevice implements VirtioDevice {
  readonly name = "echo";
  readonly numQueues: number;
  readonly maxQueueSize = 1024;
  readonly features: bigint = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) |
    bit(VIRTIO_RING_F_EVENT_IDX);
  readonly protocolFeatures: bigint = bit(P.MQ) | bit(P.REPLY_ACK) | bit(P.CONFIG) |
    bit(P.BACKEND_REQ) |
    bit(P.CONFIGURE_MEM_SLOTS) | bit(P.RESET_DEVICE) | bit(P.STATUS);
  readonly #config = new DataView(new ArrayBuffer(8));
  #context: DeviceContext | null = null;
  #fill = new Uint8Array(0);

  /** An echo device with `queues` request queues. */
  constructor(queues = 1) {
    this.numQueues = queues;
  }

  activate(context: DeviceContext): void {
    this.#context = context;
  }

  readConfig(offset: number, length: number): Uint8Array {
    if (offset + length > 8) {
      throw new RangeError(`config [${offset}, +${length}) is outside 8 bytes`);
    }
    return new Uint8Array(this.#config.buffer.slice(offset, offset + length));
  }

  writeConfig(offset: number, data: Uint8Array): void {
    if (offset < 4 || offset + data.length > 8) {
      throw new RangeError(`config [${offset}, +${data.length}) is read-only`);
    }
    new Uint8Array(this.#config.buffer).set(data, offset);
    this.#context?.configChanged();
  }

  onKick(index: number): void {
    const queue = this.#context?.queue(index);
    if (!queue) return;
    const pass = serveAvailable(queue, (chain) => this.#echo(chain), { budget: BUDGET });
    this.#config.setUint32(0, this.#config.getUint32(0, true) + pass.served, true);
    if (pass.more) this.#context?.loop.defer(() => this.onKick(index));
  }

  reset(): void {
    this.#context = null;
  }

  #echo(chain: DescriptorChain): number {
    if (chain.readableLength === 0) {
      if (this.#fill.length < chain.writableLength) {
        this.#fill = new Uint8Array(chain.writableLength).fill(FILL_BYTE);
      }
      return writeSlices(chain.writable, this.#fill.subarray(0, chain.writableLength));
    }
    const length = Math.min(chain.readableLength, chain.writableLength);
    return writeSlices(chain.writable, readSlices(chain.readable, { length }));
  }
}
