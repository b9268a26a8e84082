import { yieldCpu } from "./sched.ts";

Deno.test("yieldCpu returns", () => {
  for (let i = 0; i < 100; i++) yieldCpu();
});
