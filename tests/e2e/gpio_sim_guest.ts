// Runs INSIDE the guest of gpio_sim_test.ts: vhost-device-gpio on a real
// kernel GPIO chip (gpio-sim) through libgpiod, driven by the TypeScript
// front-end in the same guest (one kernel for the memfd memory); gpio-sim's
// sysfs attributes play the outside world. Ignored elsewhere (it needs the
// chip the guest script configures: GPIO_SIM_CHIP, GPIO_SIM_SYSFS). Not named
// *_test.ts, so the host's test runs leave it alone.
import assert from "node:assert/strict";
import { CONSUMER } from "../../devices/gpio/libgpiod_chip.ts";
import {
  VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH as EDGE_BOTH,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING as EDGE_RISING,
  VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH as LEVEL_HIGH,
  VIRTIO_GPIO_IRQ_TYPE_NONE as IRQ_NONE,
  VIRTIO_GPIO_MSG_GET_DIRECTION as GET_DIRECTION,
  VIRTIO_GPIO_MSG_GET_LINE_NAMES as GET_LINE_NAMES,
  VIRTIO_GPIO_MSG_GET_VALUE as GET_VALUE,
  VIRTIO_GPIO_MSG_SET_DIRECTION as SET_DIRECTION,
  VIRTIO_GPIO_MSG_SET_IRQ_TYPE as SET_IRQ_TYPE,
  VIRTIO_GPIO_MSG_SET_VALUE as SET_VALUE,
} from "../../devices/gpio/protocol.ts";
import { encodeRequest, GpioDriver, startGpioDaemon } from "../../devices/gpio/testing.ts";
import { GpiodChip } from "../../ffi/gpiod.ts";

const chipName = Deno.env.get("GPIO_SIM_CHIP");
const sysfs = Deno.env.get("GPIO_SIM_SYSFS");
const [OK, ERR, OUT, IN, NONE, VALID, INVALID] = [0, 1, 1, 2, 0, 1, 0];

function pull(line: number, up: boolean): void {
  Deno.writeTextFileSync(`${sysfs}/sim_gpio${line}/pull`, up ? "pull-up" : "pull-down");
}

function simValue(line: number): string {
  return Deno.readTextFileSync(`${sysfs}/sim_gpio${line}/value`).trim();
}

Deno.test({
  name: "gpio on gpio-sim: names, the hog held, outputs read back, pulls read and interrupting",
  ignore: chipName === undefined || sysfs === undefined,
  async fn() {
    const number = Number(/^gpiochip(\d+)$/.exec(chipName!)?.[1]);
    await using daemon = await startGpioDaemon(String(number));
    const socket = `${daemon.socketPrefix}0`;
    using chip = {
      chip: GpiodChip.open(`/dev/${chipName}`),
      [Symbol.dispose]() {
        this.chip.close();
      },
    };
    const d = await GpioDriver.connect(socket);
    try {
      const config = d.frontend.getConfig(0, 8);
      const view = new DataView(config.buffer, config.byteOffset, 8);
      assert.equal(view.getUint16(0, true), 8, "ngpio is gpio-sim's num_lines");
      const size = view.getUint32(4, true);
      const names = d.call({ readable: [encodeRequest(GET_LINE_NAMES, 0)], writable: [1 + size] });
      assert.equal(names.data[0], OK);
      assert.deepEqual(
        new TextDecoder().decode(names.data.subarray(1)).split("\0").slice(0, 8),
        ["led0", "", "", "button", "alarm", "relay", "", ""],
      );

      // The hog: the kernel holds it; the guest sees an output it cannot take.
      assert.deepEqual(d.ask(GET_DIRECTION, 5), [OK, OUT]);
      assert.deepEqual(d.ask(SET_DIRECTION, 5, IN), [ERR, 0]);
      const hog = chip.chip.lineInfo(5);
      assert.ok(hog.used && hog.consumer === "hog", JSON.stringify(hog));

      // An output, read back through gpio-sim's sysfs value.
      assert.deepEqual(d.ask(SET_VALUE, 0, 1), [OK, 0]);
      assert.deepEqual(d.ask(SET_DIRECTION, 0, OUT), [OK, 0]);
      assert.equal(simValue(0), "1");
      assert.deepEqual(d.ask(SET_VALUE, 0, 0), [OK, 0]);
      assert.equal(simValue(0), "0");
      const led = chip.chip.lineInfo(0);
      assert.ok(led.used && led.consumer === CONSUMER && led.direction === "output");

      // An input follows sysfs pulls.
      assert.deepEqual(d.ask(SET_DIRECTION, 3, IN), [OK, 0]);
      pull(3, true);
      assert.deepEqual(d.ask(GET_VALUE, 3), [OK, 1]);
      pull(3, false);
      assert.deepEqual(d.ask(GET_VALUE, 3), [OK, 0]);

      // Edges from the request's fd in the daemon's epoll set.
      assert.deepEqual(d.ask(SET_IRQ_TYPE, 3, EDGE_BOTH), [OK, 0]);
      d.arm(3);
      pull(3, true);
      assert.deepEqual(d.events(1), [[3, VALID]]);
      d.arm(3);
      pull(3, false);
      assert.deepEqual(d.events(1), [[3, VALID]]);
      // Latched while masked.
      pull(3, true);
      d.arm(3);
      assert.deepEqual(d.events(1), [[3, VALID]]);

      // Level high, emulated from edges and the value: re-fires while asserted.
      assert.deepEqual(d.ask(SET_DIRECTION, 4, IN), [OK, 0]);
      assert.deepEqual(d.ask(SET_IRQ_TYPE, 4, LEVEL_HIGH), [OK, 0]);
      d.arm(4);
      pull(4, true);
      assert.deepEqual(d.events(1), [[4, VALID]]);
      d.arm(4);
      assert.deepEqual(d.events(1), [[4, VALID]], "still asserted");
      pull(4, false);
      d.arm(4);
      // Line 3 (EDGE_BOTH, now high) falls: its event comes while line 4 stays quiet.
      d.arm(3);
      pull(3, false);
      assert.deepEqual(d.events(1), [[3, VALID]]);
      assert.deepEqual(d.ask(SET_IRQ_TYPE, 4, IRQ_NONE), [OK, 0]);
      assert.deepEqual(d.events(1), [[4, INVALID]]);
      // A rising-only line ignores falls.
      assert.deepEqual(d.ask(SET_IRQ_TYPE, 3, IRQ_NONE), [OK, 0]);
      assert.deepEqual(d.ask(SET_IRQ_TYPE, 3, EDGE_RISING), [OK, 0]);
      d.arm(3);
      pull(3, true);
      assert.deepEqual(d.events(1), [[3, VALID]]);

      assert.deepEqual(d.ask(SET_DIRECTION, 0, NONE), [OK, 0]);
      assert.equal(chip.chip.lineInfo(0).used, false, "NONE releases the line");
    } finally {
      d.close();
    }
    await daemon.waitForLog("waiting for a front-end");
    for (const line of [3, 4]) {
      assert.equal(chip.chip.lineInfo(line).used, false, `line ${line} released on hang-up`);
    }
    const fds = daemon.fds();
    const again = await GpioDriver.connect(socket);
    try {
      assert.deepEqual(again.ask(SET_DIRECTION, 3, IN), [OK, 0]);
      assert.deepEqual(again.ask(SET_IRQ_TYPE, 3, EDGE_BOTH), [OK, 0]);
      again.arm(3);
      pull(3, false);
      assert.deepEqual(again.events(1), [[3, VALID]]);
    } finally {
      again.close();
    }
    await daemon.waitForLog("waiting for a front-end", { count: 2 });
    await daemon.expectFds(fds);
  },
});
