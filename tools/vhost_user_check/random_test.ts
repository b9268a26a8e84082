import assert from "node:assert/strict";
import { Random } from "./random.ts";

Deno.test("random: the same seed and stream give the same numbers, others differ", () => {
  const take = (r: Random) => Array.from({ length: 8 }, () => r.u32());
  assert.deepEqual(take(new Random(7, 3)), take(new Random(7, 3)));
  assert.notDeepEqual(take(new Random(7, 3)), take(new Random(7, 4)));
  assert.notDeepEqual(take(new Random(7, 3)), take(new Random(8, 3)));
});

Deno.test("random: below() stays in range and covers it", () => {
  const r = new Random(1);
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const v = r.below(10);
    assert.ok(v >= 0 && v < 10 && Number.isInteger(v));
    seen.add(v);
  }
  assert.equal(seen.size, 10);
  assert.equal(r.below(1), 0);
  assert.equal(r.bytes(5).length, 5);
  assert.ok(r.u64() < 1n << 64n);
});
