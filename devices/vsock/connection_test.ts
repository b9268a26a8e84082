import assert from "node:assert/strict";
import fc from "fast-check";
import { Connection, creditFor, creditUpdateDue, wrappingSub } from "./connection.ts";
import type { HostStream } from "./host.ts";
import { TxBuffer } from "./tx_buffer.ts";

Deno.test("credit: buf_alloc - (tx_cnt - fwd_cnt), wrapping at 2^32, never negative", () => {
  assert.equal(creditFor({ bufAlloc: 1000, fwdCnt: 0, sent: 0 }), 1000);
  assert.equal(creditFor({ bufAlloc: 1000, fwdCnt: 100, sent: 600 }), 500);
  assert.equal(creditFor({ bufAlloc: 1000, fwdCnt: 0, sent: 1000 }), 0);
  // Counters wrap: sent 10 past 2^32, fwd_cnt 2^32 - 90.
  assert.equal(creditFor({ bufAlloc: 1000, fwdCnt: 0xffffffa6, sent: 10 }), 900);
  // A peer claiming more forwarded than sent gets nothing.
  assert.equal(creditFor({ bufAlloc: 1000, fwdCnt: 50, sent: 10 }), 0);
  assert.equal(wrappingSub(3, 5), 0xfffffffe);
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 0, max: 0xffffffff }),
    (bufAlloc, fwdCnt, sent) => {
      const c = creditFor({ bufAlloc, fwdCnt, sent });
      return c >= 0 && c <= bufAlloc;
    },
  ));
});

Deno.test("credit: an update is due once a quarter of the buffer was freed unannounced", () => {
  assert.equal(creditUpdateDue({ bufAlloc: 65536, fwdCnt: 16383, advertised: 0 }), false);
  assert.equal(creditUpdateDue({ bufAlloc: 65536, fwdCnt: 16384, advertised: 0 }), true);
  assert.equal(creditUpdateDue({ bufAlloc: 65536, fwdCnt: 5, advertised: 0xfffffff0 }), false);
  assert.equal(creditUpdateDue({ bufAlloc: 1, fwdCnt: 1, advertised: 0 }), true);
  assert.equal(creditUpdateDue({ bufAlloc: 1, fwdCnt: 0, advertised: 0 }), false);
});

Deno.test("credit: a blocked sender always gets an update before our buffer is empty", () => {
  // Model: the guest sends until out of credit; we forward some bytes at a time.
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 1 << 20 }),
    fc.array(fc.integer({ min: 1, max: 70000 }), { minLength: 1, maxLength: 50 }),
    (bufAlloc, drains) => {
      let sent = 0, forwarded = 0, advertised = 0;
      for (const drain of drains) {
        sent += bufAlloc - (sent - advertised); // guest uses all its credit
        forwarded += Math.min(drain, sent - forwarded);
        if (creditUpdateDue({ bufAlloc, fwdCnt: forwarded, advertised })) advertised = forwarded;
        // If everything is forwarded and the guest is still blocked, it would wait forever.
        const blocked = bufAlloc - (sent - advertised) === 0;
        if (forwarded === sent && blocked) return false;
      }
      return true;
    },
  ));
});

Deno.test("connection: peer credit tracks the guest's header fields", () => {
  const stream = {} as HostStream;
  const conn = new Connection({ localPort: 1, peerPort: 2 }, {
    state: "established",
    stream,
    bufAlloc: 4096,
  });
  assert.equal(conn.peerCredit, 0);
  assert.equal(conn.updatePeerCredit(8192, 0), true, "none → some");
  conn.sentToGuest(8000);
  assert.equal(conn.peerCredit, 192);
  assert.equal(conn.updatePeerCredit(8192, 8000), false);
  assert.equal(conn.peerCredit, 8192);
  conn.forwarded(1024);
  assert.equal(conn.creditUpdateDue, true);
});

Deno.test("tx buffer: a ring that wraps, frees its memory when empty, and refuses overflow", () => {
  const buffer = new TxBuffer(8);
  buffer.push(new Uint8Array([1, 2, 3, 4, 5, 6]));
  buffer.consume(4);
  buffer.push(new Uint8Array([7, 8, 9, 10]));
  assert.equal(buffer.length, 6);
  assert.deepEqual([...buffer.peek()], [5, 6, 7, 8]);
  buffer.consume(4);
  assert.deepEqual([...buffer.peek()], [9, 10]);
  assert.throws(() => buffer.push(new Uint8Array(7)), RangeError);
  buffer.consume(2);
  assert.ok(buffer.empty);
  assert.equal(buffer.peek().length, 0);
});

Deno.test("tx buffer: grows from a small allocation up to its capacity, keeping order across a wrap", () => {
  const buffer = new TxBuffer(20_000);
  const data = Uint8Array.from({ length: 20_000 }, (_, i) => i & 0xff);
  buffer.push(data.subarray(0, 3000));
  buffer.consume(2000);
  // 1000 held from offset 2000 of a 4096-byte array: 3500 more wrap, then 10000 grow it.
  buffer.push(data.subarray(3000, 6500));
  buffer.push(data.subarray(6500, 16_500));
  assert.equal(buffer.length, 14_500);
  assert.deepEqual(buffer.head(14_500), data.subarray(2000, 16_500));
  assert.throws(() => buffer.push(new Uint8Array(5501)), RangeError);
  buffer.push(data.subarray(16_500, 20_000));
  assert.equal(buffer.free, 2000);
  buffer.consume(14_000);
  assert.deepEqual(buffer.head(4000), data.subarray(16_000, 20_000));
  assert.throws(() => buffer.head(4001), RangeError);
});
