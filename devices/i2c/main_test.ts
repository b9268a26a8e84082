// The vhost-device-i2c binary's command line as a user meets it: exit codes
// and one-line errors, --help, --print-capabilities, a missing adapter.
import assert from "node:assert/strict";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: "null",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code, stdout: text(stdout), stderr: text(stderr) };
}

Deno.test("i2c main: --print-capabilities, --help, usage errors exit 2, a missing adapter exits 1", async () => {
  const caps = await run("--print-capabilities");
  assert.equal(caps.code, 0);
  assert.deepEqual(JSON.parse(caps.stdout), { type: "i2c" });
  const help = await run("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /-l, --device-list <DEVICE_LIST>/);
  assert.match(help.stdout, /--simulated-device <KIND@ADDR>/);
  const usage = await run("-s", "/tmp/x", "-l", "1:128");
  assert.equal(usage.code, 2);
  assert.equal(
    usage.stderr,
    "vhost-device-i2c: error: invalid address '128' in --device-list: 7-bit addresses go up to 127 (0x7f)\n",
  );
  const unknown = await run("-s", "/tmp/x", "--bogus");
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stderr.trim().split("\n").length, 1);
  const dir = await Deno.makeTempDir();
  try {
    const missing = await run("-s", `${dir}/i2c.sock`, "-l", "99999:0x50");
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /^vhost-device-i2c: error: open\(\/dev\/i2c-99999\) failed: ENOENT/,
    );
    assert.equal(missing.stderr.trim().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
