/**
 * Runs the real `vhost-device-gpio` process for integration tests,
 * end-to-end tests and the benchmark, and talks to its simulated chips'
 * control socket.
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
  type InitResult,
  type UsedBuffer,
  VhostUserFrontend,
} from "../../tests/frontend/mod.ts";
import { DaemonProcess } from "../../tests/integration/daemon_process.ts";
import { IRQ_RESPONSE_SIZE, RESPONSE_SIZE, VIRTIO_GPIO_F_IRQ } from "./protocol.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running gpio daemon: a {@link DaemonProcess} that knows its sockets. */
export type GpioDaemonProcess = DaemonProcess & {
  /** The `--socket-path` prefix; instance `i` listens on `${socketPrefix}${i}`. */
  readonly socketPrefix: string;
  /** The `--sim-control` socket. */
  readonly controlPath: string;
};

/**
 * Starts `deno run -A devices/gpio/main.ts -s <tmp>/gpio.sock --sim-control
 * <tmp>/sim.sock -l <deviceList> <args>` at log level info (or the one in
 * `args`) and waits until every socket exists (it listens). Stopping it removes the
 * temporary directory.
 */
export async function startGpioDaemon(
  deviceList: string,
  options: { args?: readonly string[]; cpu?: number } = {},
): Promise<GpioDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "gpio-" });
  const socketPrefix = `${dir}/gpio.sock`;
  const controlPath = `${dir}/sim.sock`;
  const count = deviceList.split(":").length;
  const args = options.args ?? [];
  const simulated = deviceList.includes("s");
  const sockets = Array.from({ length: count }, (_, i) => `${socketPrefix}${i}`);
  const daemon = await DaemonProcess.start(MAIN, {
    args: [
      "-s",
      socketPrefix,
      "-c",
      String(count),
      "-l",
      deviceList,
      ...(simulated ? ["--sim-control", controlPath] : []),
      ...(args.includes("--log-level") ? [] : ["--log-level", "info"]),
      ...args,
    ],
    waitFor: [...(simulated ? [controlPath] : []), ...sockets],
    // Generous: the first `deno run` inside a TCG guest takes seconds.
    startTimeoutMs: 60_000,
    tempDir: dir,
    cpu: options.cpu,
  });
  return Object.assign(daemon, { socketPrefix, controlPath });
}

/** A connection to the simulated chips' control socket (see `control.ts`). */
export class SimControl implements AsyncDisposable {
  readonly #conn: Deno.UnixConn;
  readonly #lines: AsyncIterator<string>;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#lines = readLines(conn)[Symbol.asyncIterator]();
  }

  /** Connects to the control socket at `path`. */
  static async connect(path: string): Promise<SimControl> {
    return new SimControl(await Deno.connect({ transport: "unix", path }));
  }

  /** Sends commands (one write) and returns their reply lines. */
  async send(...commands: string[]): Promise<string[]> {
    await writeAll(this.#conn, new TextEncoder().encode(commands.map((c) => c + "\n").join("")));
    const replies: string[] = [];
    for (let i = 0; i < commands.length; i++) {
      const next = await this.#lines.next();
      if (next.done) throw new Error("the control socket closed");
      replies.push(next.value);
    }
    return replies;
  }

  /** Drives line `line` of chip `chip` to `level`; throws unless the reply is `ok`. */
  async set(chip: number, line: number, level: 0 | 1): Promise<void> {
    const [reply] = await this.send(`set ${chip} ${line} ${level}`);
    if (reply !== "ok") throw new Error(`set ${chip} ${line} ${level}: ${reply}`);
  }

  /** The line's `{ value, direction, edges }` as the control socket reports it. */
  async get(
    chip: number,
    line: number,
  ): Promise<{ value: number; direction: string; edges: string }> {
    const [reply] = await this.send(`get ${chip} ${line}`);
    const [value, direction, edges] = reply.split(" ");
    if (value === "error") throw new Error(`get ${chip} ${line}: ${reply}`);
    return { value: Number(value), direction, edges };
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Closes the connection. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

async function writeAll(conn: Deno.UnixConn, bytes: Uint8Array): Promise<void> {
  let sent = 0;
  while (sent < bytes.length) sent += await conn.write(bytes.subarray(sent));
}

async function* readLines(conn: Deno.UnixConn): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(4096);
  let pending = "";
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return;
    pending += decoder.decode(buffer.subarray(0, n), { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
    }
  }
}

/** The features Linux's gpio-virtio driver acks (all the device offers). */
export const GPIO_DRIVER_FEATURES: bigint = bit(VIRTIO_F_VERSION_1) |
  bit(VIRTIO_F_NOTIFY_ON_EMPTY) | bit(VIRTIO_RING_F_INDIRECT_DESC) |
  bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_GPIO_F_IRQ);

/** A `struct virtio_gpio_request` (§5.17.6). */
export function encodeRequest(type: number, gpio: number, value = 0): Uint8Array {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, type, true);
  view.setUint16(2, gpio, true);
  view.setUint32(4, value >>> 0, true);
  return bytes;
}

/**
 * A driver of the gpio device over the TypeScript vhost-user front-end, as
 * Linux's gpio-virtio drives it: requests on queue 0, one eventq buffer per
 * unmasked line on queue 1. Waits block (the daemon is another process).
 */
export class GpioDriver {
  /** The vhost-user front-end. */
  readonly frontend: VhostUserFrontend;
  /** What the connect-time negotiation learned. */
  readonly init: InitResult;
  readonly #memory: DriverMemory;
  readonly #queues: [DriverQueue, DriverQueue];
  readonly #features: bigint;
  /** Line (or tag) → eventq head of the buffer armed for it. */
  readonly #armed = new Map<number, number>();

  private constructor(
    frontend: VhostUserFrontend,
    options: {
      memory: DriverMemory;
      queues: [DriverQueue, DriverQueue];
      init: InitResult;
      features: bigint;
    },
  ) {
    this.frontend = frontend;
    this.#features = options.features;
    this.#memory = options.memory;
    this.#queues = options.queues;
    this.init = options.init;
  }

  /** Connects to `socket` and starts both queues with `features` (default {@link GPIO_DRIVER_FEATURES}). */
  static async connect(socket: string, options: { features?: bigint } = {}): Promise<GpioDriver> {
    const frontend = await VhostUserFrontend.connect(socket);
    const memory = new DriverMemory({ size: 4 << 20 });
    const queues: [DriverQueue, DriverQueue] = [
      new DriverQueue(memory, { size: 256, eventIdx: true }),
      new DriverQueue(memory, { size: 256, eventIdx: true }),
    ];
    const init = frontend.init();
    const features = options.features ?? GPIO_DRIVER_FEATURES;
    frontend.start({ memory, queues, features });
    return new GpioDriver(frontend, { memory, queues, init, features });
  }

  /** Sends one requestq chain and waits for it to come back. */
  call(chain: Chain): UsedBuffer {
    this.#submit(0, chain);
    const [used] = this.#collect(0, 1);
    if (!used) throw new Error("the request did not come back in time");
    return used;
  }

  /** A well-formed request with a 2-byte response; returns `[status, value]`. */
  ask(type: number, gpio: number, value = 0): [number, number] {
    const used = this.call({ readable: [encodeRequest(type, gpio, value)], writable: [2] });
    if (used.length !== RESPONSE_SIZE) {
      throw new Error(`a response of ${used.length} bytes, not ${RESPONSE_SIZE} (§5.17.6)`);
    }
    return [used.data[0], used.data[1]];
  }

  /** Queues an eventq buffer for `gpio` (unmasks its interrupt); returns its head. */
  arm(gpio: number): number {
    return this.armChain(
      { readable: [Uint8Array.of(gpio & 0xff, gpio >> 8)], writable: [1] },
      gpio,
    );
  }

  /** Queues a hand-made eventq chain, reported as `tag` by {@link events}. */
  armChain(chain: Chain, tag: number): number {
    const head = this.#submit(1, chain);
    // A returned head is reused by the next chain: forget whoever had it.
    for (const [other, h] of this.#armed) if (h === head) this.#armed.delete(other);
    this.#armed.set(tag, head);
    return head;
  }

  /** The next `count` eventq buffers back, unchecked. Throws if they do not come. */
  eventsRaw(count: number, options: { timeoutMs?: number } = {}): UsedBuffer[] {
    const used = this.#collect(1, count, options.timeoutMs);
    if (used.length !== count) {
      throw new Error(`${used.length} of ${count} eventq buffer(s) came back in time`);
    }
    return used;
  }

  /** The next `count` eventq buffers back, as `[line or tag, status]`. */
  events(count: number, options: { timeoutMs?: number } = {}): [number, number][] {
    return this.eventsRaw(count, options).map((used) => {
      if (used.length !== IRQ_RESPONSE_SIZE) {
        throw new Error(`an irq response of ${used.length} bytes, not 1 (§5.17.7)`);
      }
      const tag = [...this.#armed].find(([, head]) => head === used.head)?.[0] ?? -1;
      this.#armed.delete(tag);
      return [tag, used.data[0]];
    });
  }

  /** Stops both rings (GET_VRING_BASE), as QEMU does on a VM pause (`stop`). */
  stopRings(): void {
    this.frontend.stop();
  }

  /** Starts the rings again where they stood (`cont`): buffers in flight stay in flight. */
  startRings(): void {
    this.frontend.start({ memory: this.#memory, queues: this.#queues, features: this.#features });
  }

  /** Stops both rings and starts fresh ones, as a driver does after a device reset. */
  resetRings(): void {
    this.frontend.stop();
    for (const queue of this.#queues) queue.reset();
    this.#armed.clear();
    this.frontend.start({ memory: this.#memory, queues: this.#queues, features: this.#features });
  }

  /** Sends the memory table again while the rings run (the back-end rebuilds them). */
  resendMemoryTable(): void {
    this.frontend.setMemTable(this.#memory.regions());
  }

  /** Hangs up and frees the guest memory. */
  close(): void {
    this.frontend.close();
    this.#memory.close();
  }

  #submit(q: 0 | 1, chain: Chain): number {
    const queue = this.#queues[q];
    const head = queue.add(chain);
    queue.publish();
    if (queue.needsKick()) this.frontend.kick(q);
    return head;
  }

  #collect(q: 0 | 1, count: number, timeoutMs = 5000): UsedBuffer[] {
    const queue = this.#queues[q];
    const out: UsedBuffer[] = [];
    const deadline = performance.now() + timeoutMs;
    while (out.length < count) {
      out.push(...queue.takeUsed());
      if (out.length >= count) break;
      const left = deadline - performance.now();
      if (left <= 0 || !this.frontend.waitForCall(q, left)) break;
    }
    return out;
  }
}
