import assert from "node:assert/strict";
import { EventLoop } from "../../core/event_loop.ts";
import { Logger } from "../../core/log.ts";
import { openLibgpiodChip } from "./libgpiod_chip.ts";

// The chip's behaviour against a kernel chip is tested in a guest with
// gpio-sim (tests/e2e/gpio_sim_test.ts); this host has no GPIO.
Deno.test("LibgpiodChip: a missing chip fails to open with the path in the message", () => {
  const loop = new EventLoop(new Logger("test", { level: "off" }));
  try {
    assert.throws(
      () => openLibgpiodChip("/dev/gpiochip-absent", { loop }),
      /gpiochip-absent.*ENOENT/,
    );
  } finally {
    loop.close();
  }
});
