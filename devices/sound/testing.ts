/**
 * Runs the real `vhost-device-sound` process for integration tests,
 * end-to-end tests and the benchmark, and drives it as a guest driver would
 * through the TypeScript front-end.
 *
 * @module
 */

import { bit } from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import {
  type Chain,
  DriverMemory,
  DriverQueue,
  type UsedBuffer,
  VhostUserFrontend,
} from "../../frontend/mod.ts";
import { DaemonProcess } from "../../tests/integration/daemon_process.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running sound daemon that knows its socket. */
export type SoundDaemonProcess = DaemonProcess & {
  /** The vhost-user socket. */
  readonly socket: string;
  /** A temporary directory for the test's files, removed with the daemon. */
  readonly dir: string;
};

/**
 * Starts `deno run -A devices/sound/main.ts --socket <tmp>/snd.sock <args>`
 * at log level debug and waits until it listens. `args` may name files in
 * `dir` by writing `{dir}`; `env` adds environment variables.
 */
export async function startSoundDaemon(
  args: readonly string[],
  options: { dir?: string; env?: Record<string, string> } = {},
): Promise<SoundDaemonProcess> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "sound-" });
  const socket = `${dir}/snd.sock`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: [
      "--socket",
      socket,
      "--log-level",
      "debug",
      ...args.map((a) => a.replaceAll("{dir}", dir)),
    ],
    tempDir: dir,
    env: options.env,
    listening: 1,
  });
  return Object.assign(daemon, { socket, dir });
}

/** The features a guest acks. */
export const GUEST_FEATURES: bigint = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_NOTIFY_ON_EMPTY) |
  bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX);

/** A driver with the four sound queues started. */
export class SoundDriver {
  /** The front-end connection. */
  readonly frontend: VhostUserFrontend;
  /** Guest RAM. */
  readonly memory: DriverMemory;
  /** controlq, eventq, txq, rxq. */
  readonly queues: readonly DriverQueue[];

  private constructor(frontend: VhostUserFrontend, memory: DriverMemory, queues: DriverQueue[]) {
    this.frontend = frontend;
    this.memory = memory;
    this.queues = queues;
  }

  /** Connects to `socket` and starts every queue (size 64 each). */
  static async connect(socket: string): Promise<SoundDriver> {
    const frontend = await VhostUserFrontend.connect(socket);
    const memory = new DriverMemory({ size: 16 << 20 });
    const queues = [0, 1, 2, 3].map(() => new DriverQueue(memory, { size: 64, eventIdx: true }));
    frontend.init();
    frontend.start({ memory, queues, features: GUEST_FEATURES });
    return new SoundDriver(frontend, memory, queues);
  }

  /** Adds chains to queue `q`, publishes them and kicks if the device asks. */
  submit(q: number, ...chains: Chain[]): void {
    for (const chain of chains) this.queues[q].add(chain);
    this.queues[q].publish();
    if (this.queues[q].needsKick()) this.frontend.kick(q);
  }

  /** Waits up to `timeoutMs` until `count` chains came back on queue `q`. */
  collect(q: number, count: number, timeoutMs = 5000): UsedBuffer[] {
    const out: UsedBuffer[] = [];
    const deadline = performance.now() + timeoutMs;
    while (out.length < count) {
      out.push(...this.queues[q].takeUsed());
      if (out.length >= count) break;
      const left = deadline - performance.now();
      if (left <= 0) break;
      this.frontend.waitForCall(q, Math.min(left, 50));
    }
    return out;
  }

  /** Sends a control request and returns the response (`size` writable bytes). */
  control(request: Uint8Array, size = 4): Uint8Array {
    this.submit(0, { readable: [request], writable: [size] });
    const [used] = this.collect(0, 1);
    if (!used) throw new Error("control request not answered");
    return used.data;
  }

  /** Disconnects and frees guest RAM. */
  close(): void {
    this.frontend.close();
    this.memory.close();
  }
}

/** Little-endian u32s as bytes. */
export function u32s(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint32(i * 4, v, true));
  return out;
}

/** The status (first u32) of a response. */
export function statusOf(response: Uint8Array): number {
  return new DataView(response.buffer, response.byteOffset, response.byteLength).getUint32(0, true);
}

/** A SET_PARAMS request (§5.14.6.6.3). */
export function setParamsRequest(
  streamId: number,
  p: {
    bufferBytes: number;
    periodBytes: number;
    features?: number;
    channels: number;
    format: number;
    rate: number;
  },
): Uint8Array {
  const out = new Uint8Array(24);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0x0101, true);
  view.setUint32(4, streamId, true);
  view.setUint32(8, p.bufferBytes, true);
  view.setUint32(12, p.periodBytes, true);
  view.setUint32(16, p.features ?? 0, true);
  out[20] = p.channels;
  out[21] = p.format;
  out[22] = p.rate;
  return out;
}
