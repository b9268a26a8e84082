import assert from "node:assert/strict";
import { cpuSeconds } from "./cpu.ts";

Deno.test("cpuSeconds grows while this process works, and is NaN for no process", () => {
  const before = cpuSeconds(Deno.pid);
  // Spin until 10 ms of CPU time show up; on a loaded machine that may take a while.
  const deadline = performance.now() + 20_000;
  while (cpuSeconds(Deno.pid) - before < 0.01) {
    assert.ok(performance.now() < deadline, "no CPU time was counted");
  }
  assert.ok(Number.isNaN(cpuSeconds(2 ** 30)));
});
