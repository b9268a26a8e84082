// The command line of the real binary: exit codes and one-line errors.
import assert from "node:assert/strict";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin: "null",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test("vhost-device-gpio CLI: capabilities, help, usage errors exit 2, a missing chip exits 1", async () => {
  assert.deepEqual(await run("--print-capabilities"), {
    code: 0,
    stdout: '{"type":"gpio"}\n',
    stderr: "",
  });
  const help = await run("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--device-list <DEVICE_LIST>/);
  for (
    const args of [
      ["-s", "/tmp/x", "-l", "0:0", "-c", "2"],
      ["-s", "/tmp/x"],
      ["-s", "/tmp/x", "-l", "s2", "--bogus"],
      ["-s", "/tmp/x", "-c", "0", "-l", "s1"],
    ]
  ) {
    const result = await run(...args);
    assert.equal(result.code, 2, args.join(" "));
    assert.match(result.stderr, /^vhost-device-gpio: error: .+\n$/, result.stderr);
  }
  const missing = await run("-s", "/tmp/x", "-l", "99");
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr,
    "vhost-device-gpio: error: gpiod_chip_open(/dev/gpiochip99) failed: ENOENT (2)\n",
  );
});
