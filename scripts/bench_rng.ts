/**
 * Benchmark (not a test): guest-side `/dev/hwrng` throughput through our
 * vhost-device-rng, and in the same run through QEMU's built-in
 * virtio-rng-pci fed from /dev/urandom; then the daemon's idle RSS.
 * QEMU runs TCG here (no KVM), so the numbers are TCG-bound; each variant
 * runs `--runs` times (alternating) and the median is reported.
 *
 * Run: deno run --allow-all scripts/bench_rng.ts [--runs 3] [--mib 1]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startRngDaemon } from "../devices/rng/testing.ts";
import { assertGuestSucceeded, bootGuest } from "../tests/e2e/guest.ts";

/** Median of `values` (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Guest script: reads `bytes` from /dev/hwrng with dd at each block size, timed by /proc/uptime. */
function guestScript(bytes: number, blockSizes: readonly number[]): string {
  return blockSizes.map((bs) => `
    s=$(cut -d' ' -f1 /proc/uptime)
    dd if=/dev/hwrng of=/dev/null bs=${bs} count=${bytes / bs} 2>/dev/null
    e=$(cut -d' ' -f1 /proc/uptime)
    echo "@@RESULT bs${bs} $(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }')"
  `).join("");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { runs: { type: "string", default: "3" }, mib: { type: "string", default: "1" } },
  });
  const runs = Number(values.runs);
  const bytes = Number(values.mib) * 1024 * 1024;
  const blockSizes = [64, 4096];
  const daemon = await startRngDaemon([]);
  // The same device busy-polling 300 µs after each request (--poll-us): the
  // guest asks again within ~100 µs, so the next kick finds it awake.
  const polling = await startRngDaemon(["--poll-us", "300"]);
  const vhostUser = (socketPrefix: string) => [
    "-chardev",
    `socket,id=c0,path=${socketPrefix}0`,
    "-device",
    "vhost-user-rng-pci,chardev=c0",
  ];
  const variants = {
    "vhost-device-rng (ours)": vhostUser(daemon.socketPrefix),
    "ours, --poll-us 300": vhostUser(polling.socketPrefix),
    "QEMU virtio-rng-pci": [
      "-object",
      "rng-random,id=r,filename=/dev/urandom",
      "-device",
      "virtio-rng-pci,rng=r",
    ],
  };
  const seconds: Record<string, Record<number, number[]>> = {};
  try {
    for (let run = 0; run < runs; run++) {
      for (const [name, qemuArgs] of Object.entries(variants)) {
        const result = await bootGuest({
          modules: ["virtio_rng"],
          qemuArgs,
          script: guestScript(bytes, blockSizes),
        });
        assertGuestSucceeded(result);
        for (const bs of blockSizes) {
          ((seconds[name] ??= {})[bs] ??= []).push(Number(result.results[`bs${bs}`]));
        }
        console.error(`run ${run + 1}/${runs} ${name}: ${JSON.stringify(result.results)}`);
      }
    }
    // Let the daemon settle after its last guest before reading its memory.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const status = Deno.readTextFileSync(`/proc/${daemon.pid}/status`);
    const field = (name: string) =>
      /(\d+)/.exec(status.split("\n").find((l) => l.startsWith(name)) ?? "")?.[1];

    const kib = bytes / 1024;
    console.log(`\n/dev/hwrng throughput, guest dd of ${kib} KiB, median of ${runs} runs (TCG):\n`);
    console.log(
      "| dd bs | ours KiB/s | built-in KiB/s | ours / built-in | ours, --poll-us 300 | / built-in |",
    );
    console.log(
      "| ----- | ---------- | -------------- | --------------- | ------------------- | ---------- |",
    );
    const [ours, poll, builtin] = Object.keys(variants);
    for (const bs of blockSizes) {
      const a = kib / median(seconds[ours][bs]);
      const p = kib / median(seconds[poll][bs]);
      const b = kib / median(seconds[builtin][bs]);
      console.log(
        `| ${bs} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(a / b).toFixed(2)}x | ${p.toFixed(0)} | ${
          (p / b).toFixed(2)
        }x |`,
      );
    }
    console.log(
      `\nidle daemon after ${runs} connections: VmRSS ${field("VmRSS:")} KiB ` +
        `(RssAnon ${field("RssAnon:")}, RssFile ${field("RssFile:")}, RssShmem ${
          field("RssShmem:")
        }); goal ≤ 40960 KiB`,
    );
  } finally {
    await daemon.stop();
    await polling.stop();
  }
}
