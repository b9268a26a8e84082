/**
 * Benchmark (not a test): CPU time for `--seconds` (default 60) of 48 kHz
 * stereo S16 playback by the guest's aplay. In the same run:
 * vhost-device-sound with `--backend file` (the daemon's CPU and its QEMU's),
 * and QEMU's built-in virtio-sound-pci into a `wav` audiodev (that QEMU's
 * CPU). CPU is counted from /proc between two guest markers, so boot is
 * left out; the guest's under-runs (aplay's "underrun!!!") are counted.
 * QEMU runs TCG here, so QEMU's own figures are TCG-bound.
 *
 * Run: deno run --allow-all scripts/bench_sound.ts [--seconds 60]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startSoundDaemon } from "../devices/sound/testing.ts";
import { startGuest } from "../tests/e2e/guest.ts";

/** User + system CPU seconds of process `pid` (all its threads), from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The guest script: marks the start, plays `seconds` of silence, marks the end with the under-runs. */
function script(seconds: number): string {
  return `
    echo "@@PLAYING"
    aplay -D hw:0,0 -t raw -f S16_LE -r 48000 -c 2 -d ${seconds} /dev/zero 2>/tmp/err
    echo "@@PLAYED rc=$? underruns=$(grep -c underrun /tmp/err)"
    sleep 3
  `;
}

interface Measured {
  readonly qemu: number;
  readonly daemon: number | null;
  readonly underruns: number;
  readonly wallSeconds: number;
}

async function measure(
  qemuArgs: string[],
  seconds: number,
  daemonPid: number | null,
): Promise<Measured> {
  const guest = await startGuest({
    modules: ["virtio_snd"],
    tools: ["aplay", "/usr/share/alsa"],
    qemuArgs,
    script: script(seconds),
    timeoutMs: (seconds + 120) * 1000,
  });
  try {
    await guest.waitFor("@@PLAYING", { timeoutMs: 120_000 });
    const qemu0 = cpuSeconds(guest.pid);
    const daemon0 = daemonPid === null ? 0 : cpuSeconds(daemonPid);
    const t0 = performance.now();
    const done = await guest.waitFor("@@PLAYED", { timeoutMs: (seconds + 60) * 1000 });
    const qemu = cpuSeconds(guest.pid) - qemu0;
    const daemon = daemonPid === null ? null : cpuSeconds(daemonPid) - daemon0;
    const wallSeconds = (performance.now() - t0) / 1000;
    if (!done.includes("rc=0")) throw new Error(`aplay failed in the guest: ${done}`);
    const underruns = Number(/underruns=(\d+)/.exec(done)?.[1] ?? NaN);
    return { qemu, daemon, underruns, wallSeconds };
  } finally {
    guest.kill();
    await guest.result;
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { seconds: { type: "string", default: "60" } },
  });
  const seconds = Number(values.seconds);
  const daemon = await startSoundDaemon(["--backend", "file", "--output", "{dir}/out.wav"]);
  const dir = await Deno.makeTempDir({ prefix: "bench-sound-" });
  try {
    const ours = await measure(
      [
        "-chardev",
        `socket,id=snd0,path=${daemon.socket}`,
        "-device",
        "vhost-user-snd-pci,chardev=snd0",
      ],
      seconds,
      daemon.pid,
    );
    const builtin = await measure(
      [
        "-audiodev",
        `wav,id=snd0,path=${dir}/qemu.wav,out.frequency=48000,out.channels=2,out.format=s16`,
        "-device",
        "virtio-sound-pci,audiodev=snd0",
      ],
      seconds,
      null,
    );
    const extra = builtin.qemu - ours.qemu;
    console.log(`${seconds} s of 48 kHz stereo S16 playback (CPU seconds while aplay ran):`);
    console.log(
      `  vhost-device-sound --backend file: daemon ${ours.daemon!.toFixed(2)} s` +
        ` (${(ours.daemon! / ours.wallSeconds * 100).toFixed(2)} % of a CPU),` +
        ` its QEMU ${ours.qemu.toFixed(2)} s, guest under-runs ${ours.underruns},` +
        ` wall ${ours.wallSeconds.toFixed(1)} s`,
    );
    console.log(
      `  QEMU virtio-sound-pci + wav audiodev: QEMU ${builtin.qemu.toFixed(2)} s,` +
        ` guest under-runs ${builtin.underruns}, wall ${builtin.wallSeconds.toFixed(1)} s`,
    );
    console.log(
      `  QEMU's extra CPU for its built-in device (built-in QEMU - vhost-user QEMU): ${
        extra.toFixed(2)
      } s; daemon / that extra: ${(ours.daemon! / extra).toFixed(2)}`,
    );
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
