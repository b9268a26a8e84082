import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../../core/cli.ts";
import { adaptersNamed, I2C_COMMAND, i2cConfig, parseDeviceList } from "./config.ts";

const names: Record<string, number[]> = {
  "SMBus stub driver": [3],
  "i915 gmbus dpd": [5],
  "twin": [6, 7],
};
const lookup = (name: string): number[] => names[name] ?? [];

function config(args: string[]) {
  const parsed = parseCommandLine(args, I2C_COMMAND);
  if (typeof parsed === "string") throw new Error(parsed);
  return i2cConfig(parsed, lookup);
}

Deno.test("i2c config: upstream's syntax, decimal and 0x addresses, adapters by number or name", () => {
  const c = config(["-s", "/tmp/i2c.sock", "-c", "2", "-l", "2:32:21,SMBus stub driver:0x50:81"]);
  assert.deepEqual(c.addresses, [{ path: "/tmp/i2c.sock0" }, { path: "/tmp/i2c.sock1" }]);
  assert.deepEqual(c.adapters, [
    { path: "/dev/i2c-2", addresses: [32, 21] },
    { path: "/dev/i2c-3", addresses: [0x50, 81] },
  ]);
  assert.deepEqual(c.simulated, []);
  const names = parseDeviceList("i915 gmbus dpd:32,  twin :1", (n) => n === "twin" ? [9] : [5]);
  assert.deepEqual(names.map((a) => a.path), ["/dev/i2c-5", "/dev/i2c-9"]);
  const fd = config(["--socket-fd", "3", "--simulated-device", "eeprom@0x50"]);
  assert.deepEqual(fd.addresses, [{ fd: 3 }]);
  assert.deepEqual(fd.simulated, [{ kind: "eeprom", address: 0x50 }]);
  const both = config([
    "-s",
    "x",
    "-l",
    "1:0x20",
    "--simulated-device",
    "eeprom@80",
    "--simulated-device",
    "regs@0x21",
  ]);
  assert.deepEqual(both.simulated.map((s) => s.kind), ["eeprom", "regs"]);
});

Deno.test("i2c config: refusals, one line each naming the problem", () => {
  const refused: [string[], RegExp][] = [
    [["-s", "x"], /--device-list is required/],
    [["-l", "1:32"], /--socket-path \(or --socket-fd\) is required/],
    [["-s", "x", "-c", "0", "-l", "1:32"], /at least 1/],
    [["-s", "x", "-l", "1:128"], /'128'.*up to 127/],
    [["-s", "x", "-l", "1:0x80"], /'0x80'/],
    [["-s", "x", "-l", "1:-1"], /'-1'.*not a number/],
    [["-s", "x", "-l", "1:abc"], /'abc'/],
    [["-s", "x", "-l", "1"], /no client address/],
    [["-s", "x", "-l", "1:"], /invalid address ''/],
    [["-s", "x", "-l", ":32"], /no adapter/],
    [["-s", "x", "-l", "1:32,"], /no adapter/],
    [["-s", "x", "-l", "1:32:32"], /address 32 \(0x20\) is given twice/],
    [["-s", "x", "-l", "1:32,2:0x20"], /given twice \(i2c-1 and i2c-2\)/],
    [["-s", "x", "-l", "1:32,1:33"], /i2c-1 is listed twice/],
    [["-s", "x", "-l", "3:32,SMBus stub driver:33"], /i2c-3 is listed twice/],
    [["-s", "x", "-l", "nosuch:32"], /no I2C adapter is named 'nosuch'/],
    [["-s", "x", "-l", "twin:32"], /'twin' is ambiguous \(i2c-6, i2c-7\)/],
    [["-s", "x", "--simulated-device", "flash@0x50"], /kind must be eeprom or regs/],
    [["-s", "x", "--simulated-device", "eeprom"], /expected KIND@ADDR/],
    [["-s", "x", "-l", "1:80", "--simulated-device", "eeprom@0x50"], /0x50\) is already used/],
    [["-s", "x", "--simulated-device", "eeprom@1", "--simulated-device", "regs@1"], /already/],
    [["-s", "x", "-l", "1:32", "--log-level", "loud"], /--log-level/],
  ];
  for (const [args, pattern] of refused) {
    assert.throws(
      () => config(args),
      (e: Error) => e instanceof UsageError && pattern.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("i2c config: adapters found by sysfs name", () => {
  const root = Deno.makeTempDirSync();
  try {
    for (
      const [entry, name] of [
        ["i2c-0", "SMBus I801 adapter\n"],
        ["i2c-4", " SMBus stub driver \n"],
        ["0-0050", "24c02\n"],
      ]
    ) {
      Deno.mkdirSync(`${root}/${entry}`);
      Deno.writeTextFileSync(`${root}/${entry}/name`, name);
    }
    assert.deepEqual(adaptersNamed("SMBus stub driver", root), [4]);
    assert.deepEqual(adaptersNamed("24c02", root), []);
    assert.deepEqual(adaptersNamed("x", `${root}/missing`), []);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
