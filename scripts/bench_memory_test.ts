import assert from "node:assert/strict";
import { footprint } from "./bench_memory.ts";

Deno.test("footprint reads RSS, PSS and USS of a live process", () => {
  const f = footprint(Deno.pid);
  assert.ok(f.rss > 0 && f.pss > 0 && f.uss > 0, JSON.stringify(f));
  assert.ok(f.uss <= f.pss && f.pss <= f.rss, JSON.stringify(f));
});
