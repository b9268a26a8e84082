/**
 * Runs the real `vhost-device-i2c` process for integration tests,
 * end-to-end tests and the benchmark, and drives it as Linux's i2c-virtio
 * does through the TypeScript front-end.
 *
 * @module
 */

import { bit } from "../../core/protocol/constants.ts";
import {
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
import {
  VIRTIO_I2C_F_ZERO_LENGTH_REQUEST,
  VIRTIO_I2C_FLAGS_FAIL_NEXT,
  VIRTIO_I2C_FLAGS_M_RD,
} from "./request.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running i2c daemon: a {@link DaemonProcess} that knows its sockets. */
export type I2cDaemonProcess = DaemonProcess & {
  /** The `--socket-path` prefix; instance `i` listens on `${socketPrefix}${i}`. */
  readonly socketPrefix: string;
};

/**
 * Starts `deno run -A devices/i2c/main.ts -s <tmp>/i2c.sock <args>` at log
 * level debug and waits until every socket listens (`socketCount`, default
 * 1; `timeoutMs`, default 10 s). Stopping it removes the temporary directory.
 */
export async function startI2cDaemon(
  args: readonly string[],
  options: { socketCount?: number; logLevel?: string; timeoutMs?: number } = {},
): Promise<I2cDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "i2c-" });
  const socketPrefix = `${dir}/i2c.sock`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: ["-s", socketPrefix, "--log-level", options.logLevel ?? "debug", ...args],
    tempDir: dir,
    listening: options.socketCount ?? 1,
    startTimeoutMs: options.timeoutMs,
  });
  return Object.assign(daemon, { socketPrefix });
}

/** The virtio features a Linux guest accepts from this device. */
export const DRIVER_FEATURES: bigint = bit(VIRTIO_F_VERSION_1) |
  bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) |
  bit(VIRTIO_I2C_F_ZERO_LENGTH_REQUEST);

/** One message of a transfer, as a `struct i2c_msg`. */
export interface Msg {
  /** 7-bit client address. */
  readonly address: number;
  /** Bytes to write (a write message). */
  readonly write?: readonly number[];
  /** Bytes to read (a read message). */
  readonly read?: number;
}

/** A `struct virtio_i2c_out_hdr`. */
export function outHeader(addr: number, flags: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, addr, true);
  view.setUint32(4, flags, true);
  return out;
}

/** The chains of one `i2c_transfer`, as Linux's `virtio_i2c_prepare_reqs` builds them. */
export function transferChains(messages: readonly Msg[]): Chain[] {
  return messages.map((m, i) => {
    const read = m.read !== undefined;
    const flags = (read ? VIRTIO_I2C_FLAGS_M_RD : 0) |
      (i < messages.length - 1 ? VIRTIO_I2C_FLAGS_FAIL_NEXT : 0);
    const hdr = outHeader(m.address << 1, flags);
    if (read) return { readable: [hdr], writable: m.read ? [m.read, 1] : [1] };
    const data = Uint8Array.from(m.write ?? []);
    return { readable: data.length ? [hdr, data] : [hdr], writable: [1] };
  });
}

/** One request's outcome: its status byte, the bytes read, the used length. */
export interface MsgResult {
  /** VIRTIO_I2C_MSG_OK or VIRTIO_I2C_MSG_ERR. */
  readonly status: number;
  /** The bytes before the status (a read's buffer). */
  readonly data: number[];
  /** The used length the device reported. */
  readonly length: number;
}

/** A driver of the daemon over the TypeScript front-end, as Linux's i2c-virtio drives it. */
export interface I2cSession {
  /** The features and protocol features negotiated. */
  readonly init: ReturnType<VhostUserFrontend["init"]>;
  /** Submits chains, kicks once, returns them used, in order (asserts all came back). */
  run(chains: Chain[]): UsedBuffer[];
  /** Runs one combined transfer; one result per message. */
  xfer(...messages: Msg[]): MsgResult[];
  /** Hangs up and frees the guest memory. */
  close(): void;
}

/** Connects to `socket` and sets up one 256-entry request queue with {@link DRIVER_FEATURES}. */
export async function i2cSession(socket: string): Promise<I2cSession> {
  const frontend = await VhostUserFrontend.connect(socket);
  const memory = new DriverMemory({ size: 4 << 20 });
  const queue = new DriverQueue(memory, { size: 256, eventIdx: true });
  const init = frontend.init();
  frontend.start({ memory, queues: [queue], features: DRIVER_FEATURES });
  const collect = (count: number, timeoutMs: number): UsedBuffer[] => {
    const out: UsedBuffer[] = [];
    const deadline = performance.now() + timeoutMs;
    while (out.length < count) {
      out.push(...queue.takeUsed());
      if (out.length >= count) break;
      const left = deadline - performance.now();
      if (left <= 0 || !frontend.waitForCall(0, left)) break;
    }
    return out;
  };
  const run = (chains: Chain[]): UsedBuffer[] => {
    for (const chain of chains) queue.add(chain);
    queue.publish();
    if (queue.needsKick()) frontend.kick(0);
    const used = collect(chains.length, 10_000);
    if (used.length !== chains.length) {
      throw new Error(`${used.length} of ${chains.length} chains came back`);
    }
    return used;
  };
  return {
    init,
    run,
    xfer: (...messages: Msg[]): MsgResult[] =>
      run(transferChains(messages)).map((u) => ({
        status: u.data[u.length - 1],
        data: [...u.data.subarray(0, u.length - 1)],
        length: u.length,
      })),
    close(): void {
      frontend.close();
      memory.close();
    },
  };
}
