/**
 * The fuzzer: runs generated bursts against a back-end, each on a fresh
 * connection, then checks the back-end still answers (a GET_FEATURES
 * barrier on the same connection, unless the back-end hung up, which a
 * back-end may do on a protocol error) and still serves a clean front-end.
 * On a crash, hang or refusal it writes the burst as a reproducer and, when
 * it can restart the back-end, shrinks it.
 *
 * @module
 */

import {
  close,
  connectUnix,
  createEventFd,
  createMemfd,
  ECONNREFUSED,
  ECONNRESET,
  EPIPE,
  Epoll,
  EPOLLIN,
  EPOLLOUT,
  type Mapping,
  mapShared,
  receiveWithFds,
  sendWithFds,
  setNonBlocking,
  signalEventFd,
  socketPair,
  SyscallError,
  unmap,
} from "../../ffi/mod.ts";
import {
  FrontendRequest as R,
  HEADER_SIZE,
  ProtocolFeature as P,
  VERSION,
} from "../../core/protocol/constants.ts";
import { DriverMemory, DriverQueue } from "../../frontend/mod.ts";
import { bit } from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import type { DeviceProfile } from "./device_profiles.ts";
import {
  BurstGenerator,
  bytesOf,
  type FdKind,
  FUZZ_QUEUES,
  type Op,
  RAM_SIZE,
} from "./generate.ts";
import type { Target } from "./target.ts";

/** What went wrong in a burst. */
export type FailureKind = "crash" | "hang" | "unserved";

/** A reproducer file: one burst, enough to replay it. */
export interface Reproducer {
  /** Always "vhost-user-check reproducer 1". */
  readonly format: string;
  /** The run's seed and the burst's index in it. */
  readonly seed: number;
  /** The burst's index in the run. */
  readonly burst: number;
  /** What happened. */
  readonly failure: FailureKind;
  /** What was seen (exit status, the stderr tail, the timeout). */
  readonly detail: string;
  /** The operations, in order. */
  readonly ops: readonly Op[];
}

/** Options of {@link runFuzz}. */
export interface FuzzOptions {
  /** The run's seed. */
  readonly seed: number;
  /** Stop after this many vhost-user messages (0: no limit). */
  readonly messages: number;
  /** Stop after this many seconds (0: no limit). */
  readonly seconds: number;
  /** Messages per burst. */
  readonly burst: number;
  /** Milliseconds a reply may take before the back-end counts as hung. */
  readonly timeoutMs: number;
  /** The device, for the clean front-end's requests; null: protocol only. */
  readonly device: DeviceProfile | null;
  /** Where to write a reproducer. */
  readonly reproducerPath: string;
  /** Seconds to spend shrinking each failure (0: keep the whole burst). */
  readonly shrinkSeconds: number;
  /** Stop after this many failures. */
  readonly maxFailures: number;
  /** Progress lines (one per few seconds), or nothing. */
  readonly progress?: (line: string) => void;
}

/** One failure found. */
export interface Finding {
  /** Crash, hang, or a clean front-end not served. */
  readonly kind: FailureKind;
  /** The burst's index. */
  readonly burst: number;
  /** What was seen. */
  readonly detail: string;
  /** The reproducer written, if any. */
  readonly reproducer: string | null;
  /** Operations in the reproducer (after shrinking). */
  readonly ops: number;
}

/** What a fuzz run did. */
export interface FuzzSummary {
  /** The seed. */
  readonly seed: number;
  /** vhost-user messages sent. */
  readonly messages: number;
  /** Ring writes and kicks. */
  readonly ringOps: number;
  /** Bursts run (each on its own connection, each followed by a clean front-end). */
  readonly bursts: number;
  /** Bursts the back-end ended by closing the connection (allowed). */
  readonly dropped: number;
  /** Wall-clock seconds. */
  readonly seconds: number;
  /** Messages per second. */
  readonly rate: number;
  /** Failures. */
  readonly findings: readonly Finding[];
  /** The back-end's fd count before and after (only with `--exec`). */
  readonly fds: { readonly before: number | null; readonly after: number | null };
  /** The back-end's RSS in KiB before and after (only with `--exec`). */
  readonly rssKiB: { readonly before: number | null; readonly after: number | null };
}

/** Resources a burst's operations draw fds from. */
class Resources {
  readonly ramFd: number;
  readonly #mapping: Mapping;
  readonly ram: Uint8Array;
  readonly notifiers: { kick: number; call: number; err: number }[] = [];

  constructor() {
    this.ramFd = createMemfd("fuzz-ram", RAM_SIZE);
    this.#mapping = mapShared(this.ramFd, { length: RAM_SIZE, offset: 0 });
    this.ram = new Uint8Array(this.#mapping.buffer);
  }

  /** Fresh eventfds and zeroed RAM for a burst. */
  reset(): void {
    this.closeNotifiers();
    this.ram.fill(0);
    for (let q = 0; q < FUZZ_QUEUES; q++) {
      this.notifiers.push({ kick: createEventFd(), call: createEventFd(), err: createEventFd() });
    }
  }

  /** The fds for one message, and those to close once it is sent. */
  fds(kinds: readonly FdKind[], q: number): { fds: number[]; temporary: number[] } {
    const fds: number[] = [];
    const temporary: number[] = [];
    const n = this.notifiers[q] ?? this.notifiers[0];
    for (const kind of kinds) {
      if (kind === "kick" || kind === "call" || kind === "err") fds.push(n[kind]);
      else if (kind === "ram") fds.push(this.ramFd);
      else if (kind === "page") {
        const fd = createMemfd("fuzz-page", 4096);
        fds.push(fd);
        temporary.push(fd);
      } else if (kind === "pair") {
        const [a, b] = socketPair();
        fds.push(a);
        temporary.push(a, b);
      } else {
        const fd = createEventFd();
        fds.push(fd);
        temporary.push(fd);
      }
    }
    return { fds, temporary };
  }

  closeNotifiers(): void {
    for (const n of this.notifiers) [n.kick, n.call, n.err].forEach(close);
    this.notifiers.length = 0;
  }

  close(): void {
    this.closeNotifiers();
    unmap(this.#mapping);
    close(this.ramFd);
  }
}

/** How a burst ended on its connection. */
type BurstEnd =
  | { kind: "answered" }
  | { kind: "dropped"; at: number }
  | { kind: "hang"; detail: string; at: number };

/** One raw connection: writes whole messages, reads and discards replies. */
class Connection {
  readonly fd: number;
  readonly #epoll = new Epoll(1);
  readonly #buffer = new Uint8Array(65536);
  #pending = new Uint8Array(0);
  #events = EPOLLIN;
  closed = false;
  /** GET_FEATURES replies seen. */
  featureReplies = 0;

  constructor(path: string) {
    this.fd = connectUnix(path);
    setNonBlocking(this.fd, true);
    this.#epoll.add(this.fd, { events: EPOLLIN, token: 0 });
  }

  #wait(events: number, deadline: number): boolean {
    if (events !== this.#events) {
      this.#epoll.modify(this.fd, { events, token: 0 });
      this.#events = events;
    }
    return this.#epoll.wait(Math.max(0, Math.ceil(deadline - performance.now()))) > 0;
  }

  /** Sends all of `bytes`; false if the back-end closed the connection. Throws on timeout. */
  send(bytes: Uint8Array, fds: readonly number[], deadline: number): boolean {
    let sent = 0;
    while (sent < bytes.length) {
      let n: number | null;
      try {
        n = sendWithFds(this.fd, bytes.subarray(sent), { fds: sent === 0 ? fds : [] });
      } catch (error) {
        if (
          error instanceof SyscallError && (error.errno === EPIPE || error.errno === ECONNRESET)
        ) {
          this.closed = true;
          return false;
        }
        throw error;
      }
      if (n !== null) {
        sent += n;
        continue;
      }
      // The socket is full: the back-end may be waiting for us to read its replies.
      this.drain();
      if (this.closed) return false;
      if (!this.#wait(EPOLLIN | EPOLLOUT, deadline)) {
        throw new Error("the back-end stopped reading");
      }
    }
    return true;
  }

  /** Reads whatever has arrived, closing any fds; counts GET_FEATURES replies. */
  drain(): void {
    for (;;) {
      let got;
      try {
        got = receiveWithFds(this.fd, this.#buffer);
      } catch (error) {
        if (error instanceof SyscallError && error.errno === ECONNRESET) {
          this.closed = true;
          return;
        }
        throw error;
      }
      if (got === null) return;
      got.fds.forEach(close);
      if (got.length === 0) {
        this.closed = true;
        return;
      }
      const joined = new Uint8Array(this.#pending.length + got.length);
      joined.set(this.#pending);
      joined.set(this.#buffer.subarray(0, got.length), this.#pending.length);
      let at = 0;
      const view = new DataView(joined.buffer);
      while (joined.length - at >= HEADER_SIZE) {
        const size = view.getUint32(at + 8, true);
        if (joined.length - at < HEADER_SIZE + size) break;
        if (view.getUint32(at, true) === R.GET_FEATURES) this.featureReplies++;
        at += HEADER_SIZE + size;
      }
      this.#pending = joined.slice(at);
    }
  }

  /**
   * GET_FEATURES as a barrier: everything sent before it was handled once its
   * reply arrives (replies come in order).
   */
  barrier(timeoutMs: number): BurstEnd {
    this.drain();
    if (this.closed) return { kind: "dropped", at: -1 };
    const before = this.featureReplies;
    const deadline = performance.now() + timeoutMs;
    const header = new Uint8Array(HEADER_SIZE);
    new DataView(header.buffer).setUint32(0, R.GET_FEATURES, true);
    new DataView(header.buffer).setUint32(4, VERSION, true);
    if (!this.send(header, [], deadline)) return { kind: "dropped", at: -1 };
    for (;;) {
      this.drain();
      if (this.featureReplies > before) return { kind: "answered" };
      if (this.closed) return { kind: "dropped", at: -1 };
      if (!this.#wait(EPOLLIN, deadline)) {
        return { kind: "hang", detail: `no reply to GET_FEATURES within ${timeoutMs} ms`, at: -1 };
      }
    }
  }

  close(): void {
    this.#epoll.close();
    close(this.fd);
  }
}

/** Runs `ops` on a fresh connection to `path`; how the back-end took it. */
function runOps(
  path: string,
  ops: readonly Op[],
  options: { resources: Resources; timeoutMs: number },
): BurstEnd {
  const { resources } = options;
  resources.reset();
  let connection: Connection;
  try {
    connection = new Connection(path);
  } catch (error) {
    if (error instanceof SyscallError && error.errno === ECONNREFUSED) {
      return { kind: "dropped", at: 0 };
    }
    throw error;
  }
  try {
    for (let at = 0; at < ops.length; at++) {
      const op = ops[at];
      if (op.op === "mem") {
        const bytes = bytesOf(op.hex);
        if (op.at >= 0 && op.at + bytes.length <= RAM_SIZE) resources.ram.set(bytes, op.at);
        continue;
      }
      if (op.op === "kick") {
        signalEventFd(resources.notifiers[op.q].kick);
        continue;
      }
      const { fds, temporary } = resources.fds(op.fds ?? [], op.q ?? 0);
      let ok: boolean;
      try {
        ok = connection.send(bytesOf(op.hex), fds, performance.now() + options.timeoutMs);
      } catch (error) {
        const detail = error instanceof Error ? error.message : String(error);
        return { kind: "hang", detail, at };
      } finally {
        temporary.forEach(close);
      }
      if (!ok) return { kind: "dropped", at };
      connection.drain();
      if (connection.closed) return { kind: "dropped", at };
    }
    const end = connection.barrier(options.timeoutMs);
    return end.kind === "answered" ? end : { ...end, at: ops.length - 1 };
  } finally {
    connection.close();
  }
}

const CLEAN_FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) |
  bit(VIRTIO_RING_F_INDIRECT_DESC);

/**
 * A clean front-end: QEMU 10's handshake, one ring per device queue, the
 * device's requests when known, stop. Retries while the back-end still
 * refuses (it may not have seen the last connection close yet). Returns
 * null when served, else what failed.
 */
export async function cleanSession(
  target: Target,
  options: { device: DeviceProfile | null; timeoutMs: number },
): Promise<string | null> {
  let last = "";
  for (let attempt = 0; attempt < 20; attempt++) {
    const frontend = await target.connect({ timeoutMs: options.timeoutMs }).catch((e) => e);
    if (frontend instanceof Error) return `connect: ${frontend.message}`;
    const memory = new DriverMemory({ size: 1 << 20, name: "clean-ram" });
    try {
      const init = frontend.init({ queueCount: options.device?.queues });
      const eventIdx = (init.features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
      const queues = Array.from(
        { length: options.device?.queues ?? 1 },
        () => new DriverQueue(memory, { size: 64, eventIdx }),
      );
      const config = options.device?.configSize && init.protocolFeatures & bit(P.CONFIG)
        ? frontend.getConfig(0, options.device.configSize)
        : null;
      const features = init.features & CLEAN_FEATURES;
      frontend.start({ memory, queues, features });
      options.device?.exercise({
        frontend,
        queues,
        indirect: (features & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n,
        config,
        timeoutMs: options.timeoutMs,
      });
      frontend.stop();
      return null;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
      // Refused at the first message: the back-end still serves the previous connection.
      if (!/GET_FEATURES: (back-end closed|send failed)/.test(last)) return last;
    } finally {
      frontend.close();
      memory.close();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return `refused 20 times: ${last}`;
}

/** Runs one burst and classifies the outcome. */
async function attempt(
  target: Target,
  ops: readonly Op[],
  options: { resources: Resources; timeoutMs: number; device: DeviceProfile | null },
): Promise<
  { failure: FailureKind; detail: string; at: number } | { failure: null; dropped: boolean }
> {
  const end = runOps(target.path, ops, options);
  // The last operation that can have caused it: where the connection broke or hung.
  const at = end.kind === "answered" ? ops.length - 1 : end.at < 0 ? ops.length - 1 : end.at;
  if (!(await target.settle(end.kind === "dropped" ? 50 : 0))) {
    const report = target.exitReport();
    return {
      failure: "crash",
      at,
      detail: `exited with code ${report?.code}${report?.signal ? ` (${report.signal})` : ""}: ${
        report?.stderrTail ?? ""
      }`,
    };
  }
  if (end.kind === "hang") return { failure: "hang", detail: end.detail, at };
  const unserved = await cleanSession(target, options);
  if (unserved !== null) {
    if (!(await target.settle(50))) {
      const report = target.exitReport();
      return {
        failure: "crash",
        at,
        detail: `exited with code ${report?.code}: ${report?.stderrTail}`,
      };
    }
    return { failure: "unserved", at, detail: `a clean front-end was not served: ${unserved}` };
  }
  return { failure: null, dropped: end.kind === "dropped" };
}

/**
 * Shrinks a failing burst (delta debugging over its operations), restarting
 * the back-end before each try; at most `budgetMs`. Returns the smallest
 * burst that still fails the same way.
 */
async function shrink(
  target: Target,
  ops: readonly Op[],
  options: {
    resources: Resources;
    timeoutMs: number;
    device: DeviceProfile | null;
    kind: FailureKind;
    at: number;
    budgetMs: number;
  },
): Promise<Op[]> {
  const deadline = performance.now() + options.budgetMs;
  let dirty = true;
  const fails = async (candidate: readonly Op[]): Promise<boolean> => {
    // A back-end that served the last clean front-end is as good as a fresh one.
    if (dirty || !target.running) await target.restart();
    const result = await attempt(target, candidate, options);
    dirty = result.failure !== null;
    return result.failure === options.kind;
  };
  // Nothing after the operation where it broke can have caused it.
  let current = [...ops.slice(0, options.at + 1)];
  if (current.length < ops.length && !(await fails(current))) current = [...ops];
  let chunks = 2;
  while (current.length > 1 && performance.now() < deadline) {
    const size = Math.ceil(current.length / chunks);
    let reduced = false;
    for (let start = 0; start < current.length && performance.now() < deadline; start += size) {
      const candidate = [...current.slice(0, start), ...current.slice(start + size)];
      if (await fails(candidate)) {
        current = candidate;
        chunks = Math.max(chunks - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (size === 1) break;
      chunks = Math.min(chunks * 2, current.length);
    }
  }
  if (dirty || !target.running) await target.restart();
  return current;
}

/** Writes a reproducer file. */
export function writeReproducer(path: string, reproducer: Reproducer): void {
  Deno.writeTextFileSync(path, JSON.stringify(reproducer, null, 1) + "\n");
}

/** Reads and checks a reproducer file. */
export function readReproducer(path: string): Reproducer {
  const data = JSON.parse(Deno.readTextFileSync(path));
  if (data?.format !== REPRODUCER_FORMAT || !Array.isArray(data.ops)) {
    throw new Error(`${path} is not a vhost-user-check reproducer`);
  }
  return data as Reproducer;
}

const REPRODUCER_FORMAT = "vhost-user-check reproducer 1";

/**
 * The fuzz loop: bursts until the message or time budget is spent. A
 * failure is recorded with its reproducer; with `--exec` the back-end is
 * restarted and the run goes on, with `--socket` it stops.
 */
export async function runFuzz(target: Target, options: FuzzOptions): Promise<FuzzSummary> {
  const resources = new Resources();
  const findings: Finding[] = [];
  const started = performance.now();
  const fdsBefore = target.fdCount();
  const rssBefore = target.rssKiB();
  let messages = 0;
  let ringOps = 0;
  let bursts = 0;
  let dropped = 0;
  let lastProgress = started;
  try {
    for (let index = 0;; index++) {
      if (options.messages > 0 && messages >= options.messages) break;
      if (options.seconds > 0 && performance.now() - started >= options.seconds * 1000) break;
      const remaining = options.messages > 0 ? options.messages - messages : options.burst;
      const ops = new BurstGenerator(options.seed, index).burst(Math.min(options.burst, remaining));
      for (const op of ops) op.op === "msg" ? messages++ : ringOps++;
      bursts++;
      const result = await attempt(target, ops, {
        resources,
        timeoutMs: options.timeoutMs,
        device: options.device,
      });
      if (result.failure === null) {
        if (result.dropped) dropped++;
      } else {
        const path = findings.length === 0
          ? options.reproducerPath
          : `${options.reproducerPath}.${findings.length}`;
        const reproducer = {
          format: REPRODUCER_FORMAT,
          seed: options.seed,
          burst: index,
          failure: result.failure,
          detail: result.detail,
          ops,
        };
        writeReproducer(path, reproducer);
        let kept = ops.length;
        if (target.restartable && options.shrinkSeconds > 0) {
          options.progress?.(
            `burst ${index}: ${result.failure}; shrinking ${ops.length} operations`,
          );
          const small = await shrink(target, ops, {
            resources,
            timeoutMs: options.timeoutMs,
            device: options.device,
            kind: result.failure,
            at: result.at,
            budgetMs: options.shrinkSeconds * 1000,
          });
          writeReproducer(path, { ...reproducer, ops: small });
          kept = small.length;
        }
        findings.push({
          kind: result.failure,
          burst: index,
          detail: result.detail,
          reproducer: path,
          ops: kept,
        });
        if (!target.restartable || findings.length >= options.maxFailures) break;
        if (target.running) await target.restart();
      }
      const now = performance.now();
      if (options.progress && now - lastProgress > 5000) {
        lastProgress = now;
        const rate = Math.round(messages / ((now - started) / 1000));
        options.progress(
          `${messages} messages, ${bursts} bursts, ${rate}/s, ${findings.length} failures`,
        );
      }
    }
  } finally {
    resources.close();
  }
  const seconds = (performance.now() - started) / 1000;
  // Let the back-end finish closing the last connection before counting.
  await new Promise((r) => setTimeout(r, 200));
  return {
    seed: options.seed,
    messages,
    ringOps,
    bursts,
    dropped,
    seconds,
    rate: messages / Math.max(seconds, 1e-9),
    findings,
    fds: { before: fdsBefore, after: target.fdCount() },
    rssKiB: { before: rssBefore, after: target.rssKiB() },
  };
}

/** Replays a reproducer once: null if the back-end took it, else the failure. */
export async function replay(
  target: Target,
  reproducer: Reproducer,
  options: { timeoutMs: number; device: DeviceProfile | null },
): Promise<{ failure: FailureKind; detail: string } | null> {
  const resources = new Resources();
  try {
    const result = await attempt(target, reproducer.ops, { resources, ...options });
    return result.failure === null ? null : result;
  } finally {
    resources.close();
  }
}
