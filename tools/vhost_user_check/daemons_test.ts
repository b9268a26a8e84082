// vhost-user-check against our own daemons: the conformance handshakes and a
// short seeded fuzz run each (deno task fuzz runs the million-message version).
import assert from "node:assert/strict";
import { check, checkConfig } from "./main.ts";
import { parseCommandLine } from "../../core/cli.ts";
import { COMMAND } from "./main.ts";
import { renderText } from "./report.ts";
import { DAEMON_COMMANDS } from "../../scripts/fuzz_daemons.ts";
import { DEVICE_PROFILES } from "./device_profiles.ts";

for (const [device, exec] of Object.entries(DAEMON_COMMANDS)) {
  Deno.test(`vhost-user-check: the ${device} daemon conforms and survives a seeded fuzz run`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: "vuc-daemon-" });
    try {
      const options = parseCommandLine(
        [
          "--exec",
          exec,
          ...(DEVICE_PROFILES[device] ? ["--device", device] : []),
          "--seed",
          "11",
          "--messages",
          "3000",
        ],
        COMMAND,
      );
      if (typeof options === "string") throw new Error(options);
      const report = await check({
        ...checkConfig(options),
        reproducer: `${dir}/reproducer.json`,
      });
      const text = renderText(report);
      const failures = report.conformance.filter((c) => c.verdict === "fail");
      assert.deepEqual(failures, [], text);
      for (const scenario of ["qemu-10", "reconnect", "qemu-7.2", "every-optional"]) {
        assert.ok(
          report.conformance.some((c) => c.scenario === scenario && c.verdict === "pass"),
          scenario,
        );
      }
      if (DEVICE_PROFILES[device]) {
        assert.ok(
          report.conformance.some((c) => c.check.startsWith(`${device}: `) && c.verdict === "pass"),
          text,
        );
      }
      assert.deepEqual(report.fuzz?.findings, [], text);
      assert.equal(report.fuzz?.messages, 3000);
      assert.equal(report.fuzz?.fds.after, report.fuzz?.fds.before, "no fd leaked");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}
