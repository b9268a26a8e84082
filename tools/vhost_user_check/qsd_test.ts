// vhost-user-check against a third-party back-end: qemu-storage-daemon's
// vhost-user-blk export (scripts/install_qemu.sh installs it), as the README
// reports it.
import assert from "node:assert/strict";
import { check, checkConfig, COMMAND } from "./main.ts";
import { parseCommandLine } from "../../core/cli.ts";
import { renderText } from "./report.ts";

const QSD = "/usr/bin/qemu-storage-daemon";
const present = (() => {
  try {
    return Deno.statSync(QSD).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "vhost-user-check: qemu-storage-daemon's blk export passes all but SET_CONFIG",
  ignore: !present,
  fn: async () => {
    const exec = `sh -c 'truncate -s 16M {dir}/disk.img && exec ${QSD} ` +
      `--blockdev driver=file,node-name=disk0,filename={dir}/disk.img ` +
      `--export type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path={socket},writable=on'`;
    const options = parseCommandLine(["--exec", exec, "--device", "blk"], COMMAND);
    if (typeof options === "string") throw new Error(options);
    const report = await check(checkConfig(options));
    const text = renderText(report);
    assert.deepEqual(
      report.conformance.filter((c) => c.verdict === "fail").map((c) => c.check),
      ["SET_CONFIG (same bytes)"],
      text,
    );
    const blk = report.conformance.filter((c) => c.check.startsWith("blk: "));
    assert.equal(blk.length, 6, text);
    assert.ok(blk.every((c) => c.verdict === "pass"), text);
    assert.match(text, /vu_panic: Set virtio configuration space failed/);
  },
});
