// The command line: upstream's options, one-line usage errors.
import assert from "node:assert/strict";
import { parseCommandLine, type ParsedOptions, UsageError } from "../../core/cli.ts";
import { devicesHelp, parseDeviceSpec, SCMI_COMMAND, scmiConfig } from "./config.ts";

function parse(args: string[]): ParsedOptions {
  const parsed = parseCommandLine(args, SCMI_COMMAND);
  assert.equal(typeof parsed, "object");
  return parsed as ParsedOptions;
}

Deno.test("scmi config: one socket, not suffixed; repeatable -d", () => {
  const config = scmiConfig(parse([
    "-s",
    "/tmp/scmi.sock",
    "-d",
    "fake",
    "--device",
    "iio,path=/sys/bus/iio/devices/iio:device0,channel=in_accel,name=acc",
  ]));
  assert.ok(!config.helpDevices);
  assert.deepEqual(config.address, { path: "/tmp/scmi.sock" });
  assert.deepEqual(config.devices.map((d) => [d.id, Object.fromEntries(d.properties)]), [
    ["fake", {}],
    ["iio", { path: "/sys/bus/iio/devices/iio:device0", channel: "in_accel", name: "acc" }],
  ]);
  const fd = scmiConfig(parse(["--socket-fd", "3"]));
  assert.ok(!fd.helpDevices && "fd" in fd.address && fd.address.fd === 3);
  assert.ok(!fd.helpDevices && fd.devices.length === 0, "zero devices allowed, as upstream");
  assert.deepEqual(scmiConfig(parse(["--help-devices"])), { helpDevices: true });
});

Deno.test("scmi config: unknown ids and properties are one-line usage errors", () => {
  const cases: [string[], RegExp][] = [
    [["-d", "fake"], /--socket-path \(or --socket-fd\) is required/],
    [["-s", "x", "-d", "gpu"], /unknown device 'gpu'/],
    [["-s", "x", "-d", "fake,color=red"], /device fake has no property 'color' \(allowed: name\)/],
    [["-s", "x", "-d", "fake,name"], /'name' is not PROPERTY=VALUE/],
    [["-s", "x", "-d", "fake,name=a,name=b"], /property 'name' repeated/],
    [["-s", "x", "-d", "fake,name="], /property 'name' is empty/],
    [["-s", "x", "-d", "fake,name=0123456789abcdef"], /longer than 15 characters/],
    [["-s", "x", "-d", "iio,path=/x"], /device iio needs 'channel'/],
    [["-s", "x", "-d", "iio"], /needs 'path' and 'channel'/],
    [["--help-devices", "-s", "x"], /--help-devices cannot be used with --socket-path/],
    [["-s", "x", "--log-level", "loud"], /--log-level/],
  ];
  for (const [args, pattern] of cases) {
    assert.throws(() => scmiConfig(parse(args)), (e) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    }, args.join(" "));
  }
  assert.throws(() => parseCommandLine(["-s", "x", "-c", "2"], SCMI_COMMAND), UsageError);
});

Deno.test("scmi config: parseDeviceSpec and --help-devices list both kinds", () => {
  assert.equal(parseDeviceSpec("fake,name=acc0").properties.get("name"), "acc0");
  const help = devicesHelp();
  for (const text of ["- fake:", "- iio:", "path:", "channel:", "name:", "--device iio,"]) {
    assert.ok(help.includes(text), text);
  }
});
