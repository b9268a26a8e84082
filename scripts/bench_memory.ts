/**
 * Benchmark (not a test): memory per guest. Prints RSS, PSS and USS
 * (`/proc/<pid>/smaps_rollup`: USS = Private_Clean + Private_Dirty) of
 *
 * - a bare `deno run` that only opens libc (the runtime's own cost),
 * - vhost-device-rng idle, serving 1 guest, and serving 8 (`-c 8`),
 * - vhost-device-vsock idle with 1 VM, serving 1 guest, and with 8 VMs
 *   serving 8,
 * - the rng and vsock daemons before and after `--cycles` connect/disconnect
 *   cycles (no inspector attached: it has memory of its own),
 *
 * once per `--v8-flags` variant given (default: none, and the variants this
 * project tried). The guests are the TypeScript front-end with memfd guest
 * memory, as QEMU would share it; each makes a few requests so the daemon's
 * serving code has run. Guest memory the daemon maps is shared with the
 * front-end, so it shows in RSS and PSS, never in USS.
 *
 * With `--heap`, instead: the rng and vsock daemons through `--cycles`
 * connect/disconnect cycles (5 steps), the live JavaScript heap after a
 * forced full collection (through the inspector) and USS at each step: a
 * leak grows the live heap at every step, garbage V8 has not collected yet
 * does not.
 *
 * With `--baseline OTHER_CHECKOUT` (e.g. a checkout of main), the same rows
 * for that checkout's daemons too, alternating which goes first, each row
 * the median of `--rounds` runs (default 3), and their USS side by side:
 * USS counts the `deno` executable's pages as private when fewer other Deno
 * processes map them, so only rows of one run compare.
 *
 * Run: deno task bench:memory [--cycles 1000] [--variants "|--max-semi-space-size=1"] [--heap]
 *      [--baseline OTHER_CHECKOUT [--rounds 3]]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { bit } from "../core/protocol/constants.ts";
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX } from "../core/virtio/features.ts";
import { DriverMemory, DriverQueue, VhostUserFrontend } from "../frontend/mod.ts";
import { DaemonProcess } from "../tests/integration/daemon_process.ts";
import { BenchGuest, GuestStream } from "./bench/vsock_guest.ts";
import { HeapProbe } from "./bench/heap_probe.ts";
import { VIRTIO_VSOCK_OP_REQUEST } from "../devices/vsock/packet.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const RNG = `${ROOT}/devices/rng/main.ts`;
const VSOCK = `${ROOT}/devices/vsock/main.ts`;
const BARE = new URL("./bench/bare_runtime.ts", import.meta.url).pathname;
const SETTLE_MS = 1500;

/** Memory of one process in KiB. */
export interface Footprint {
  /** Resident set. */
  readonly rss: number;
  /** Proportional set: shared pages divided among their users. */
  readonly pss: number;
  /** Unique set: pages only this process maps. */
  readonly uss: number;
}

/** Reads `/proc/<pid>/smaps_rollup`. */
export function footprint(pid: number): Footprint {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1]);
  return {
    rss: field("Rss"),
    pss: field("Pss"),
    uss: field("Private_Clean") + field("Private_Dirty"),
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An rng guest: one queue; `requests` 64-byte reads answered. */
async function rngGuest(socket: string, requests: number): Promise<() => void> {
  const frontend = await VhostUserFrontend.connect(socket);
  const memory = new DriverMemory({ size: 4 << 20 });
  const queue = new DriverQueue(memory, { size: 256, eventIdx: true });
  const init = frontend.init();
  frontend.start({
    memory,
    queues: [queue],
    features: init.features & (bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX)),
  });
  let done = 0;
  const deadline = performance.now() + 10_000;
  while (done < requests) {
    while (queue.inFlight < 16 && done + queue.inFlight < requests) {
      queue.add({ readable: [], writable: [64] });
    }
    queue.publish();
    if (queue.needsKick()) frontend.kick(0);
    frontend.waitForCall(0, 100);
    done += queue.takeUsed().length;
    if (performance.now() > deadline) throw new Error("the rng daemon stopped answering");
  }
  return () => {
    frontend.stop();
    frontend.close();
    memory.close();
  };
}

/** A vsock guest that asks for one host port nobody listens on (the daemon answers RST). */
async function vsockGuest(socket: string): Promise<() => void> {
  const guest = await BenchGuest.attach(socket);
  const stream = new GuestStream(1234, 1);
  guest.queue(stream.header(VIRTIO_VSOCK_OP_REQUEST));
  guest.flush();
  const deadline = performance.now() + 10_000;
  while (guest.receive(100).length === 0) {
    if (performance.now() > deadline) throw new Error("the vsock daemon did not answer");
  }
  return () => guest.close();
}

async function measure(daemon: DaemonProcess): Promise<Footprint> {
  await delay(SETTLE_MS);
  return footprint(daemon.pid);
}

/** Rows of a table: a process's description and its memory. */
export type Rows = [string, Footprint][];

async function rngRows(
  dir: string,
  denoFlags: string[],
  options: { cycles: number; root: string },
): Promise<Rows> {
  const cycles = options.cycles;
  const rows: Rows = [];
  const prefix = `${dir}/rng.sock`;
  const daemon = await DaemonProcess.start(`${options.root}/devices/rng/main.ts`, {
    args: ["-s", prefix, "-c", "8", "--log-level", "warn"],
    waitFor: Array.from({ length: 8 }, (_, i) => `${prefix}${i}`),
    denoFlags,
  });
  try {
    rows.push(["rng -c 8, idle (no guest yet)", await measure(daemon)]);
    const first = await rngGuest(`${prefix}0`, 200);
    rows.push(["rng, serving 1 guest", await measure(daemon)]);
    const others = [];
    for (let i = 1; i < 8; i++) others.push(await rngGuest(`${prefix}${i}`, 200));
    rows.push(["rng, serving 8 guests", await measure(daemon)]);
    for (const close of [first, ...others]) close();
    if (cycles > 0) {
      const cycle = async () => (await rngGuest(`${prefix}0`, 4))();
      for (let i = 0; i < 50; i++) await cycle();
      rows.push([`rng, after 50 connect/disconnect cycles`, await measure(daemon)]);
      // Twice half the cycles: a leak grows both times, a heap settling only once.
      for (const half of [1, 2]) {
        for (let i = 0; i < cycles / 2; i++) await cycle();
        rows.push([`rng, after ${(cycles / 2) * half} more cycles`, await measure(daemon)]);
      }
    }
  } finally {
    await daemon.stop();
  }
  return rows;
}

async function vsockRows(
  dir: string,
  denoFlags: string[],
  options: { cycles: number; root: string },
): Promise<Rows> {
  const VSOCK = `${options.root}/devices/vsock/main.ts`;
  const cycles = options.cycles;
  const rows: Rows = [];
  const vm = (i: number) => `${dir}/vsock${i}.sock`;
  const vms = Array.from(
    { length: 8 },
    (_, i) => ["--vm", `guest-cid=${3 + i},socket=${vm(i)},uds-path=${dir}/vm${i}.vsock`],
  ).flat();
  const single = await DaemonProcess.start(VSOCK, {
    args: [
      "--vm",
      `guest-cid=3,socket=${dir}/one.sock,uds-path=${dir}/one.vsock`,
      "--log-level",
      "warn",
    ],
    waitFor: [`${dir}/one.sock`],
    denoFlags,
  });
  try {
    rows.push(["vsock, 1 VM, idle", await measure(single)]);
    const close = await vsockGuest(`${dir}/one.sock`);
    rows.push(["vsock, 1 VM, serving its guest", await measure(single)]);
    close();
    if (cycles > 0) {
      const cycle = async () => (await vsockGuest(`${dir}/one.sock`))();
      for (let i = 0; i < 50; i++) await cycle();
      rows.push([`vsock, after 50 connect/disconnect cycles`, await measure(single)]);
      // Four quarters: V8's heap grows while warming up, then must stay flat.
      for (const quarter of [1, 2, 3, 4]) {
        for (let i = 0; i < cycles / 4; i++) await cycle();
        rows.push([`vsock, after ${(cycles / 4) * quarter} more cycles`, await measure(single)]);
      }
    }
  } finally {
    await single.stop();
  }
  const eight = await DaemonProcess.start(VSOCK, {
    args: [...vms, "--log-level", "warn"],
    waitFor: Array.from({ length: 8 }, (_, i) => vm(i)),
    denoFlags,
  });
  try {
    rows.push(["vsock, 8 VMs, idle", await measure(eight)]);
    const closes = [];
    for (let i = 0; i < 8; i++) closes.push(await vsockGuest(vm(i)));
    rows.push(["vsock, 8 VMs, serving 8 guests", await measure(eight)]);
    for (const close of closes) close();
  } finally {
    await eight.stop();
  }
  return rows;
}

/** Live heap and USS of a daemon over connect/disconnect cycles (see the module doc). */
async function heapRows(dir: string, cycles: number): Promise<string[]> {
  const lines: string[] = [];
  const kinds = [
    {
      name: "rng",
      entry: RNG,
      args: ["-s", `${dir}/heap-rng.sock`, "--log-level", "warn"],
      socket: `${dir}/heap-rng.sock0`,
      cycle: async (socket: string) => (await rngGuest(socket, 4))(),
    },
    {
      name: "vsock",
      entry: VSOCK,
      args: [
        ...["--socket", `${dir}/heap-vsock.sock`, "--uds-path", `${dir}/heap.vsock`],
        ...["--log-level", "warn"],
      ],
      socket: `${dir}/heap-vsock.sock`,
      cycle: async (socket: string) => (await vsockGuest(socket))(),
    },
  ];
  for (const kind of kinds) {
    const port = HeapProbe.freePort();
    const daemon = await DaemonProcess.start(kind.entry, {
      args: kind.args,
      waitFor: [kind.socket],
      denoFlags: [`--inspect=127.0.0.1:${port}`],
      startTimeoutMs: 60_000,
    });
    try {
      const probe = await HeapProbe.connect(port);
      try {
        const step = Math.max(1, Math.round(cycles / 4));
        for (let done = 0; done <= cycles; done += step) {
          if (done > 0) { for (let i = 0; i < step; i++) await kind.cycle(kind.socket); }
          await delay(SETTLE_MS);
          const live = await probe.liveBytes();
          const { uss } = footprint(daemon.pid);
          lines.push(
            `| ${kind.name} | ${done} | ${(live / 1024).toFixed(0)} | ${uss} |`,
          );
        }
      } finally {
        await probe.close();
      }
    } finally {
      await daemon.stop();
    }
  }
  return lines;
}

/** The median of each row's figures over several runs (rows in the same order in each). */
export function medians(runs: Rows[]): Rows {
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : Math.round((sorted[mid - 1] + sorted[mid]) / 2);
  };
  return runs[0].map(([name], i) => [name, {
    rss: median(runs.map((rows) => rows[i][1].rss)),
    pss: median(runs.map((rows) => rows[i][1].pss)),
    uss: median(runs.map((rows) => rows[i][1].uss)),
  }]);
}

async function bareRow(denoFlags: string[]): Promise<Footprint> {
  const bare = await DaemonProcess.start(BARE, { args: [], denoFlags });
  try {
    return await measure(bare);
  } finally {
    await bare.stop();
  }
}

/** One pass over every row for the checkout at `root`, the bare runtime first. */
async function allRows(
  dir: string,
  denoFlags: string[],
  options: { cycles: number; root: string },
): Promise<Rows> {
  return [
    ["bare `deno run` (opens libc only)", await bareRow(denoFlags)],
    ...await rngRows(dir, denoFlags, options),
    ...await vsockRows(dir, denoFlags, options),
  ];
}

function printTable(title: string, rows: Rows): void {
  const bare = rows[0][1].uss;
  console.log(`\n${title}\n`);
  console.log("| process | RSS KiB | PSS KiB | USS KiB | USS above bare |");
  console.log("| ------- | ------- | ------- | ------- | -------------- |");
  for (const [name, f] of rows) {
    console.log(`| ${name} | ${f.rss} | ${f.pss} | ${f.uss} | ${f.uss - bare} |`);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      cycles: { type: "string", default: "1000" },
      variants: { type: "string", default: "" },
      heap: { type: "boolean", default: false },
      baseline: { type: "string" },
      rounds: { type: "string" },
    },
  });
  const dir = Deno.makeTempDirSync({ prefix: "memory-bench-" });
  try {
    if (values.heap) {
      const lines = await heapRows(dir, Number(values.cycles));
      console.log("\nLive heap after a forced full GC, over connect/disconnect cycles\n");
      console.log("| daemon | cycles | live heap KiB | USS KiB |");
      console.log("| ------ | ------ | ------------- | ------- |");
      for (const line of lines) console.log(line);
    }
    const cycles = Number(values.cycles);
    const rounds = Number(values.rounds ?? (values.baseline ? 3 : 1));
    const baseline = values.baseline?.replace(/\/$/, "");
    for (const variant of values.heap ? [] : values.variants.split("|")) {
      const denoFlags = variant ? [`--v8-flags=${variant}`] : [];
      const ours: Rows[] = [];
      const theirs: Rows[] = [];
      for (let round = 0; round < rounds; round++) {
        // Alternate which checkout goes first: the machine's load moves.
        const order = round % 2 === 0 ? [ROOT, baseline] : [baseline, ROOT];
        for (const root of order) {
          if (root === undefined) continue;
          const rows = await allRows(dir, denoFlags, { cycles, root });
          (root === ROOT ? ours : theirs).push(rows);
        }
      }
      const flags = variant || "(none)";
      const note = rounds > 1 ? `, median of ${rounds} runs` : "";
      printTable(`This checkout, V8 flags: ${flags}${note}`, medians(ours));
      if (baseline === undefined) continue;
      const base = medians(theirs);
      const mine = medians(ours);
      printTable(`Baseline ${baseline}, V8 flags: ${flags}${note}`, base);
      console.log("\nUSS above each run's bare runtime, same run\n");
      console.log("| process | this checkout KiB | baseline KiB | difference KiB |");
      console.log("| ------- | ----------------- | ------------ | -------------- |");
      for (let i = 1; i < mine.length; i++) {
        const a = mine[i][1].uss - mine[0][1].uss;
        const b = base[i][1].uss - base[0][1].uss;
        console.log(`| ${mine[i][0]} | ${a} | ${b} | ${a - b} |`);
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
