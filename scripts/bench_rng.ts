/**
 * Benchmark (not a test): guest-side `/dev/hwrng` throughput through our
 * vhost-device-rng and, in the same run, through QEMU's built-in
 * virtio-rng-pci fed from /dev/urandom, with the CPU time each side spends
 * per MiB; then the CPU an idle daemon uses with a guest attached.
 *
 * Variants: ours in its default configuration (adaptive polling), ours with
 * `--poll-us 0` (no polling: the default before it), any `--caps` given
 * (ours with that `--poll-us` cap, to choose the default), and the built-in
 * device. QEMU runs TCG here (no KVM), so the numbers are TCG-bound; each
 * variant runs `--runs` times, alternating, and medians are reported.
 * CPU time is the sum over each process's threads of the time they ran
 * between the guest's markers around each `dd` (`scripts/bench/cpu.ts`):
 * for QEMU it includes the guest's own TCG execution.
 *
 * Run: deno run --allow-all scripts/bench_rng.ts [--runs 7] [--mib 2]
 *      [--caps 100,300] [--idle-seconds 60] [--skip-no-poll]
 *      [--baseline OTHER_CHECKOUT/devices/rng/main.ts]
 *
 * The defaults (7 alternating runs of 2 MiB) are what it took on a quiet
 * machine for the medians to stop moving: 3 runs of 1 MiB gave 0.92x and
 * 1.16x at 64 B in two runs of the same code.
 *
 * `--baseline` adds that daemon in its default configuration to the same
 * runs (before/after a change, under the same machine noise);
 * `--skip-no-poll` leaves out the `--poll-us 0` variant.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type RngDaemonProcess, startRngDaemon } from "../devices/rng/testing.ts";
import { DEFAULT_POLL_MICROS } from "../core/event_loop.ts";
import { assertGuestSucceeded, startGuest } from "../tests/e2e/guest.ts";
import { cpuSeconds } from "./bench/cpu.ts";

/** Median of `values` (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Guest script: reads `bytes` from /dev/hwrng with dd at each block size,
 * timed by /proc/uptime, with markers around each for the host's CPU samples.
 */
function guestScript(bytes: number, blockSizes: readonly number[]): string {
  return blockSizes.map((bs) => `
    echo "@@MARK start bs${bs}"
    s=$(cut -d' ' -f1 /proc/uptime)
    dd if=/dev/hwrng of=/dev/null bs=${bs} count=${bytes / bs} 2>/dev/null
    e=$(cut -d' ' -f1 /proc/uptime)
    echo "@@MARK end bs${bs}"
    echo "@@RESULT bs${bs} $(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }')"
  `).join("");
}

/** One variant's samples per block size. */
interface Samples {
  seconds: number[];
  daemonCpu: number[];
  qemuCpu: number[];
}

const VHOST_USER = (socketPrefix: string) => [
  "-chardev",
  `socket,id=c0,path=${socketPrefix}0`,
  "-device",
  "vhost-user-rng-pci,chardev=c0",
];
const BUILT_IN = [
  "-object",
  "rng-random,id=r,filename=/dev/urandom",
  "-device",
  "virtio-rng-pci,rng=r",
];

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "7" },
      mib: { type: "string", default: "2" },
      caps: { type: "string", default: "" },
      "idle-seconds": { type: "string", default: "60" },
      baseline: { type: "string" },
      "skip-no-poll": { type: "boolean", default: false },
    },
  });
  const runs = Number(values.runs);
  const bytes = Number(values.mib) * 1024 * 1024;
  const mib = bytes / (1024 * 1024);
  const blockSizes = [64, 4096];
  const caps = values.caps ? values.caps.split(",").map(Number) : [];
  const daemons: RngDaemonProcess[] = [];
  const variants: { name: string; daemon: RngDaemonProcess | null; qemuArgs: string[] }[] = [];
  try {
    const ours = await startRngDaemon([]);
    daemons.push(ours);
    variants.push({
      name: `ours (default: adaptive, cap ${DEFAULT_POLL_MICROS} µs)`,
      daemon: ours,
      qemuArgs: VHOST_USER(ours.socketPrefix),
    });
    if (values.baseline) {
      const daemon = await startRngDaemon([], { main: values.baseline });
      daemons.push(daemon);
      variants.push({
        name: "baseline (default)",
        daemon,
        qemuArgs: VHOST_USER(daemon.socketPrefix),
      });
    }
    for (const cap of [...(values["skip-no-poll"] ? [] : [0]), ...caps]) {
      const daemon = await startRngDaemon(["--poll-us", String(cap)]);
      daemons.push(daemon);
      const name = cap === 0 ? "ours, --poll-us 0 (no polling)" : `ours, --poll-us ${cap}`;
      variants.push({ name, daemon, qemuArgs: VHOST_USER(daemon.socketPrefix) });
    }
    variants.push({ name: "QEMU virtio-rng-pci (built-in)", daemon: null, qemuArgs: BUILT_IN });

    const samples = new Map<string, Record<number, Samples>>();
    for (let run = 0; run < runs; run++) {
      for (const variant of variants) {
        const perBs = samples.get(variant.name) ?? {};
        samples.set(variant.name, perBs);
        await using guest = await startGuest({
          modules: ["virtio_rng"],
          qemuArgs: variant.qemuArgs,
          script: guestScript(bytes, blockSizes),
        });
        const daemonPid = variant.daemon?.pid;
        for (const bs of blockSizes) {
          await guest.waitFor(`@@MARK start bs${bs}`);
          const d0 = daemonPid ? cpuSeconds(daemonPid) : 0;
          const q0 = cpuSeconds(guest.pid);
          await guest.waitFor(`@@MARK end bs${bs}`);
          const d1 = daemonPid ? cpuSeconds(daemonPid) : 0;
          const q1 = cpuSeconds(guest.pid);
          const s = perBs[bs] ??= { seconds: [], daemonCpu: [], qemuCpu: [] };
          s.daemonCpu.push(d1 - d0);
          s.qemuCpu.push(q1 - q0);
        }
        const result = await guest.result;
        assertGuestSucceeded(result);
        for (const bs of blockSizes) perBs[bs].seconds.push(Number(result.results[`bs${bs}`]));
        console.error(`run ${run + 1}/${runs} ${variant.name}: ${JSON.stringify(result.results)}`);
      }
    }

    const kib = bytes / 1024;
    console.log(
      `\n/dev/hwrng throughput, guest dd of ${kib} KiB, median of ${runs} runs (TCG); ` +
        `CPU seconds per MiB read, daemon and QEMU (QEMU includes the guest's TCG execution):\n`,
    );
    console.log("| dd bs | variant | KiB/s | vs built-in | daemon CPU s/MiB | QEMU CPU s/MiB |");
    console.log("| ----- | ------- | ----- | ----------- | ---------------- | -------------- |");
    const builtin = variants[variants.length - 1].name;
    for (const bs of blockSizes) {
      const base = kib / median(samples.get(builtin)![bs].seconds);
      for (const variant of variants) {
        const s = samples.get(variant.name)![bs];
        const rate = kib / median(s.seconds);
        const daemonCpu = variant.daemon ? (median(s.daemonCpu) / mib).toFixed(3) : "-";
        console.log(
          `| ${bs} | ${variant.name} | ${rate.toFixed(0)} | ${
            (rate / base).toFixed(2)
          }x | ${daemonCpu} | ${(median(s.qemuCpu) / mib).toFixed(3)} |`,
        );
      }
    }

    // An attached, idle guest: the default daemon should sleep, not poll.
    const idleSeconds = Number(values["idle-seconds"]);
    if (idleSeconds > 0) {
      await using guest = await startGuest({
        modules: ["virtio_rng"],
        qemuArgs: VHOST_USER(ours.socketPrefix),
        script: `echo "@@MARK idle"; sleep ${idleSeconds}; echo "@@MARK idle-end"`,
        timeoutMs: (idleSeconds + 120) * 1000,
      });
      await guest.waitFor("@@MARK idle");
      const d0 = cpuSeconds(ours.pid);
      const q0 = cpuSeconds(guest.pid);
      await guest.waitFor("@@MARK idle-end", { timeoutMs: (idleSeconds + 60) * 1000 });
      const d1 = cpuSeconds(ours.pid);
      const q1 = cpuSeconds(guest.pid);
      assertGuestSucceeded(await guest.result);
      console.log(
        `\nidle guest attached for ${idleSeconds} s: daemon used ${
          ((d1 - d0) * 1000).toFixed(1)
        } ms ` +
          `of CPU (${((d1 - d0) / idleSeconds * 100).toFixed(3)} %); QEMU ${
            ((q1 - q0) * 1000).toFixed(0)
          } ms`,
      );
    }
    const status = Deno.readTextFileSync(`/proc/${ours.pid}/status`);
    const field = (name: string) =>
      /(\d+)/.exec(status.split("\n").find((l) => l.startsWith(name)) ?? "")?.[1];
    console.log(
      `\ndefault daemon after ${runs} connections: VmRSS ${field("VmRSS:")} KiB ` +
        `(RssAnon ${field("RssAnon:")}, RssFile ${field("RssFile:")})`,
    );
  } finally {
    for (const daemon of daemons) await daemon.stop();
  }
}
