import assert from "node:assert/strict";
import { Fifo } from "./fifo.ts";

Deno.test("fifo: first in, first out, across compactions", () => {
  const fifo = new Fifo<number>();
  for (let i = 0; i < 5000; i++) fifo.push(i);
  for (let i = 0; i < 4000; i++) assert.equal(fifo.shift(), i);
  assert.equal(fifo.length, 1000);
  assert.equal(fifo.peek(), 4000);
  fifo.push(5000);
  for (let i = 4000; i <= 5000; i++) assert.equal(fifo.shift(), i);
  assert.equal(fifo.shift(), undefined);
  fifo.push(1);
  fifo.clear();
  assert.equal(fifo.length, 0);
});
