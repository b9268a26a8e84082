import assert from "node:assert/strict";
import { cpuSeconds } from "./cpu.ts";

Deno.test("cpuSeconds grows while this process works, and is NaN for no process", () => {
  const before = cpuSeconds(Deno.pid);
  const until = performance.now() + 30;
  while (performance.now() < until) {
    // Spin.
  }
  assert.ok(cpuSeconds(Deno.pid) - before >= 0.02);
  assert.ok(Number.isNaN(cpuSeconds(2 ** 30)));
});
