/**
 * Runs the real `vhost-device-scsi` process for integration tests,
 * end-to-end tests and the benchmark, and drives it as a guest's
 * virtio-scsi driver would through the TypeScript front-end.
 *
 * @module
 */

import { bit } from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import { DaemonProcess } from "../../tests/integration/daemon_process.ts";
import {
  DriverMemory,
  DriverQueue,
  type UsedBuffer,
  VhostUserFrontend,
} from "../../frontend/mod.ts";
import { REQUEST_HEADER_SIZE, RESPONSE_HEADER_SIZE } from "./virtio_scsi.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running scsi daemon and its socket. */
export type ScsiDaemonProcess = DaemonProcess & {
  /** The vhost-user socket. */
  readonly socket: string;
};

/**
 * Starts `deno run -A devices/scsi/main.ts -s <tmp>/scsi.sock <args>` at log
 * level info (`args` ends with the images) and waits until it listens.
 * `main` runs another checkout's `devices/scsi/main.ts` instead (a benchmark's
 * before/after).
 */
export async function startScsiDaemon(
  args: readonly string[],
  options: { main?: string } = {},
): Promise<ScsiDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "scsi-" });
  const socket = `${dir}/scsi.sock`;
  const daemon = await DaemonProcess.start(options.main ?? MAIN, {
    args: ["-s", socket, "--log-level", "info", ...args],
    tempDir: dir,
    listening: 1,
  });
  return Object.assign(daemon, { socket });
}

/** The features a Linux guest acks. */
export const GUEST_FEATURES: bigint = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) |
  bit(VIRTIO_RING_F_EVENT_IDX);

/** A command as a test sends it. */
export interface TestCommand {
  /** CDB bytes (padded to 32). */
  readonly cdb: readonly number[];
  /** LUN (default 0). */
  readonly lun?: number;
  /** Target (default 0). */
  readonly target?: number;
  /** The whole 8-byte LUN field, overriding `lun` and `target`. */
  readonly lunField?: readonly number[];
  /** Data-out bytes. */
  readonly dataOut?: Uint8Array;
  /** Data-in buffer size. */
  readonly dataIn?: number;
  /** Request queue (default the first, vring 2). */
  readonly queue?: number;
  /** The request's tag. */
  readonly id?: bigint;
}

/** A decoded `virtio_scsi_resp_cmd` with its data-in bytes. */
export interface TestResponse {
  /** Used length. */
  readonly length: number;
  /** §5.6.6.1 response. */
  readonly response: number;
  /** SCSI status. */
  readonly status: number;
  /** residual. */
  readonly residual: number;
  /** Sense bytes (sense_len of them). */
  readonly sense: Uint8Array;
  /** Sense key, ASC, ASCQ from fixed-format sense, or null without sense. */
  readonly senseCode: readonly [number, number, number] | null;
  /** Data-in bytes written (used length minus the header). */
  readonly data: Uint8Array;
}

/** The request header bytes of `command`. */
export function requestBytes(command: TestCommand): Uint8Array {
  const header = new Uint8Array(REQUEST_HEADER_SIZE);
  const lun = command.lun ?? 0;
  header.set(
    command.lunField ?? [1, command.target ?? 0, lun < 256 ? 0 : 0x40 | (lun >> 8), lun & 0xff],
  );
  new DataView(header.buffer).setBigUint64(8, command.id ?? 0n, true);
  header.set(command.cdb, 19);
  return command.dataOut ? concat(header, command.dataOut) : header;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Decodes a used buffer of a command. */
export function decodeResponse(used: UsedBuffer): TestResponse {
  const d = used.data;
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const senseLength = view.getUint32(0, true);
  const sense = d.slice(12, 12 + Math.min(senseLength, 96));
  return {
    length: used.length,
    response: d[11],
    status: d[10],
    residual: view.getUint32(4, true),
    sense,
    senseCode: sense.length >= 14 ? [sense[2] & 0xf, sense[12], sense[13]] : null,
    data: d.slice(RESPONSE_HEADER_SIZE, Math.max(used.length, RESPONSE_HEADER_SIZE)),
  };
}

/** A connected front-end with the control, event and `requestQueues` request queues. */
export class ScsiSession {
  /** The front-end. */
  readonly frontend: VhostUserFrontend;
  /** Guest RAM. */
  readonly memory: DriverMemory;
  /** Queues by vring index. */
  readonly queues: DriverQueue[];

  private constructor(frontend: VhostUserFrontend, memory: DriverMemory, queues: DriverQueue[]) {
    this.frontend = frontend;
    this.memory = memory;
    this.queues = queues;
  }

  /**
   * Connects to `socket` and starts 2 + `requestQueues` queues of `size`.
   * The unit attention each LUN reports after the power on is consumed
   * (a TEST UNIT READY per LUN, as Linux's disk probe sends) unless
   * `keepUnitAttention`.
   */
  static async connect(
    socket: string,
    options: {
      requestQueues?: number;
      size?: number;
      memoryMiB?: number;
      keepUnitAttention?: boolean;
    } = {},
  ): Promise<ScsiSession> {
    const frontend = await VhostUserFrontend.connect(socket);
    const memory = new DriverMemory({ size: (options.memoryMiB ?? 64) << 20 });
    const count = 2 + (options.requestQueues ?? 1);
    const queues = Array.from(
      { length: count },
      () => new DriverQueue(memory, { size: options.size ?? 128, eventIdx: true }),
    );
    frontend.init({ queueCount: count });
    frontend.start({ memory, queues, features: GUEST_FEATURES });
    const session = new ScsiSession(frontend, memory, queues);
    if (!options.keepUnitAttention) session.clearUnitAttention();
    return session;
  }

  /** Sends TEST UNIT READY to every LUN REPORT LUNS lists: each reports its unit attention, if any. */
  clearUnitAttention(): void {
    const report = this.run({ cdb: [0xa0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 0, 0], dataIn: 2056 });
    for (let at = 8; at + 8 <= report.data.length; at += 8) {
      const lun = ((report.data[at] & 0x3f) << 8) | report.data[at + 1];
      this.run({ cdb: [0x00, 0, 0, 0, 0, 0], lun });
    }
  }

  /** Adds `command` to its queue without kicking; returns the head. */
  add(command: TestCommand): number {
    const queue = this.queues[command.queue ?? 2];
    return queue.add({
      readable: [requestBytes(command)],
      writable: [RESPONSE_HEADER_SIZE + (command.dataIn ?? 0)],
    });
  }

  /** Publishes and kicks queue `q` if the device asks for it. */
  kick(q = 2): void {
    const queue = this.queues[q];
    queue.publish();
    if (queue.needsKick()) this.frontend.kick(q);
  }

  /** Waits for `count` used buffers on queue `q`. */
  collect(q: number, count: number, timeoutMs = 10_000): UsedBuffer[] {
    const out: UsedBuffer[] = [];
    const deadline = performance.now() + timeoutMs;
    while (out.length < count) {
      out.push(...this.queues[q].takeUsed());
      if (out.length >= count) break;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`queue ${q}: ${out.length} of ${count} requests came back`);
      this.frontend.waitForCall(q, left);
    }
    return out;
  }

  /** Sends one command and waits for its response. */
  run(command: TestCommand): TestResponse {
    this.add(command);
    this.kick(command.queue ?? 2);
    return decodeResponse(this.collect(command.queue ?? 2, 1)[0]);
  }

  /** Closes the connection and frees guest RAM. */
  close(): void {
    this.frontend.close();
    this.memory.close();
  }
}
