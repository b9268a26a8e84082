import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../../core/cli.ts";
import { GPIO_COMMAND, gpioConfig, parseDeviceList } from "./config.ts";

function config(...args: string[]) {
  const parsed = parseCommandLine(args, GPIO_COMMAND);
  if (typeof parsed === "string") throw new Error(parsed);
  return gpioConfig(parsed);
}

Deno.test("--device-list: real and simulated chips, one per socket", () => {
  assert.deepEqual(parseDeviceList("3:s4:6:s1"), [
    { kind: "real", number: 3, path: "/dev/gpiochip3" },
    { kind: "simulated", lines: 4 },
    { kind: "real", number: 6, path: "/dev/gpiochip6" },
    { kind: "simulated", lines: 1 },
  ]);
  const c = config("-s", "/tmp/g.sock", "-c", "2", "-l", "0:s8", "--sim-control", "/tmp/c");
  assert.deepEqual(c.addresses, [{ path: "/tmp/g.sock0" }, { path: "/tmp/g.sock1" }]);
  assert.equal(c.simControl, "/tmp/c");
  assert.deepEqual(config("--socket-fd", "3", "-l", "s2").addresses, [{ fd: 3 }]);
});

Deno.test("--device-list: mistakes are usage errors naming the problem", () => {
  const bad = (args: string[], pattern: RegExp) =>
    assert.throws(() => config(...args), (e) => e instanceof UsageError && pattern.test(e.message));
  bad(["-s", "/tmp/g", "-l", "0:0", "-c", "2"], /gpiochip0 is listed twice/);
  bad(["-s", "/tmp/g", "-l", "0:1"], /2 chip\(s\) for 1 socket/);
  bad(["-s", "/tmp/g", "-l", "x1"], /'x1' is not N/);
  bad(["-s", "/tmp/g", "-l", "s0"], /1 to 65535 lines, not 0/);
  bad(["-s", "/tmp/g", "-l", "s65536"], /not 65536/);
  bad(["-s", "/tmp/g", "-l", ""], /'' is not N/);
  bad(["-s", "/tmp/g"], /--device-list is required/);
  bad(["-l", "s1"], /--socket-path/);
  bad(["-s", "/tmp/g", "-l", "0", "--sim-control", "/tmp/c"], /needs a simulated chip/);
  bad(["-s", "/tmp/g", "-l", "s1", "--log-level", "loud"], /--log-level/);
  // Simulated chips may repeat: each is its own chip.
  assert.equal(config("-s", "/tmp/g", "-c", "2", "-l", "s2:s2").chips.length, 2);
});
