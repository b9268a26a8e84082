/**
 * `deno task fuzz`: vhost-user-check's fuzzer against each of our device
 * daemons, a million messages each by default, reporting messages per
 * second, failures, and the daemon's fds and RSS at start and after each
 * tenth of the run (a leak grows steadily; the JIT and the heap settle in
 * the first tenths).
 *
 * Run: deno run --allow-all scripts/fuzz_daemons.ts [--messages N] [--seed N] [device…]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runFuzz } from "../tools/vhost_user_check/fuzz.ts";
import { DEVICE_PROFILES } from "../tools/vhost_user_check/device_profiles.ts";
import { Target } from "../tools/vhost_user_check/target.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** The command starting each daemon (`{socket}`, `{dir}` as in `--exec`). */
export const DAEMON_COMMANDS: Readonly<Record<string, string>> = {
  rng: `${Deno.execPath()} run -A ${ROOT}devices/rng/main.ts -s {socket}`,
  vsock: `${Deno.execPath()} run -A ${ROOT}devices/vsock/main.ts --guest-cid 5 --socket {socket} ` +
    `--uds-path {dir}/vm.vsock --seqpacket`,
  // The simulated adapter and the fake sensor: this machine has no I2C bus or IIO device.
  i2c: `${Deno.execPath()} run -A ${ROOT}devices/i2c/main.ts -s {socket} ` +
    `--simulated-device eeprom@0x50 --simulated-device regs@0x20`,
  scmi: `${Deno.execPath()} run -A ${ROOT}devices/scmi/main.ts -s {socket} -d fake,name=acc0`,
  // A simulated chip of 8 lines (no GPIO chip here).
  gpio: `${Deno.execPath()} run -A ${ROOT}devices/gpio/main.ts -s {socket} -l s8`,
  // The tool execs the command, so the image is made by a shell that then becomes the daemon.
  scsi: `sh -c 'truncate -s 16M {dir}/disk.img && exec ${Deno.execPath()} run -A ` +
    `${ROOT}devices/scsi/main.ts -s {socket} {dir}/disk.img'`,
  sound: `${Deno.execPath()} run -A ${ROOT}devices/sound/main.ts --socket {socket} --backend null`,
};

/** One device's figures. */
export interface DeviceFuzzResult {
  /** The device. */
  readonly device: string;
  /** Messages sent. */
  readonly messages: number;
  /** Seconds taken. */
  readonly seconds: number;
  /** Failures (crash, hang, clean front-end not served), with reproducers. */
  readonly failures: readonly string[];
  /** fds at start and after each tenth of the run. */
  readonly fds: readonly (number | null)[];
  /** RSS in KiB at start and after each tenth of the run. */
  readonly rssKiB: readonly (number | null)[];
}

/** Fuzzes one daemon with `messages` messages, in tenths (seeds `seed`, `seed + 1`, …). */
export async function fuzzDaemon(
  device: string,
  options: { messages: number; seed: number; reproducerDir: string },
): Promise<DeviceFuzzResult> {
  const target = await Target.open({ exec: DAEMON_COMMANDS[device] });
  try {
    // Ten slices, each its own seed: RSS and fds after each one show a trend, not one point.
    const slice = Math.max(1, Math.floor(options.messages / 10));
    const common = {
      seconds: 0,
      burst: 256,
      timeoutMs: 5000,
      shrinkSeconds: 120,
      maxFailures: 10,
      device: DEVICE_PROFILES[device] ?? null,
      progress: (line: string) => console.error(`${device}: ${line}`),
    };
    const fds: (number | null)[] = [target.fdCount()];
    const rssKiB: (number | null)[] = [target.rssKiB()];
    const failures: string[] = [];
    let messages = 0;
    let seconds = 0;
    for (let i = 0; messages < options.messages; i++) {
      const summary = await runFuzz(target, {
        ...common,
        seed: options.seed + i,
        messages: Math.min(slice, options.messages - messages),
        reproducerPath: `${options.reproducerDir}/${device}-${i}.json`,
      });
      messages += summary.messages;
      seconds += summary.seconds;
      fds.push(summary.fds.after);
      rssKiB.push(summary.rssKiB.after);
      failures.push(
        ...summary.findings.map((f) =>
          `${f.kind} in burst ${f.burst}: ${f.detail} (${f.reproducer})`
        ),
      );
    }
    return { device, messages, seconds, failures, fds, rssKiB };
  } finally {
    await target.close();
  }
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    // `deno task fuzz -- …` passes the `--` on.
    args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
    options: {
      messages: { type: "string", default: "1000000" },
      seed: { type: "string", default: "1" },
    },
    allowPositionals: true,
  });
  const devices = positionals.length > 0 ? positionals : Object.keys(DAEMON_COMMANDS);
  const reproducerDir = Deno.makeTempDirSync({ prefix: "fuzz-daemons-" });
  let failed = false;
  for (const device of devices) {
    if (!DAEMON_COMMANDS[device]) throw new Error(`no daemon command for ${device}`);
    const r = await fuzzDaemon(device, {
      messages: Number(values.messages),
      seed: Number(values.seed),
      reproducerDir,
    });
    failed ||= r.failures.length > 0;
    console.log(
      `${device}: ${r.messages} messages in ${r.seconds.toFixed(0)} s ` +
        `(${Math.round(r.messages / r.seconds)}/s), ${r.failures.length} failures; ` +
        `fds ${r.fds.join(" → ")}; RSS KiB ${r.rssKiB.join(" → ")} (start, then each tenth)`,
    );
    for (const f of r.failures) console.log(`  ${f}`);
  }
  console.log(`reproducers (if any): ${reproducerDir}`);
  if (failed) Deno.exit(1);
}
