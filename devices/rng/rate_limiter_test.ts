import assert from "node:assert/strict";
import fc from "fast-check";
import { RateLimiter } from "./rate_limiter.ts";

function clocked(periodMs: number, maxBytes: number | null) {
  const clock = { now: 1000 };
  const limiter = new RateLimiter({ periodMs, maxBytes, now: () => clock.now });
  return { clock, limiter };
}

Deno.test("rate limiter: no limit grants everything, never waits", () => {
  const { limiter } = clocked(1000, null);
  assert.equal(limiter.available(), Number.MAX_SAFE_INTEGER);
  limiter.consume(1 << 30);
  assert.equal(limiter.available(), Number.MAX_SAFE_INTEGER);
  assert.equal(limiter.msUntilRefill(), 0);
});

Deno.test("rate limiter: the quota refills when the period that began at the first request ends", () => {
  const { clock, limiter } = clocked(1000, 100);
  assert.equal(limiter.msUntilRefill(), 0, "no period before the first request");
  assert.equal(limiter.available(), 100);
  limiter.consume(64);
  clock.now += 400;
  assert.equal(limiter.available(), 36);
  limiter.consume(36);
  assert.equal(limiter.available(), 0);
  assert.equal(limiter.msUntilRefill(), 600);
  clock.now += 599;
  assert.equal(limiter.available(), 0);
  assert.equal(limiter.msUntilRefill(), 1);
  clock.now += 1;
  assert.equal(limiter.available(), 100, "a new period starts exactly at the end");
  assert.equal(limiter.msUntilRefill(), 1000);
});

Deno.test("rate limiter: an idle gap starts the next period at the next request, as upstream", () => {
  const { clock, limiter } = clocked(1000, 10);
  limiter.available();
  limiter.consume(10);
  clock.now += 5000;
  assert.equal(limiter.available(), 10);
  limiter.consume(10);
  assert.equal(limiter.msUntilRefill(), 1000);
});

Deno.test("rate limiter: consuming more than remains leaves 0, not a debt", () => {
  const { limiter } = clocked(10, 5);
  limiter.available();
  limiter.consume(7);
  assert.equal(limiter.available(), 0);
});

Deno.test("rate limiter: refuses a period below 1 ms and a quota below 1 byte", () => {
  assert.throws(() => new RateLimiter({ periodMs: 0, maxBytes: 1 }), RangeError);
  assert.throws(() => new RateLimiter({ periodMs: 1, maxBytes: 0 }), RangeError);
});

Deno.test("rate limiter (property): grants stay within max per period; waiting refills", () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 100 }),
    fc.integer({ min: 1, max: 500 }),
    fc.array(fc.record({ wait: fc.nat(150), want: fc.integer({ min: 1, max: 600 }) }), {
      maxLength: 200,
    }),
    (periodMs, max, steps) => {
      const { clock, limiter } = clocked(periodMs, max);
      const start = clock.now;
      const grants: { at: number; bytes: number }[] = [];
      for (const step of steps) {
        clock.now += step.wait;
        if (limiter.available() === 0) {
          // What the device does: wait out msUntilRefill, then bytes are available.
          clock.now += limiter.msUntilRefill();
          assert.ok(limiter.available() > 0);
        }
        const bytes = Math.min(step.want, limiter.available());
        limiter.consume(bytes);
        grants.push({ at: clock.now, bytes });
      }
      // Fixed windows: a span of one period overlaps at most two of them.
      for (const grant of grants) {
        const inSpan = grants.filter((g) => g.at >= grant.at && g.at < grant.at + periodMs);
        assert.ok(inSpan.reduce((sum, g) => sum + g.bytes, 0) <= 2 * max);
      }
      const total = grants.reduce((sum, g) => sum + g.bytes, 0);
      assert.ok(total <= max * (Math.floor((clock.now - start) / periodMs) + 1));
    },
  ));
});
