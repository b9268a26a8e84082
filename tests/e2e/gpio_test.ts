// vhost-device-gpio under real QEMU (vhost-user-gpio-pci): the guest's
// gpio-virtio driver and the libgpiod v2 tools use a simulated chip whose
// inputs the host drives through the daemon's control socket; a small
// guest kernel module (tests/e2e/guest_modules/gpio-level-irq.c) consumes a
// level-triggered interrupt, which no userspace GPIO API can ask for; the VM
// is paused and continued through QEMU's monitor with an interrupt pending.
// Needs root (QEMU, the guest kit). Run: deno test --allow-all tests/e2e/gpio_test.ts
import assert from "node:assert/strict";
import { SimControl, startGpioDaemon } from "../../devices/gpio/testing.ts";
import {
  assertGuestSucceeded,
  bootGuest,
  consoleTail,
  ensureGuestKit,
  type Guest,
  type GuestOptions,
  type GuestResult,
  startGuest,
} from "./guest.ts";

const TOOLS = ["gpiodetect", "gpioinfo", "gpioget", "gpioset", "gpiomon"];
/** Edges in the paced burst: each waits for the guest's event before the next. */
const BURST = 120;

function gpioGuest(socket: string, script: string): GuestOptions {
  return {
    modules: ["gpio-virtio", "gpio-level-irq"],
    tools: TOOLS,
    qemuArgs: [
      "-chardev",
      `socket,id=g0,path=${socket}`,
      "-device",
      "vhost-user-gpio-pci,chardev=g0",
    ],
    script: `
      chip=$(gpiodetect | awk '/\\(8 lines\\)/ { print $1; exit }')
      echo "@@RESULT chip $chip"
      ${script}
    `,
  };
}

function check(condition: boolean, message: string, result: GuestResult | string): void {
  if (!condition) {
    const text = typeof result === "string" ? result : result.console;
    throw new Error(`${message}\nlast console lines:\n${consoleTail(text)}`);
  }
}

/** Waits until the guest's console has `count` lines matching `pattern`; returns them. */
async function waitForLines(
  guest: Guest,
  pattern: RegExp,
  options: { count: number; timeoutMs?: number },
): Promise<string[]> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    const lines = guest.console.split("\n").filter((line) => pattern.test(line));
    if (lines.length >= options.count) return lines;
    check(Date.now() < deadline, `${options.count}× ${pattern} not seen in time`, guest.console);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** QEMU's human monitor on a Unix socket: one command at a time, up to the next prompt. */
class Monitor implements AsyncDisposable {
  readonly #conn: Deno.UnixConn;
  #text = "";

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  static async connect(path: string): Promise<Monitor> {
    const monitor = new Monitor(await Deno.connect({ transport: "unix", path }));
    await monitor.#prompt();
    return monitor;
  }

  /** Runs `command` and waits for QEMU's next prompt (the command has taken effect). */
  async command(command: string): Promise<void> {
    await this.#conn.write(new TextEncoder().encode(command + "\n"));
    await this.#prompt();
  }

  async #prompt(): Promise<void> {
    const buffer = new Uint8Array(4096);
    while (!this.#text.includes("(qemu) ")) {
      const n = await this.#conn.read(buffer);
      if (n === null) throw new Error(`the monitor closed: ${this.#text}`);
      this.#text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    this.#text = this.#text.slice(this.#text.indexOf("(qemu) ") + 7);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#conn.close();
    return Promise.resolve();
  }
}

Deno.test("gpio e2e: the guest's gpio-virtio and libgpiod tools on a simulated chip; edges paced and complete; level irq; VM paused; QEMU restarted", async () => {
  await using daemon = await startGpioDaemon("s8");
  await using control = await SimControl.connect(daemon.controlPath);
  const socket = `${daemon.socketPrefix}0`;
  // The outside world before the guest boots: line 2 pulled high, line 3 low.
  await control.set(0, 2, 1);

  const monitorPath = `${daemon.socketPrefix}.monitor`;
  const options = gpioGuest(
    socket,
    `
    echo "@@RESULT detect $(gpiodetect)"
    echo "@@RESULT info $(gpioinfo -c $chip | tr '\\t\\n' ' |')"
    echo "@@RESULT get $(gpioget --numeric -c $chip 2 3)"
    # An output the host sees; line 7 is the host's acknowledgement.
    gpioset -c $chip 1=1 &
    setter=$!
    echo "@@SET"
    n=0
    until [ "$(gpioget --numeric -c $chip 7)" = 1 ]; do
      n=$((n + 1)); [ $n -gt 600 ] && exit 3; sleep 0.05
    done
    kill $setter; wait $setter
    echo "@@RESULT released $(gpioinfo -c $chip 1 | tr '\\t' ' ')"
    # Both edges, a long burst paced by the host on our output.
    gpiomon -c $chip -e both -n ${BURST} --banner -F "@@EV %o %E" 4
    echo "@@RESULT both_done $?"
    gpiomon -c $chip -e rising -n 3 --banner -F "@@RISE %o %E" 5
    gpiomon -c $chip -e falling -n 3 --banner -F "@@FALL %o %E" 6
    # Across a VM pause (the host stops and continues QEMU): an edge during it, one after.
    gpiomon -c $chip -e both -n 2 --banner -F "@@PAUSE %o %E" 3
    echo "@@RESULT edges_done"
    # A level-high interrupt on line 0 (a kernel consumer: tests/e2e/guest_modules).
    count=/sys/module/gpio_level_irq/parameters/count
    label=$(gpiodetect | sed -n "s/^$chip \\[\\(.*\\)\\] .*/\\1/p")
    echo "$label 0 high" > /sys/module/gpio_level_irq/parameters/attach || exit 4
    echo "@@RESULT level_idle $(cat $count)"
    echo "@@LEVEL attached"
    n=0
    until [ "$(cat $count)" -ge 20 ]; do n=$((n + 1)); [ $n -gt 600 ] && exit 5; sleep 0.05; done
    echo "@@LEVEL refired"
    n=0
    until [ "$(gpioget --numeric -c $chip 7)" = 0 ]; do
      n=$((n + 1)); [ $n -gt 600 ] && exit 6; sleep 0.05
    done
    sleep 0.5
    a=$(cat $count)
    sleep 1
    echo "@@RESULT level_released $a $(cat $count)"
    echo "" > /sys/module/gpio_level_irq/parameters/attach
    `,
  );
  // QEMU's human monitor, to pause and continue the VM.
  options.qemuArgs!.push("-monitor", `unix:${monitorPath},server=on,wait=off`);
  const guest = await startGuest(options);
  try {
    // gpioset: the host side sees the line driven high.
    await guest.waitFor("@@SET");
    for (let i = 0;; i++) {
      const line = await control.get(0, 1);
      if (line.direction === "out" && line.value === 1) break;
      check(i < 3000, `line 1 is ${JSON.stringify(line)}, not a high output`, guest.console);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await control.set(0, 7, 1);

    // EDGE_BOTH: each edge waits for the previous event to reach gpiomon.
    await guest.waitFor("Monitoring line");
    for (let i = 1; i <= BURST; i++) {
      await control.set(0, 4, (i % 2) as 0 | 1);
      await waitForLines(guest, /^@@EV 4 /, { count: i });
    }
    // Rising only, then falling only: the other edges come and go unreported.
    await waitForLines(guest, /Monitoring line/, { count: 2 });
    for (let i = 1; i <= 3; i++) {
      await control.set(0, 5, 1);
      await waitForLines(guest, /^@@RISE 5 /, { count: i });
      await control.set(0, 5, 0);
    }
    await waitForLines(guest, /Monitoring line/, { count: 3 });
    for (let i = 1; i <= 3; i++) {
      await control.set(0, 6, 1);
      await control.set(0, 6, 0);
      await waitForLines(guest, /^@@FALL 6 /, { count: i });
    }
    // stop/cont: QEMU stops the rings and resumes them; the held eventq buffer must still fire.
    await waitForLines(guest, /Monitoring line/, { count: 4 });
    {
      await using monitor = await Monitor.connect(monitorPath);
      await monitor.command("stop");
      await control.set(0, 3, 1);
      await monitor.command("cont");
    }
    await waitForLines(guest, /^@@PAUSE 3 rising/, { count: 1 });
    await control.set(0, 3, 0);
    await waitForLines(guest, /^@@PAUSE 3 falling/, { count: 1 });
    // Level high: fires, re-fires while asserted (the guest counts), stops when released.
    await guest.waitFor("@@LEVEL attached");
    await control.set(0, 0, 1);
    await guest.waitFor("@@LEVEL refired");
    await control.send("set 0 0 0", "set 0 7 0");
  } catch (error) {
    guest.kill();
    await guest.result;
    throw error;
  }
  const first = await guest.result;
  assertGuestSucceeded(first);
  check(
    /\(8 lines\)/.test(first.results.detect ?? ""),
    `gpiodetect: ${first.results.detect}`,
    first,
  );
  for (let i = 0; i < 8; i++) {
    check((first.results.info ?? "").includes(`"line${i}"`), `gpioinfo lacks line${i}`, first);
  }
  check(first.results.get === "1 0", `gpioget 2 3 read "${first.results.get}"`, first);
  // Linux keeps showing the last direction of a free line; the consumer is gone.
  check(
    /"line1"/.test(first.results.released ?? "") &&
      !/gpioset/.test(first.results.released ?? ""),
    `after gpioset: ${first.results.released}`,
    first,
  );
  const events = first.console.split("\n").filter((l) => l.startsWith("@@EV 4 ")).map((l) =>
    l.trim()
  );
  check(events.length === BURST, `${events.length} of ${BURST} edges reached gpiomon`, first);
  events.forEach((event, i) => {
    check(event === `@@EV 4 ${i % 2 === 0 ? "rising" : "falling"}`, `edge ${i}: ${event}`, first);
  });
  check(first.results.both_done === "0", `gpiomon exited ${first.results.both_done}`, first);
  const rises = first.console.split("\n").filter((l) => l.startsWith("@@RISE 5 "));
  const falls = first.console.split("\n").filter((l) => l.startsWith("@@FALL 6 "));
  check(rises.every((l) => l.trim() === "@@RISE 5 rising") && rises.length === 3, "rising", first);
  check(
    falls.every((l) => l.trim() === "@@FALL 6 falling") && falls.length === 3,
    "falling",
    first,
  );
  check(
    first.results.level_idle === "0",
    `level irq fired while low: ${first.results.level_idle}`,
    first,
  );
  const [before, after] = (first.results.level_released ?? "").split(" ").map(Number);
  check(
    before >= 20 && before === after,
    `level irq count after release: ${before} → ${after}`,
    first,
  );
  await daemon.waitForLog("waiting for a front-end");
  const fds = daemon.fds();
  assert.equal((await control.get(0, 1)).direction, "none", "the guest's lines are released");

  // A restarted QEMU against the same daemon: the chip and its inputs are still there.
  const again = await startGuest(
    gpioGuest(socket, `echo "@@RESULT get $(gpioget --numeric -c $chip 2 7)"`),
  );
  const second = await again.result;
  assertGuestSucceeded(second);
  check(
    second.results.get === "1 0",
    `after restart gpioget 2 7 read "${second.results.get}"`,
    second,
  );
  await daemon.waitForLog("waiting for a front-end", { count: 2 });
  await daemon.expectFds(fds, { what: "the daemon's fds across QEMU restarts" });
  assert.ok(daemon.running, daemon.log);
});

Deno.test("gpio e2e: bookworm's QEMU 7.2: names, get and set work; it drops VIRTIO_GPIO_F_IRQ, so no interrupts", async () => {
  const kit = await ensureGuestKit();
  await using daemon = await startGpioDaemon("s8");
  await using control = await SimControl.connect(daemon.controlPath);
  await control.set(0, 2, 1);
  const result = await bootGuest({
    ...gpioGuest(
      `${daemon.socketPrefix}0`,
      `
      echo "@@RESULT names $(gpioinfo -c $chip | grep -c '"line[0-7]"')"
      echo "@@RESULT get $(gpioget --numeric -c $chip 2 3)"
      gpioset -c $chip -t 0 1=1
      echo "@@RESULT set $?"
      # QEMU 7.2 never offers the interrupt feature to the guest: no irq for the line.
      gpiomon -c $chip -n 1 4 2>&1 | tr '\n' ' ' | sed 's/^/@@RESULT monitor /'
      echo
      `,
    ),
    qemu: kit.qemu72,
  });
  assertGuestSucceeded(result);
  check(result.results.names === "8", `gpioinfo named ${result.results.names} lines`, result);
  check(result.results.get === "1 0", `gpioget 2 3 read "${result.results.get}"`, result);
  check(result.results.set === "0", `gpioset exited ${result.results.set}`, result);
  check(
    /No such device/.test(result.results.monitor ?? ""),
    `gpiomon: ${result.results.monitor}`,
    result,
  );
  assert.doesNotMatch(result.qemuStderr, /vhost|error/i, "QEMU complained");
  await daemon.waitForLog("line 1 out, value 1");
  await daemon.waitForLog("interrupts off (no VIRTIO_GPIO_F_IRQ)");
});
