import assert from "node:assert/strict";
import { failed, renderJson, renderText, type Report } from "./report.ts";

const base: Report = {
  target: "/tmp/x.sock",
  device: null,
  conformance: [
    { scenario: "qemu-10", check: "GET_QUEUE_NUM", verdict: "pass", detail: "1" },
    { scenario: "qemu-10", check: "GET_CONFIG", verdict: "skip", detail: "CONFIG not negotiated" },
  ],
  fuzz: null,
  replay: null,
};

Deno.test("report: passes and skips are OK; a failure or a fuzz finding is not", () => {
  assert.ok(!failed(base));
  assert.match(renderText(base), /GET_QUEUE_NUM\s+PASS\s+1/);
  assert.match(renderText(base), /^OK \(0 warnings\)$/m);
  const bad: Report = {
    ...base,
    conformance: [...base.conformance, {
      scenario: "qemu-7.2",
      check: "GET_VRING_BASE queue 0 after traffic",
      verdict: "fail",
      detail: "7 (used 5, offered 5)",
    }],
  };
  assert.ok(failed(bad));
  assert.match(renderText(bad), /^FAILED \(1 conformance failures/m);
  assert.equal(JSON.parse(renderJson(bad)).ok, false);
  const crashed: Report = {
    ...base,
    fuzz: {
      seed: 3,
      messages: 10,
      ringOps: 4,
      bursts: 1,
      dropped: 0,
      seconds: 1,
      rate: 10,
      findings: [{
        kind: "crash",
        burst: 0,
        detail: "exited with code 134",
        reproducer: "r.json",
        ops: 1,
      }],
      fds: { before: 10, after: null },
      rssKiB: { before: 1000, after: null },
    },
  };
  assert.ok(failed(crashed));
  assert.match(renderText(crashed), /CRASH in burst 0: exited with code 134/);
  assert.match(renderText(crashed), /--replay r\.json/);
});
