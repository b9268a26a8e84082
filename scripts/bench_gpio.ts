/**
 * Benchmark (not a test) of vhost-device-gpio on a simulated chip, each
 * figure measured for the default daemon (adaptive polling after serving)
 * and, in the same run, for one that never polls (`--poll-us 0`):
 *
 * 1. request round trip at queue depth 1: the TypeScript front-end sends
 *    GET_VALUE and waits for the used buffer (host, no guest);
 * 2. interrupt latency: the control socket drives an input line, the
 *    front-end waits for the eventq buffer (host, no guest; includes the
 *    control socket's hop);
 * 3. in a guest (QEMU TCG, gpio-virtio, libgpiod tools): a loop of `gpioget`
 *    (each a process: request, read, release: 3 requests) and a loop of
 *    host line changes, each waiting for the guest's `gpiomon` line on the
 *    serial console (host change → guest event → console → host).
 *
 * Run: deno run --allow-all scripts/bench_gpio.ts [--requests 5000] [--edges 50]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { VIRTIO_GPIO_MSG_GET_VALUE } from "../devices/gpio/protocol.ts";
import {
  type GpioDaemonProcess,
  GpioDriver,
  SimControl,
  startGpioDaemon,
} from "../devices/gpio/testing.ts";
import { assertGuestSucceeded, startGuest } from "../tests/e2e/guest.ts";
import { median } from "./bench_rng.ts";

/** The `q`-quantile of `values` (nearest rank). */
function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Microseconds per GET_VALUE at depth 1. */
async function requestRoundTrips(daemon: GpioDaemonProcess, count: number): Promise<number[]> {
  const driver = await GpioDriver.connect(`${daemon.socketPrefix}0`);
  try {
    driver.ask(3, 0, 2); // SET_DIRECTION line 0 input
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      const start = performance.now();
      driver.ask(VIRTIO_GPIO_MSG_GET_VALUE, 0);
      out.push((performance.now() - start) * 1000);
    }
    return out;
  } finally {
    driver.close();
  }
}

/** Microseconds from sending a line change to the control socket to the eventq buffer back. */
async function irqLatencies(daemon: GpioDaemonProcess, count: number): Promise<number[]> {
  const driver = await GpioDriver.connect(`${daemon.socketPrefix}0`);
  await using control = await SimControl.connect(daemon.controlPath);
  try {
    driver.ask(3, 1, 2); // SET_DIRECTION line 1 input
    driver.ask(6, 1, 3); // SET_IRQ_TYPE line 1 EDGE_BOTH
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      driver.arm(1);
      const start = performance.now();
      await control.set(0, 1, ((i + 1) % 2) as 0 | 1);
      driver.events(1);
      out.push((performance.now() - start) * 1000);
    }
    return out;
  } finally {
    driver.close();
  }
}

/** One guest boot: a gpioget loop and console-paced edges. Returns ms per gpioget and per edge. */
async function guestRun(
  daemon: GpioDaemonProcess,
  options: { gets: number; edges: number },
): Promise<{ getMs: number; edgeMs: number[] }> {
  await using control = await SimControl.connect(daemon.controlPath);
  const guest = await startGuest({
    modules: ["gpio-virtio"],
    tools: ["gpiodetect", "gpioget", "gpiomon"],
    qemuArgs: [
      "-chardev",
      `socket,id=g0,path=${daemon.socketPrefix}0`,
      "-device",
      "vhost-user-gpio-pci,chardev=g0",
    ],
    script: `
      chip=$(gpiodetect | awk '{ print $1; exit }')
      s=$(cut -d' ' -f1 /proc/uptime)
      i=0
      while [ $i -lt ${options.gets} ]; do gpioget -c $chip 2 > /dev/null; i=$((i + 1)); done
      e=$(cut -d' ' -f1 /proc/uptime)
      echo "@@RESULT gets $(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }')"
      gpiomon -c $chip -e both -n ${options.edges} --banner -F "@@EV %E" 4
    `,
  });
  await guest.waitFor("Monitoring line");
  const edgeMs: number[] = [];
  for (let i = 1; i <= options.edges; i++) {
    const start = performance.now();
    await control.set(0, 4, (i % 2) as 0 | 1);
    for (;;) {
      if (guest.console.split("\n").filter((l) => l.startsWith("@@EV")).length >= i) break;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    edgeMs.push(performance.now() - start);
  }
  const result = await guest.result;
  assertGuestSucceeded(result);
  return { getMs: Number(result.results.gets) * 1000 / options.gets, edgeMs };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      requests: { type: "string", default: "5000" },
      edges: { type: "string", default: "50" },
      gets: { type: "string", default: "100" },
    },
  });
  const requests = Number(values.requests);
  const edges = Number(values.edges);
  const gets = Number(values.gets);
  const variants: [string, GpioDaemonProcess][] = [
    ["ours", await startGpioDaemon("s8", { args: ["--log-level", "error"] })],
    [
      "ours, --poll-us 0",
      await startGpioDaemon("s8", { args: ["--log-level", "error", "--poll-us", "0"] }),
    ],
  ];
  const rows: string[] = [];
  try {
    for (const [name, daemon] of variants) {
      const rtt = await requestRoundTrips(daemon, requests);
      const irq = await irqLatencies(daemon, Math.min(requests, 2000));
      const guest = await guestRun(daemon, { gets, edges });
      rows.push(
        `| ${name} | ${median(rtt).toFixed(1)} | ${quantile(rtt, 0.99).toFixed(1)} | ` +
          `${median(irq).toFixed(1)} | ${quantile(irq, 0.99).toFixed(1)} | ` +
          `${guest.getMs.toFixed(1)} | ${median(guest.edgeMs).toFixed(2)} |`,
      );
      console.error(`${name}: done`);
    }
  } finally {
    for (const [, daemon] of variants) await daemon.stop();
  }
  console.log(
    `\nvhost-device-gpio, simulated chip; host figures from the TS front-end at depth 1 ` +
      `(${requests} requests), guest figures under QEMU TCG (${gets} gpioget, ${edges} edges):\n`,
  );
  console.log(
    "| daemon | GET_VALUE µs median | p99 | line change → eventq µs median | p99 | guest gpioget ms | host change → guest gpiomon → console ms |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
}
