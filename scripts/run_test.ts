// The README's command that runs a device: scripts/run.sh <device> [flags…].
import assert from "node:assert/strict";

const RUN = new URL("./run.sh", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("bash", { args: [RUN, ...args] }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("run.sh: starts the named device with the flags given", async () => {
  for (const device of ["rng", "vsock", "scsi"]) {
    const { code, stdout, stderr } = await run([device, "--print-capabilities"]);
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout), { type: device });
  }
});

Deno.test("run.sh: an unknown device is a one-line error naming the devices, exit 2", async () => {
  const { code, stderr } = await run(["nosuch"]);
  assert.equal(code, 2);
  assert.match(stderr.trim(), /^run\.sh: no device 'nosuch' \(have: .*rng.*vsock.*\)$/);
});
