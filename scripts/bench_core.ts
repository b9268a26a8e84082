/**
 * `deno task bench`: requests per second and latency through the core, and in
 * the same run the floor they are measured against.
 *
 * - The floor: an eventfd ping-pong between two C processes (kick, then call:
 *   the two wake-ups a request at queue depth 1 costs, with no work at all).
 * - Ours: the TypeScript front-end sends 1-descriptor requests (one 64-byte
 *   device-writable buffer, the shape of a guest's rng request) to the echo
 *   device's daemon at queue depth 1 and 64, once per event-loop variant:
 *   the default (synchronous waits while busy, adaptive polling capped at
 *   `DEFAULT_POLL_MICROS`), the same without polling (`--poll-us 0`, the
 *   default before), and every wait on a helper thread.
 *
 * Where the two processes run decides the figures more than anything else: a
 * wake-up on the same CPU costs a few µs, across CPUs of this virtual machine
 * tens of µs. So each measurement is made twice, with both sides pinned to
 * one CPU and pinned to two, the floor likewise. Runs alternate between the
 * floor and ours and report medians, so machine noise hits both alike.
 * Depth 1 is timed only after as many untimed requests again: until V8 has
 * optimized the paths a request takes, its compiles (on a helper thread
 * sharing the one CPU) stall requests for milliseconds, and the mean was
 * then that of the warm-up, not of a running daemon.
 * Not a test: it asserts nothing.
 *
 * Run: deno run --allow-all scripts/bench_core.ts [--baseline PATH]
 *      [--placements one,two] [--variants default,no-poll,async]
 *      [--deno-flags=--cpu-prof,--cpu-prof-dir=/tmp/prof]
 *
 * `--baseline` (another checkout's tests/echo_device/main.ts) runs that
 * daemon's default configuration in the same rounds, alternating with ours,
 * so a change is measured before/after under the same machine noise.
 * `--placements` and `--variants` narrow a run; `--deno-flags` (comma-separated)
 * go to every daemon's `deno run`, to profile it.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { bit } from "../core/protocol/constants.ts";
import { read, setNonBlocking } from "../ffi/mod.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTQ_DESC_F_WRITE,
} from "../core/virtio/features.ts";
import { DriverMemory, DriverQueue, VhostUserFrontend } from "../frontend/mod.ts";
import { DaemonProcess } from "../tests/integration/daemon_process.ts";
import { denoPingPong } from "./bench/deno_pingpong.ts";

const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const DEPTH1_REQUESTS = 30_000;
const DEPTH64_REQUESTS = 200_000;
const ECHO = new URL("../tests/echo_device/main.ts", import.meta.url).pathname;
const FLOOR_SOURCE = new URL("./bench/eventfd_pingpong.c", import.meta.url).pathname;

interface Figures {
  /** Mean round trip in µs. */
  mean: number;
  /** Median round trip in µs. */
  p50: number;
  /** 99th percentile in µs. */
  p99: number;
  /** Requests per second. */
  rps: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function buildFloor(dir: string): Promise<string> {
  const binary = `${dir}/eventfd_pingpong`;
  const out = await new Deno.Command("cc", {
    args: ["-O2", "-o", binary, FLOOR_SOURCE],
    stderr: "piped",
  })
    .output();
  if (!out.success) throw new Error(`cc failed: ${new TextDecoder().decode(out.stderr)}`);
  return binary;
}

/** CPUs of the front-end (this process) and of the daemon. */
type Placement = { readonly name: string; readonly frontend: number; readonly daemon: number };

const PLACEMENTS: Placement[] = [
  { name: "one CPU", frontend: 0, daemon: 0 },
  { name: "two CPUs", frontend: 0, daemon: 1 },
];

async function pinSelf(cpu: number): Promise<void> {
  const out = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", String(cpu), String(Deno.pid)],
  })
    .output();
  if (!out.success) throw new Error(`taskset failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** The C floor's mean, median and 99th percentile round trip, in µs. */
async function floor(binary: string, placement: Placement): Promise<Figures> {
  const rounds = 100_000;
  const args = [String(rounds), String(placement.frontend), String(placement.daemon)];
  const out = await new Deno.Command(binary, { args }).output();
  const [, seconds, p50, p99] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
  const mean = seconds / rounds * 1e6;
  return { mean, p50, p99, rps: 1e6 / mean };
}

/**
 * One request at a time through descriptor 0, as many as `latencies` holds,
 * each one's round trip in µs into it. A function of its own, so V8
 * optimizes it whole rather than replacing a running loop on the stack.
 */
function depth1Round(
  queue: DriverQueue,
  io: { kick: () => void; callFd: number; latencies: Float64Array },
): void {
  const counter = new Uint8Array(8);
  const { callFd, latencies } = io;
  let lastUsed = queue.readUsedIdx();
  for (let i = 0; i < latencies.length; i++) {
    const start = performance.now();
    queue.rawPushAvail(0);
    queue.publish();
    if (queue.needsKick()) io.kick();
    while (queue.readUsedIdx() === lastUsed) read(callFd, counter);
    lastUsed = queue.readUsedIdx();
    queue.setUsedEvent(lastUsed);
    latencies[i] = (performance.now() - start) * 1000;
  }
}

async function core(
  dir: string,
  options: { variant: Variant; placement: Placement; entry?: string; denoFlags?: string[] },
): Promise<{ depth1: Figures; depth64: Figures }> {
  const path = `${dir}/echo.sock`;
  const daemon = await DaemonProcess.start(options.entry ?? ECHO, {
    args: ["-s", path, ...VARIANTS[options.variant], "--log-level", "warn"],
    waitFor: [path],
    cpu: options.placement.daemon,
    denoFlags: options.denoFlags,
  });
  try {
    const frontend = await VhostUserFrontend.connect(path);
    const memory = new DriverMemory({ size: 8 << 20 });
    const queue = new DriverQueue(memory, { size: 256, eventIdx: true });
    frontend.init();
    frontend.start({
      memory,
      queues: [queue],
      features: bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX),
    });
    const request = { readable: [], writable: [64] };
    // The front-end stands in for a guest: wait for calls as a vCPU thread
    // would, in one blocking read, so the figures measure the daemon.
    const callFd = frontend.callFd(0);
    setNonBlocking(callFd, false);
    const counter = new Uint8Array(8);

    // The first requests warm the JIT up on both sides and are not timed.
    const warmup = 20_000;
    const requests = warmup + DEPTH64_REQUESTS;
    let sent = 0;
    let done = 0;
    let start = 0;
    while (done < requests) {
      if (start === 0 && done >= warmup) start = performance.now();
      while (sent < requests && queue.inFlight < 64) {
        queue.add(request);
        sent++;
      }
      queue.publish();
      if (queue.needsKick()) frontend.kick(0);
      let got = queue.takeUsed().length;
      while (got === 0 && done < requests) {
        read(callFd, counter);
        got = queue.takeUsed().length;
      }
      done += got;
    }
    const seconds = (performance.now() - start) / 1000;
    const depth64 = { mean: NaN, p50: NaN, p99: NaN, rps: (done - warmup) / seconds };
    // Depth 1 as a kernel driver does it: one descriptor set up once, then
    // per request only the avail entry, the index, the kick decision, the
    // wait and the used index, so the figure is the daemon's, not our
    // DriverQueue's bookkeeping.
    const buffer = memory.alloc(64, 64);
    queue.writeDescriptor(0, { addr: buffer, len: 64, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    const latencies = new Float64Array(DEPTH1_REQUESTS);
    // Untimed first: V8 tiers the depth-1 paths up (on both sides) over the
    // first tens of thousands of requests, and on one CPU each optimizing
    // compile (up to ~17 ms on a helper thread) stalls requests for
    // milliseconds. The figures are those of a daemon that has warmed up.
    depth1Round(queue, { kick: () => frontend.kick(0), callFd, latencies });
    depth1Round(queue, { kick: () => frontend.kick(0), callFd, latencies });
    latencies.sort();
    const total = latencies.reduce((a, b) => a + b, 0);
    const depth1 = {
      mean: total / DEPTH1_REQUESTS,
      p50: latencies[Math.floor(DEPTH1_REQUESTS / 2)],
      p99: latencies[Math.floor(DEPTH1_REQUESTS * 0.99)],
      rps: DEPTH1_REQUESTS / (total / 1e6),
    };
    frontend.close();
    memory.close();
    return { depth1, depth64 };
  } finally {
    await daemon.stop();
  }
}

/** Event-loop variants measured, with the echo daemon's flags for each. */
const VARIANTS = {
  "default (adaptive poll)": ["--wait-policy", "hybrid"],
  "--poll-us 0 (no polling)": ["--wait-policy", "hybrid", "--poll-us", "0"],
  "async loop": ["--wait-policy", "async", "--poll-us", "0"],
  "baseline, default": ["--wait-policy", "hybrid"],
} as const;
type Variant = keyof typeof VARIANTS;

/** `--variants` names of the variants ours runs ("baseline" comes from `--baseline`). */
const VARIANT_FLAGS: Record<string, Variant> = {
  default: "default (adaptive poll)",
  "no-poll": "--poll-us 0 (no polling)",
  async: "async loop",
};

type Runs = Record<Variant, { depth1: Figures; depth64: Figures }[]>;

function report(
  placement: Placement,
  floors: { c: Figures[]; deno: number[] },
  runs: Partial<Runs>,
): void {
  const floorUs = median(floors.c.map((f) => f.mean));
  const floorP50 = median(floors.c.map((f) => f.p50));
  const denoUs = median(floors.deno);
  const pick = (variant: Variant, depth: "depth1" | "depth64", key: keyof Figures) =>
    median(runs[variant]!.map((r) => r[depth][key]));
  const fmt = (n: number, digits = 1) => Number.isNaN(n) ? "-" : n.toFixed(digits);
  console.log(
    `\n${placement.name} (front-end on CPU ${placement.frontend}, daemon on CPU ${placement.daemon})\n`,
  );
  console.log(
    "| measurement | mean µs | p50 µs | p99 µs | requests/s | vs floor (mean) | vs floor (p50) |",
  );
  console.log("|---|---|---|---|---|---|---|");
  console.log(
    `| floor: C eventfd ping-pong | ${fmt(floorUs)} | ${fmt(floorP50)} | ${
      fmt(median(floors.c.map((f) => f.p99)))
    } | ${fmt(1e6 / floorUs, 0)} | 1.00x | 1.00x |`,
  );
  console.log(
    `| Deno eventfd ping-pong, same FFI calls | ${fmt(denoUs)} | - | - | ${
      fmt(1e6 / denoUs, 0)
    } | ${(denoUs / floorUs).toFixed(2)}x | - |`,
  );
  for (const policy of Object.keys(runs) as Variant[]) {
    const mean = pick(policy, "depth1", "mean");
    const p50 = pick(policy, "depth1", "p50");
    console.log(
      `| echo, depth 1, ${policy} | ${fmt(mean)} | ${fmt(p50)} | ${
        fmt(pick(policy, "depth1", "p99"))
      } | ${fmt(pick(policy, "depth1", "rps"), 0)} | ${(mean / floorUs).toFixed(2)}x | ${
        (p50 / floorP50).toFixed(2)
      }x |`,
    );
    console.log(
      `| echo, depth 64, ${policy} | - | - | - | ${
        fmt(pick(policy, "depth64", "rps"), 0)
      } | - | - |`,
    );
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      baseline: { type: "string" },
      placements: { type: "string", default: "one,two" },
      variants: { type: "string", default: "default,no-poll,async" },
      "deno-flags": { type: "string", default: "" },
    },
  });
  const placements = PLACEMENTS.filter((p) =>
    values.placements.split(",").includes(p.name.split(" ")[0])
  );
  const variants = values.variants.split(",").map((name) => {
    const variant = VARIANT_FLAGS[name];
    if (!variant) throw new Error(`unknown variant '${name}' (default, no-poll, async)`);
    return variant;
  });
  if (values.baseline) variants.push("baseline, default");
  const denoFlags = values["deno-flags"] ? values["deno-flags"].split(",") : [];
  const dir = Deno.makeTempDirSync({ prefix: "vhost-bench-" });
  try {
    const binary = await buildFloor(dir);
    console.log(
      `Core benchmark: median of ${ROUNDS} rounds; 1-descriptor requests (a 64-byte writable buffer)`,
    );
    if (values.baseline) console.log(`baseline: ${values.baseline}`);
    for (const placement of placements) {
      await pinSelf(placement.frontend);
      const floors = { c: [] as Figures[], deno: [] as number[] };
      const runs = Object.fromEntries(variants.map((v) => [v, []])) as unknown as Runs;
      for (let round = 0; round < ROUNDS; round++) {
        floors.c.push(await floor(binary, placement));
        floors.deno.push(await denoPingPong(dir, { rounds: 50_000, cpu: placement.daemon }));
        for (const variant of variants) {
          const entry = variant === "baseline, default" ? values.baseline : undefined;
          runs[variant].push(await core(dir, { variant, placement, entry, denoFlags }));
        }
        console.error(`${placement.name}: round ${round + 1}/${ROUNDS} done`);
      }
      report(placement, floors, runs);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
