/**
 * Benchmark (not a test): vhost-device-vsock without a VM. The TypeScript
 * front-end plays the guest at memory speed (`scripts/bench/vsock_guest.ts`)
 * and a small C program (`scripts/bench/unix_peer.c`) the host program on
 * the hybrid Unix socket. Measured: guest→host and host→guest throughput
 * with 64 B, 4 KiB and 64 KiB writes, and connections set up per second;
 * the daemon's CPU time per GiB moved. The floor, in the same run: the same
 * C program at both ends of a plain AF_UNIX stream socket, the same bytes in
 * the same writes. Runs alternate (floor, ours) and medians are reported.
 *
 * Each row also gives the daemon's and the guest's (this process's) CPU
 * seconds per GiB and their share of the wall time ("busy"): when both are
 * low, the time goes to wake-ups and waiting for a CPU, not to either side's
 * work.
 *
 * Run: deno task bench:vsock-host [--runs 3] [--mib 64] [--connects 2000]
 *      [--sizes 64,4096,65536] (write sizes; --connects 0 skips set-up)
 *      [--directions g2h,h2g] (which directions to measure; e.g. h2g alone
 *      for a profile)
 *      [--poll-us N] (the daemon's poll cap; default: the daemon's default)
 *      [--baseline PATH] (another checkout's devices/vsock/main.ts: a second
 *      daemon through the same cases in the same runs, for before/after)
 *      [--daemon-args=ARGS] [--deno-flags=FLAGS] (e.g. --cpu-prof, for both)
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DaemonProcess } from "../tests/integration/daemon_process.ts";
import { cpuSeconds } from "./bench/cpu.ts";
import { BenchGuest, GUEST_BUF_ALLOC, GuestStream } from "./bench/vsock_guest.ts";
import {
  VIRTIO_VSOCK_OP_CREDIT_REQUEST,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
} from "../devices/vsock/packet.ts";

const MAIN = new URL("../devices/vsock/main.ts", import.meta.url).pathname;
const PEER_SOURCE = new URL("./bench/unix_peer.c", import.meta.url).pathname;
const MIB = 1 << 20;
const GUEST_PORT = 5000;
const HOST_PORT = 6000;
const TIMEOUT_MS = 120_000;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function buildPeer(dir: string): Promise<string> {
  const binary = `${dir}/unix_peer`;
  const out = await new Deno.Command("cc", { args: ["-O2", "-o", binary, PEER_SOURCE] }).output();
  if (!out.success) throw new Error(`cc failed: ${new TextDecoder().decode(out.stderr)}`);
  return binary;
}

/** A running peer; `ready` resolves once a listening peer prints "listening". */
function spawnPeer(
  binary: string,
  args: string[],
): { child: Deno.ChildProcess; ready: Promise<void>; output: Promise<string> } {
  const child = new Deno.Command(binary, { args, stdout: "piped", stderr: "piped" }).spawn();
  let text = "";
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => markReady = resolve);
  const output = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("listening\n")) markReady();
    }
    const status = await child.status;
    const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    if (!status.success) throw new Error(`unix_peer ${args.join(" ")} failed: ${stderr}`);
    markReady();
    return text.replace("listening\n", "").trim();
  })();
  return { child, ready, output };
}

/** Floor: C source → C sink over a plain AF_UNIX stream; MB/s. */
async function floorStream(
  peer: string,
  dir: string,
  options: { bytes: number; chunk: number },
): Promise<number> {
  const path = `${dir}/floor.sock`;
  const sink = spawnPeer(peer, ["sink", path, String(options.bytes)]);
  await sink.ready;
  const source = spawnPeer(peer, ["source", path, String(options.bytes), String(options.chunk)]);
  const seconds = Number(await sink.output);
  await source.output;
  return options.bytes / seconds / 1e6;
}

/** Floor: connections set up and closed per second over a plain AF_UNIX socket. */
async function floorConnects(peer: string, dir: string, count: number): Promise<number> {
  const path = `${dir}/floor.sock`;
  const acceptor = spawnPeer(peer, ["accepts", path, String(count)]);
  await acceptor.ready;
  const seconds = Number(await spawnPeer(peer, ["connects", path, String(count)]).output);
  await acceptor.output;
  return count / seconds;
}

interface Ours {
  /** MB/s (or connections/s). */
  rate: number;
  /** Daemon CPU seconds over the measurement. */
  cpu: number;
  /** The TypeScript guest's CPU seconds over the measurement (this process). */
  guestCpu: number;
  /** Wall-clock seconds over which both CPU times were taken. */
  wall: number;
}

/** Guest → host: the guest connects to host port HOST_PORT and writes `bytes` in `chunk`-byte packets. */
async function guestToHost(
  context: {
    peer: string;
    uds: string;
    daemon: DaemonProcess;
    guest: BenchGuest;
    localPort: number;
  },
  options: { bytes: number; chunk: number },
): Promise<Ours> {
  const { guest } = context;
  const sink = spawnPeer(context.peer, [
    "sink",
    `${context.uds}_${HOST_PORT}`,
    String(options.bytes),
  ]);
  await sink.ready;
  const cpu0 = cpuSeconds(context.daemon.pid);
  const guestCpu0 = cpuSeconds(Deno.pid);
  const wall0 = performance.now();
  const stream = new GuestStream(context.localPort, HOST_PORT);
  guest.queue(stream.header(VIRTIO_VSOCK_OP_REQUEST));
  guest.flush();
  const payload = new Uint8Array(options.chunk);
  let connected = false;
  let sent = 0;
  const deadline = performance.now() + TIMEOUT_MS;
  while (sent < options.bytes) {
    if (performance.now() > deadline) throw new Error(`guest→host stalled at ${sent} bytes`);
    for (const packet of guest.receive(0)) {
      if (packet.header.dstPort !== stream.localPort) continue;
      stream.update(packet.header);
      if (packet.header.op === VIRTIO_VSOCK_OP_RESPONSE) connected = true;
      if (packet.header.op === VIRTIO_VSOCK_OP_RST) {
        throw new Error("the host refused the connection");
      }
    }
    let queued = 0;
    let room = guest.txRoom();
    while (connected && sent < options.bytes && room >= 2) {
      const length = Math.min(options.chunk, options.bytes - sent, stream.credit);
      if (length <= 0) break;
      guest.queue(
        stream.header(VIRTIO_VSOCK_OP_RW, { len: length }),
        length === payload.length ? payload : payload.subarray(0, length),
      );
      stream.sent(length);
      sent += length;
      room -= 2;
      queued++;
    }
    if (queued > 0) guest.flush();
    else guest.wait(50);
  }
  const seconds = Number(await sink.output);
  const guestCpu = cpuSeconds(Deno.pid) - guestCpu0;
  const cpu = cpuSeconds(context.daemon.pid) - cpu0;
  const wall = (performance.now() - wall0) / 1000;
  // The sink closed: the device tells us; answer with RST and move on.
  guest.queue(stream.header(VIRTIO_VSOCK_OP_RST));
  guest.flush();
  return { rate: options.bytes / seconds / 1e6, cpu, guestCpu, wall };
}

/** Host → guest: the C source connects to guest port GUEST_PORT and writes `bytes` in `chunk`-byte writes. */
async function hostToGuest(
  context: { peer: string; uds: string; daemon: DaemonProcess; guest: BenchGuest },
  options: { bytes: number; chunk: number },
): Promise<Ours> {
  const { guest } = context;
  const cpu0 = cpuSeconds(context.daemon.pid);
  const guestCpu0 = cpuSeconds(Deno.pid);
  const wall0 = performance.now();
  const source = spawnPeer(context.peer, [
    "source",
    context.uds,
    String(options.bytes),
    String(options.chunk),
    String(GUEST_PORT),
  ]);
  let stream: GuestStream | null = null;
  let got = 0;
  let start = 0;
  const deadline = performance.now() + TIMEOUT_MS;
  while (got < options.bytes) {
    if (performance.now() > deadline) throw new Error(`host→guest stalled at ${got} bytes`);
    let credit = false;
    for (const { header, length } of guest.receive(50)) {
      if (header.op === VIRTIO_VSOCK_OP_REQUEST && header.dstPort === GUEST_PORT) {
        stream = new GuestStream(GUEST_PORT, header.srcPort);
        stream.update(header);
        guest.queue(stream.header(VIRTIO_VSOCK_OP_RESPONSE));
        continue;
      }
      if (!stream || header.srcPort !== stream.peerPort) continue;
      stream.update(header);
      // Linux answers a credit request at once (virtio_transport_recv_connected).
      if (header.op === VIRTIO_VSOCK_OP_CREDIT_REQUEST) credit = true;
      if (header.op === VIRTIO_VSOCK_OP_RW) {
        if (got === 0) start = performance.now();
        got += length;
        if (stream.consumed(length)) credit = true;
      }
    }
    if (credit && stream) guest.queue(stream.header(VIRTIO_VSOCK_OP_CREDIT_UPDATE));
    guest.flush();
  }
  const seconds = (performance.now() - start) / 1000;
  const cpu = cpuSeconds(context.daemon.pid) - cpu0;
  const guestCpu = cpuSeconds(Deno.pid) - guestCpu0;
  const wall = (performance.now() - wall0) / 1000;
  await source.output;
  // The source closed: take the SHUTDOWN, answer RST.
  const wait = performance.now() + 5000;
  for (let done = false; !done && performance.now() < wait;) {
    for (const { header } of guest.receive(50)) {
      if (header.op === VIRTIO_VSOCK_OP_SHUTDOWN && stream && header.srcPort === stream.peerPort) {
        guest.queue(stream.header(VIRTIO_VSOCK_OP_RST));
        guest.flush();
        done = true;
      }
    }
  }
  return { rate: options.bytes / seconds / 1e6, cpu, guestCpu, wall };
}

/** Host-initiated connections set up per second: CONNECT, the guest's RESPONSE, OK, close, RST. */
async function connects(
  context: { peer: string; uds: string; daemon: DaemonProcess; guest: BenchGuest },
  count: number,
): Promise<Ours> {
  const { guest } = context;
  const cpu0 = cpuSeconds(context.daemon.pid);
  const guestCpu0 = cpuSeconds(Deno.pid);
  const wall0 = performance.now();
  const client = spawnPeer(context.peer, [
    "connects",
    context.uds,
    String(count),
    String(GUEST_PORT),
  ]);
  let accepted = 0;
  let closed = 0;
  const deadline = performance.now() + TIMEOUT_MS;
  while (closed < count) {
    if (performance.now() > deadline) {
      throw new Error(`connections stalled at ${accepted}/${closed}`);
    }
    for (const { header } of guest.receive(50)) {
      if (header.dstPort !== GUEST_PORT) continue;
      const stream = new GuestStream(GUEST_PORT, header.srcPort);
      if (header.op === VIRTIO_VSOCK_OP_REQUEST) {
        guest.queue(stream.header(VIRTIO_VSOCK_OP_RESPONSE));
        accepted++;
      } else if (header.op === VIRTIO_VSOCK_OP_SHUTDOWN) {
        guest.queue(stream.header(VIRTIO_VSOCK_OP_RST));
        closed++;
      } else if (header.op === VIRTIO_VSOCK_OP_RST) {
        closed++;
      }
    }
    guest.flush();
  }
  const seconds = Number(await client.output);
  return {
    rate: count / seconds,
    cpu: cpuSeconds(context.daemon.pid) - cpu0,
    guestCpu: cpuSeconds(Deno.pid) - guestCpu0,
    wall: (performance.now() - wall0) / 1000,
  };
}

/** Median over runs of one measurement of one daemon. */
interface Series {
  rate: number[];
  cpuPerGiB: number[];
  guestCpuPerGiB: number[];
  daemonBusy: number[];
  guestBusy: number[];
}

function series(): Series {
  return { rate: [], cpuPerGiB: [], guestCpuPerGiB: [], daemonBusy: [], guestBusy: [] };
}

function record(into: Series, ours: Ours, gib: number): void {
  into.rate.push(ours.rate);
  into.cpuPerGiB.push(ours.cpu / gib);
  into.guestCpuPerGiB.push(ours.guestCpu / gib);
  into.daemonBusy.push(ours.cpu / ours.wall);
  into.guestBusy.push(ours.guestCpu / ours.wall);
}

/** `median (min–max)` of `values`, formatted by `format`. */
function spread(values: readonly number[], format: (n: number) => string): string {
  if (values.length === 1) return format(values[0]);
  return `${format(median(values))} (${format(Math.min(...values))}–${
    format(Math.max(...values))
  })`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      mib: { type: "string", default: "64" },
      connects: { type: "string", default: "2000" },
      sizes: { type: "string", default: "64,4096,65536" },
      directions: { type: "string", default: "g2h,h2g" },
      "poll-us": { type: "string" },
      baseline: { type: "string" },
      "daemon-args": { type: "string", default: "" },
      "deno-flags": { type: "string", default: "" },
    },
  });
  const runs = Number(values.runs);
  const connectCount = Number(values.connects);
  const sizes = values.sizes.split(",").map(Number);
  const directions = new Set(values.directions.split(","));
  for (const direction of directions) {
    if (direction !== "g2h" && direction !== "h2g") {
      throw new Error(`--directions: "${direction}" is neither g2h nor h2g`);
    }
  }
  const dir = Deno.makeTempDirSync({ prefix: "vsock-host-bench-" });
  const peer = await buildPeer(dir);
  const pollArgs = values["poll-us"] === undefined ? [] : ["--poll-us", values["poll-us"]];
  const extraArgs = values["daemon-args"].split(" ").filter((arg) => arg !== "");
  const denoFlags = values["deno-flags"].split(" ").filter((arg) => arg !== "");
  // With --baseline, a second daemon (another checkout's devices/vsock/main.ts) runs
  // the same cases in the same runs, alternating with ours.
  const entries = [{ name: "ours", main: MAIN }];
  if (values.baseline) entries.push({ name: "baseline", main: values.baseline });
  const daemons: { name: string; daemon: DaemonProcess; socket: string; uds: string }[] = [];
  for (const [i, entry] of entries.entries()) {
    const socket = `${dir}/vhost${i}.sock`;
    const uds = `${dir}/vm${i}.vsock`;
    const daemon = await DaemonProcess.start(entry.main, {
      args: [
        ...["--socket", socket, "--uds-path", uds, "--log-level", "warn"],
        ...pollArgs,
        ...extraArgs,
      ],
      denoFlags,
      waitFor: [socket],
    });
    daemons.push({ name: entry.name, daemon, socket, uds });
  }
  // 64-byte writes move fewer bytes in the same time.
  const cases = sizes.map((chunk) => ({
    chunk,
    bytes: chunk <= 64
      ? Number(values.mib) * MIB / 16
      : chunk >= 65536
      ? Number(values.mib) * MIB * 2
      : Number(values.mib) * MIB,
  }));
  type Row = { floor: number[]; by: Map<string, Series> };
  const rows = new Map<string, Row>();
  const row = (name: string): Row => {
    let r = rows.get(name);
    if (!r) rows.set(name, r = { floor: [], by: new Map() });
    return r;
  };
  const of = (r: Row, name: string): Series => {
    let s = r.by.get(name);
    if (!s) r.by.set(name, s = series());
    return s;
  };
  let localPort = 40000;
  try {
    for (let run = 0; run < runs; run++) {
      for (const c of cases) {
        const floor = await floorStream(peer, dir, c);
        const gib = c.bytes / (1 << 30);
        if (directions.has("g2h")) row(`guest → host, ${c.chunk} B writes`).floor.push(floor);
        if (directions.has("h2g")) row(`host → guest, ${c.chunk} B writes`).floor.push(floor);
        // Alternate which daemon goes first, so neither always gets the warmer machine.
        const order = run % 2 === 0 ? daemons : [...daemons].reverse();
        for (const d of order) {
          const guest = await BenchGuest.attach(d.socket);
          try {
            const context = { peer, uds: d.uds, daemon: d.daemon, guest };
            if (directions.has("g2h")) {
              const g2h = await guestToHost({ ...context, localPort: localPort++ }, c);
              record(of(row(`guest → host, ${c.chunk} B writes`), d.name), g2h, gib);
            }
            if (directions.has("h2g")) {
              const h2g = await hostToGuest(context, c);
              record(of(row(`host → guest, ${c.chunk} B writes`), d.name), h2g, gib);
            }
          } finally {
            guest.close();
          }
        }
      }
      if (connectCount > 0) {
        const r = row("connections set up per second");
        r.floor.push(await floorConnects(peer, dir, connectCount));
        for (const d of daemons) {
          const guest = await BenchGuest.attach(d.socket);
          try {
            const ours = await connects(
              { peer, uds: d.uds, daemon: d.daemon, guest },
              connectCount,
            );
            record(of(r, d.name), ours, NaN);
          } finally {
            guest.close();
          }
        }
      }
      console.error(`run ${run + 1}/${runs} done`);
    }
    console.log(
      `\nvhost-device-vsock without a VM (TypeScript guest at memory speed, C host peer), ` +
        `daemon --poll-us ${values["poll-us"] ?? "default"}; median (min–max) of ${runs} runs, ` +
        `floor = the same C peer at both ends of an AF_UNIX stream, same run.` +
        ` Guest rx buffers 4 KiB, guest buf_alloc ${GUEST_BUF_ALLOC / 1024} KiB.` +
        ` busy = CPU time / wall time over the transfer.\n`,
    );
    const names = daemons.map((d) => d.name);
    console.log(
      `| measurement | floor | ${
        names.map((n) =>
          `${n} | ${n} / floor | ${n} daemon CPU s/GiB, busy | guest CPU s/GiB, busy`
        )
          .join(" | ")
      } |`,
    );
    console.log(`|${" --- |".repeat(2 + 4 * names.length)}`);
    const fixed = (digits: number) => (n: number) => n.toFixed(digits);
    const percent = (n: number) => `${(n * 100).toFixed(0)}%`;
    for (const [name, r] of rows) {
      const unit = name.startsWith("connections") ? "/s" : " MB/s";
      const cells = names.map((n) => {
        const s = r.by.get(n)!;
        const cpu = name.startsWith("connections") ? "-" : spread(s.cpuPerGiB, fixed(2));
        const guestCpu = name.startsWith("connections") ? "-" : spread(s.guestCpuPerGiB, fixed(2));
        return `${spread(s.rate, fixed(0))}${unit} | ${
          spread(s.rate.map((x, i) => x / r.floor[i]), fixed(2))
        }x | ${cpu}, ${spread(s.daemonBusy, percent)} | ${guestCpu}, ${
          spread(s.guestBusy, percent)
        }`;
      });
      // The floor's own spread: it moves by 2x and more between runs of a VM.
      console.log(`| ${name} | ${spread(r.floor, fixed(0))}${unit} | ${cells.join(" | ")} |`);
    }
  } finally {
    for (const d of daemons) await d.daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}
