/**
 * Conformance: the handshakes real front-ends perform, each reply checked
 * against docs/interop/vhost-user.rst. The front-end (frontend/) already
 * checks every reply as QEMU does (flags exactly REPLY|version, the request
 * code echoed, the payload size, no stray fds); this module adds the
 * checks on the values and on the ring state.
 *
 * @module
 */

import {
  bit,
  ProtocolFeature as P,
  VHOST_USER_F_PROTOCOL_FEATURES,
} from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import {
  DriverMemory,
  DriverQueue,
  type ReplyAckPolicy,
  SUPPORTED_PROTOCOL_FEATURES,
  VhostUserFrontend,
} from "../../frontend/mod.ts";
import type { DeviceProfile } from "./device_profiles.ts";
import type { Target } from "./target.ts";

/** The outcome of one check; `info` rows carry context (a back-end's last stderr lines). */
export type Verdict = "pass" | "fail" | "warn" | "skip" | "info";

/** One line of the conformance report. */
export interface CheckResult {
  /** The handshake it belongs to, e.g. `qemu-10`. */
  readonly scenario: string;
  /** What was checked, e.g. `GET_QUEUE_NUM`. */
  readonly check: string;
  /** Pass, fail, warn (allowed but surprising) or skip (not offered). */
  readonly verdict: Verdict;
  /** What was seen. */
  readonly detail: string;
}

/** Options of {@link runConformance}. */
export interface ConformanceOptions {
  /** The device, for real requests; null: protocol only. */
  readonly device: DeviceProfile | null;
  /** Milliseconds to wait for each reply. */
  readonly timeoutMs: number;
}

/** Generic virtio features a front-end acks when offered: ring layout, nothing device-specific. */
const GENERIC_FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_NOTIFY_ON_EMPTY) |
  bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX);
/** Protocol feature bits from 20 on are still in flux (reference: QEMU and rust-vmm disagree). */
const UNSTABLE_PROTOCOL_BITS = ~((1n << 20n) - 1n);
/** Queues started when the device is unknown: at most this many of GET_QUEUE_NUM. */
const GENERIC_MAX_QUEUES = 8;
/** Bytes of config space read when the device is unknown: the smallest real config (vsock, gpio). */
const GENERIC_CONFIG_PROBE = 8;

/** A failed check ends its scenario: the connection may be out of step. */
class Abort extends Error {}

/** Collects results for one scenario. */
class Recorder {
  readonly results: CheckResult[] = [];
  readonly #scenario: string;

  constructor(scenario: string) {
    this.#scenario = scenario;
  }

  add(check: string, verdict: Verdict, detail: string): void {
    this.results.push({ scenario: this.#scenario, check, verdict, detail });
  }

  /** Runs `fn`; its string is the pass detail; a throw records a failure and aborts. */
  step<T>(check: string, fn: () => T, detail: (value: T) => string): T {
    let value: T;
    try {
      value = fn();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.add(check, "fail", message);
      throw new Abort(message);
    }
    this.add(check, "pass", detail(value));
    return value;
  }

  /** Records a failure of a value check and aborts. */
  expect(check: string, ok: boolean, detail: string): void {
    this.add(check, ok ? "pass" : "fail", detail);
    if (!ok) throw new Abort(detail);
  }
}

interface Session {
  readonly frontend: VhostUserFrontend;
  readonly memory: DriverMemory;
  readonly queues: DriverQueue[];
  readonly features: bigint;
  readonly config: Uint8Array | null;
  readonly indirect: boolean;
}

interface HandshakeOptions {
  readonly policy: ReplyAckPolicy;
  readonly protocolMask: bigint;
  readonly memory: DriverMemory;
  readonly lastAvail?: readonly number[];
  readonly queues?: DriverQueue[];
}

function hex(value: bigint): string {
  return `0x${value.toString(16)}`;
}

/**
 * The connect and start sequences (`vhost_dev_init`, `vhost_dev_start`),
 * recording a check per reply.
 */
async function handshake(
  target: Target,
  rec: Recorder,
  options: HandshakeOptions & ConformanceOptions,
): Promise<Session> {
  const frontend = await target.connect({
    replyAck: options.policy,
    timeoutMs: options.timeoutMs,
    protocolFeatures: options.protocolMask,
  }).catch((error) => {
    rec.add("connect", "fail", error instanceof Error ? error.message : String(error));
    throw new Abort("connect");
  });
  try {
    const init = rec.step(
      "init: GET_FEATURES … SET_VRING_ERR",
      () =>
        frontend.init({
          queueCount: options.device?.queues,
        }),
      (r) =>
        `features ${hex(r.features)}, protocol ${
          hex(r.protocolFeatures)
        }, ${r.queueCount} queue(s)`,
    );
    rec.expect(
      "GET_FEATURES is stable across SET_OWNER",
      init.features === frontend.backendFeatures,
      `${hex(init.features)}`,
    );
    if ((init.features & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n) {
      const offered = frontend.getProtocolFeatures();
      rec.add(
        "GET_PROTOCOL_FEATURES bits",
        (offered & UNSTABLE_PROTOCOL_BITS) !== 0n ? "warn" : "pass",
        (offered & UNSTABLE_PROTOCOL_BITS) !== 0n
          ? `${hex(offered)} offers bits ≥ 20, numbered differently by QEMU and rust-vmm`
          : hex(offered),
      );
    }
    if (init.queueNum !== null) {
      const need = options.device?.queues ?? 1;
      rec.expect(
        "GET_QUEUE_NUM",
        init.queueNum >= need && init.queueNum <= 0x8000,
        `${init.queueNum} (need ≥ ${need})`,
      );
    } else rec.add("GET_QUEUE_NUM", "skip", "MQ not offered");
    if (init.maxMemSlots !== null) {
      rec.expect("GET_MAX_MEM_SLOTS", init.maxMemSlots >= 1, `${init.maxMemSlots}`);
    } else rec.add("GET_MAX_MEM_SLOTS", "skip", "CONFIGURE_MEM_SLOTS not offered");

    let config: Uint8Array | null = null;
    if (frontend.hasProtocolFeature(P.CONFIG)) {
      const size = options.device?.configSize ?? GENERIC_CONFIG_PROBE;
      // vhost-user.rst GET_CONFIG: the reply's size matches the request's; empty means failure.
      config = rec.step(
        `GET_CONFIG (${size} bytes)`,
        () => frontend.getConfig(0, size),
        (c) => `${c.length} bytes echoed with offset and size`,
      );
    } else if (options.device?.configSize) {
      rec.expect("GET_CONFIG", false, `the ${options.device.name} device needs CONFIG`);
    } else rec.add("GET_CONFIG", "skip", "CONFIG not negotiated");

    const count = options.device?.queues ?? Math.min(init.queueCount, GENERIC_MAX_QUEUES);
    const eventIdx = (init.features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
    const queues = options.queues ??
      Array.from(
        { length: count },
        () => new DriverQueue(options.memory, { size: 64, eventIdx, region: 0 }),
      );
    options.lastAvail?.forEach((index, q) => queues[q].lastAvailIndex = index);
    const features = init.features & GENERIC_FEATURES;
    rec.step(
      "start: SET_FEATURES … SET_VRING_KICK, ENABLE",
      () => frontend.start({ memory: options.memory, queues, features }),
      () =>
        `${queues.length} ring(s) of 64, memory by ${
          frontend.hasProtocolFeature(P.CONFIGURE_MEM_SLOTS) ? "ADD_MEM_REG" : "SET_MEM_TABLE"
        }`,
    );
    if (frontend.hasProtocolFeature(P.STATUS)) {
      const status = rec.step("GET_STATUS after start", () => frontend.getStatus(), String);
      rec.expect("GET_STATUS has DRIVER_OK|FEATURES_OK", (status & 0xf) === 0xf, `${status}`);
    }
    return {
      frontend,
      memory: options.memory,
      queues,
      features,
      config,
      indirect: (features & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n,
    };
  } catch (error) {
    frontend.close();
    throw error;
  }
}

function traffic(
  rec: Recorder,
  session: Session,
  options: ConformanceOptions & { label: string },
): void {
  const device = options.device;
  if (!device) return;
  rec.step(`${device.name}: ${options.label}`, () =>
    device.exercise({
      frontend: session.frontend,
      queues: session.queues,
      indirect: session.indirect,
      config: session.config,
      timeoutMs: options.timeoutMs,
    }), (l) => l.join("; "));
}

/**
 * SET_VRING_ENABLE(0) and GET_VRING_BASE per queue (vhost-user.rst "Ring
 * states": GET_VRING_BASE stops the ring and answers the next available
 * index): it must lie between what the device returned and what was offered.
 */
function stop(rec: Recorder, session: Session): void {
  const used = session.queues.map((q) => q.lastUsedIndex);
  const offered = session.queues.map((q) => q.availIndex);
  const bases = rec.step(
    "stop: SET_VRING_ENABLE(0), GET_VRING_BASE",
    () => session.frontend.stop(),
    (b) => `bases ${b.join(", ")}`,
  );
  bases.forEach((base, q) => {
    const inRange = ((base - used[q]) & 0xffff) <= ((offered[q] - used[q]) & 0xffff);
    rec.expect(
      `GET_VRING_BASE queue ${q} after traffic`,
      inRange,
      `${base} (used ${used[q]}, offered ${offered[q]})`,
    );
  });
}

async function scenario(
  name: string,
  target: Target,
  body: (rec: Recorder) => Promise<void>,
): Promise<CheckResult[]> {
  const rec = new Recorder(name);
  try {
    await body(rec);
  } catch (error) {
    if (!(error instanceof Abort)) {
      rec.add("unexpected error", "fail", error instanceof Error ? error.message : String(error));
    }
  }
  const tail = target.stderrTail().split("\n").filter((l) => l.trim() !== "").slice(-3);
  if (rec.results.some((r) => r.verdict === "fail") && tail.length > 0) {
    rec.add("back-end stderr", "info", tail.join(" | "));
  }
  if (!(await target.settle(200))) {
    const report = target.exitReport();
    rec.add(
      "back-end alive",
      "fail",
      `exited (code ${report?.code}, signal ${report?.signal}): ${report?.stderrTail}`,
    );
    await target.restart();
  }
  return rec.results;
}

/**
 * Runs the conformance scenarios against `target`: QEMU 10's order (with
 * traffic, stop, a second start and a dropped connection), a reconnect as
 * QEMU performs it, QEMU 7.2's order, and one with NEED_REPLY on every
 * message and every optional message the protocol features allow.
 */
export async function runConformance(
  target: Target,
  options: ConformanceOptions,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const memory = new DriverMemory({ size: 4 << 20, split: { at: 2 << 20 }, name: "check-ram" });
  try {
    let carried: DriverQueue[] | null = null;
    results.push(
      ...await scenario("qemu-10", target, async (rec) => {
        const s = await handshake(target, rec, {
          ...options,
          policy: "qemu",
          protocolMask: SUPPORTED_PROTOCOL_FEATURES,
          memory,
        });
        try {
          traffic(rec, s, { ...options, label: "requests answered" });
          stop(rec, s);
          // vhost_dev_start again (guest reboot, VM resume): rings restart from the bases.
          rec.step(
            "restart the rings from GET_VRING_BASE",
            () => s.frontend.start({ memory, queues: s.queues, features: s.features }),
            () => "SET_VRING_BASE from the answers",
          );
          traffic(rec, s, { ...options, label: "requests answered after the restart" });
          carried = s.queues;
        } finally {
          // QEMU killed: the connection drops with rings running.
          s.frontend.close();
        }
      }),
    );
    results.push(
      ...await scenario("reconnect", target, async (rec) => {
        if (!carried) {
          rec.add("reconnect", "skip", "the qemu-10 scenario did not get that far");
          return;
        }
        // QEMU on reconnect: the whole init again, then SET_VRING_BASE = used idx
        // (virtio_queue_restore_last_avail_idx).
        const queues: DriverQueue[] = carried;
        const s = await handshake(target, rec, {
          ...options,
          policy: "qemu",
          protocolMask: SUPPORTED_PROTOCOL_FEATURES,
          memory,
          queues,
          lastAvail: queues.map((q) => q.lastUsedIndex),
        });
        try {
          traffic(rec, s, { ...options, label: "requests answered after reconnecting" });
          stop(rec, s);
        } finally {
          s.frontend.close();
        }
      }),
    );
    const fresh = new DriverMemory({ size: 4 << 20, split: { at: 2 << 20 }, name: "check-ram" });
    try {
      results.push(
        ...await scenario("qemu-7.2", target, async (rec) => {
          const s = await handshake(target, rec, {
            ...options,
            policy: "qemu-7.2",
            protocolMask: SUPPORTED_PROTOCOL_FEATURES & ~bit(P.STATUS),
            memory: fresh,
          });
          try {
            traffic(rec, s, { ...options, label: "requests answered" });
            stop(rec, s);
          } finally {
            s.frontend.close();
          }
        }),
      );
    } finally {
      fresh.close();
    }
    const third = new DriverMemory({ size: 4 << 20, split: { at: 2 << 20 }, name: "check-ram" });
    try {
      results.push(
        ...await scenario("every-optional", target, (rec) =>
          everyOptional(target, rec, {
            ...options,
            memory: third,
          })),
      );
    } finally {
      third.close();
    }
  } finally {
    memory.close();
  }
  return results;
}

/**
 * SET_CONFIG writing back what GET_CONFIG read (QEMU itself writes only
 * writable fields, e.g. virtio-blk's `wce`). vhost-user.rst lets a back-end
 * refuse it (a non-zero ack); an ack of 0 must mean it was applied, so the
 * connection must still answer afterwards.
 */
function setConfigBack(rec: Recorder, f: VhostUserFrontend, config: Uint8Array): void {
  try {
    f.setConfig(0, config);
  } catch (error) {
    rec.add(
      "SET_CONFIG (same bytes)",
      "warn",
      `refused: ${error instanceof Error ? error.message : error}`,
    );
    return;
  }
  try {
    f.getFeatures();
    rec.add("SET_CONFIG (same bytes)", "pass", "acked 0, connection alive");
  } catch (error) {
    rec.add(
      "SET_CONFIG (same bytes)",
      "fail",
      `acked 0 (success), then the next message failed: ${
        error instanceof Error ? error.message : error
      }`,
    );
  }
}

/**
 * NEED_REPLY on every message; then every optional message the negotiated
 * protocol features allow: REM_MEM_REG/ADD_MEM_REG of the second region,
 * SET_MEM_TABLE, GET_STATUS echoing SET_STATUS, RESET_DEVICE and a start
 * after it, and last SET_CONFIG (it may end the connection).
 */
async function everyOptional(
  target: Target,
  rec: Recorder,
  options: ConformanceOptions & { memory: DriverMemory },
): Promise<void> {
  const s = await handshake(target, rec, {
    ...options,
    policy: "all",
    protocolMask: SUPPORTED_PROTOCOL_FEATURES,
  });
  const f = s.frontend;
  try {
    if (f.replyAckNegotiated) rec.add("REPLY_ACK", "pass", "every message below acked 0");
    else rec.add("REPLY_ACK", "skip", "not offered: NEED_REPLY unused");
    traffic(rec, s, { ...options, label: "requests answered" });
    const [, second] = options.memory.regions();
    if (f.hasProtocolFeature(P.CONFIGURE_MEM_SLOTS)) {
      rec.step(
        "REM_MEM_REG of a region no ring uses",
        () => f.remMemReg(second.descriptor),
        () => "acked",
      );
      rec.step("ADD_MEM_REG it back", () => f.addMemReg(second), () => "acked");
    } else rec.add("ADD/REM_MEM_REG", "skip", "CONFIGURE_MEM_SLOTS not offered");
    rec.step(
      "SET_MEM_TABLE with rings live",
      () => f.setMemTable(options.memory.regions()),
      () => "acked",
    );
    traffic(rec, s, { ...options, label: "requests answered after the memory changes" });
    if (f.hasProtocolFeature(P.STATUS)) {
      rec.step("SET_STATUS(0x0f)", () => f.setStatus(0x0f), () => "acked");
      const status = rec.step("GET_STATUS", () => f.getStatus(), String);
      rec.expect("GET_STATUS echoes SET_STATUS", status === 0x0f, `${status}`);
    } else rec.add("SET_STATUS/GET_STATUS", "skip", "STATUS not offered");
    stop(rec, s);
    if (f.hasProtocolFeature(P.RESET_DEVICE)) {
      rec.step("RESET_DEVICE", () => f.resetDevice(), () => "acked");
      s.queues.forEach((q) => q.reset());
      rec.step(
        "start after RESET_DEVICE",
        () => f.start({ memory: options.memory, queues: s.queues, features: s.features }),
        () => "rings restarted from 0",
      );
      traffic(rec, s, { ...options, label: "requests answered after RESET_DEVICE" });
      stop(rec, s);
    } else rec.add("RESET_DEVICE", "skip", "RESET_DEVICE not offered");
    rec.step(
      "GET_FEATURES still answered",
      () => f.getFeatures(),
      (v) => hex(v),
    );
    if (f.hasProtocolFeature(P.CONFIG) && s.config) setConfigBack(rec, f, s.config);
  } finally {
    f.close();
  }
}
