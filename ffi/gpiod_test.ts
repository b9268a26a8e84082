import assert from "node:assert/strict";
import { SyscallError } from "./errno.ts";
import { GpiodChip, gpiodVersion, LibgpiodMissingError } from "./gpiod.ts";

// A real chip is exercised inside a guest with gpio-sim (tests/e2e); this
// host has no /dev/gpiochip*.
Deno.test("libgpiod: the library loads and is v2", () => {
  assert.match(gpiodVersion(), /^2\./);
});

Deno.test("libgpiod: opening a missing chip names it and the errno", () => {
  assert.throws(
    () => GpiodChip.open("/dev/gpiochip-absent"),
    (e) =>
      e instanceof SyscallError && e.message.includes("gpiod_chip_open(/dev/gpiochip-absent)") &&
      e.message.includes("ENOENT"),
  );
});

Deno.test("libgpiod: a missing library is one line naming the package", () => {
  const message = new LibgpiodMissingError("libgpiod.so.3: cannot open shared object file").message;
  assert.match(message, /install the package libgpiod3/);
  assert.ok(!message.includes("\n"));
});
