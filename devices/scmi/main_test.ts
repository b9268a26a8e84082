// The vhost-device-scmi process: exit statuses and one-line errors.
import assert from "node:assert/strict";
import { VERSION } from "../../core/cli.ts";
import { implementationVersion } from "./main.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("scmi main: --help, --help-devices, --print-capabilities, usage errors exit 2", async () => {
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  for (const option of ["--socket-path", "--device", "--help-devices", "--socket-fd"]) {
    assert.ok(help.stdout.includes(option), option);
  }
  const devices = await run(["--help-devices"]);
  assert.equal(devices.code, 0);
  assert.match(devices.stdout, /- iio: /);
  const capabilities = await run(["--print-capabilities"]);
  assert.deepEqual([capabilities.code, JSON.parse(capabilities.stdout)], [0, { type: "scmi" }]);
  const unknown = await run(["-s", "/tmp/x.sock", "-d", "thermometer"]);
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stderr.trim().split("\n").length, 1);
  assert.match(unknown.stderr, /unknown device 'thermometer'/);
  const property = await run(["-s", "/tmp/x.sock", "-d", "fake,path=/x"]);
  assert.equal(property.code, 2);
  assert.match(property.stderr, /no property 'path'/);
  // A device whose host side is missing fails the start (status 1), naming it.
  const missing = await run(["-s", "/tmp/x.sock", "-d", "iio,path=/nonexistent,channel=in_temp"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /device 0 \(iio\): iio device directory \/nonexistent/);
});

Deno.test("scmi main: the implementation version encodes the project's version", () => {
  assert.equal(implementationVersion("0.1.0"), 0x000100);
  assert.equal(implementationVersion("1.2.3"), 0x010203);
  assert.equal(typeof implementationVersion(VERSION), "number");
});
