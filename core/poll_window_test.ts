import assert from "node:assert/strict";
import { PollWindow } from "./poll_window.ts";

Deno.test("poll window: grows from 0 to the start, doubles, and stops at the cap", () => {
  const window = new PollWindow({ maxMicros: 200 });
  assert.equal(window.micros, 0);
  // Each event came later than the window but within the cap.
  const seen = [];
  for (let i = 0; i < 6; i++) {
    assert.equal(window.record(window.micros + 1), "grow");
    seen.push(window.micros);
  }
  assert.deepEqual(seen, [10, 20, 40, 80, 160, 200]);
  assert.equal(window.record(200), "hit");
  assert.equal(window.micros, 200);
});

Deno.test("poll window: an event caught within the window leaves it alone", () => {
  const window = new PollWindow({ maxMicros: 200 });
  window.record(5);
  window.record(15);
  assert.equal(window.micros, 20);
  assert.equal(window.record(20), "hit");
  assert.equal(window.record(0), "hit");
  assert.equal(window.micros, 20);
});

Deno.test("poll window: a block past the cap halves it, and below the start it is 0", () => {
  const window = new PollWindow({ maxMicros: 200 });
  while (window.micros < 200) window.record(window.micros + 1);
  const seen = [];
  for (let i = 0; i < 6; i++) {
    window.record(Infinity);
    seen.push(window.micros);
  }
  assert.deepEqual(seen, [100, 50, 25, 12.5, 0, 0]);
  assert.equal(window.record(201), "none", "an idle loop stays at 0");
});

Deno.test("poll window: shrink 0 drops it at once; cap 0 never polls", () => {
  const window = new PollWindow({ maxMicros: 300, shrink: 0 });
  window.record(1);
  window.record(11);
  assert.equal(window.micros, 20);
  assert.equal(window.record(301), "shrink");
  assert.equal(window.micros, 0);
  const off = new PollWindow({ maxMicros: 0 });
  for (const block of [0, 5, 1000, Infinity]) assert.equal(off.record(block), "none");
  assert.equal(off.micros, 0);
});

Deno.test("poll window: a cap below the start grows straight to the cap; a negative cap is refused", () => {
  const window = new PollWindow({ maxMicros: 4 });
  assert.equal(window.record(1), "grow");
  assert.equal(window.micros, 4);
  assert.throws(() => new PollWindow({ maxMicros: -1 }), RangeError);
  assert.throws(() => new PollWindow({ maxMicros: NaN }), RangeError);
});

Deno.test("poll window: a steady guest that asks again after 70 µs settles at 80 µs", () => {
  const window = new PollWindow({ maxMicros: 200 });
  for (let i = 0; i < 20; i++) window.record(70);
  assert.equal(window.micros, 80);
  // It then goes quiet: the window falls back to 0 within a few long sleeps.
  for (let i = 0; i < 4; i++) window.record(Infinity);
  assert.equal(window.micros, 0);
});
