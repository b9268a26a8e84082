import assert from "node:assert/strict";
import {
  close,
  receiveMessage,
  sendMessage,
  sendMessageOnHelperThread,
  setNonBlocking,
  socketPair,
  stableBuffer,
  SyscallError,
} from "./mod.ts";

Deno.test("seqpacket: messages keep their boundaries; too long ones report their length", () => {
  const [a, b] = socketPair({ seqpacket: true });
  try {
    setNonBlocking(b, true);
    const into = stableBuffer(8);
    assert.equal(receiveMessage(b, into), null);
    assert.equal(sendMessage(a, new Uint8Array([1, 2, 3])), true);
    assert.equal(sendMessage(a, new Uint8Array([4, 5]), { eor: true }), true);
    assert.equal(sendMessage(a, new Uint8Array(20).fill(9)), true);
    assert.deepEqual(receiveMessage(b, into), { length: 3, truncated: false, eor: false });
    assert.deepEqual([...into.subarray(0, 3)], [1, 2, 3]);
    assert.deepEqual(receiveMessage(b, into), { length: 2, truncated: false, eor: false });
    assert.deepEqual([...into.subarray(0, 2)], [4, 5]);
    const long = receiveMessage(b, into)!;
    assert.equal(long.length, 20);
    assert.equal(long.truncated, true);
    close(a);
    assert.equal(receiveMessage(b, into)?.length, 0);
    assert.throws(() => sendMessage(b, new Uint8Array(1)), SyscallError);
  } finally {
    close(b);
  }
});

Deno.test("seqpacket: a helper-thread send waits for room, then the message arrives whole", async () => {
  const [a, b] = socketPair({ seqpacket: true });
  try {
    const into = stableBuffer(1 << 20);
    // Fill a's send buffer until a non-blocking send refuses, then send once more on a
    // helper thread: it completes only as b reads.
    setNonBlocking(a, true);
    let queued = 0;
    while (sendMessage(a, new Uint8Array(65536).fill(1))) queued++;
    setNonBlocking(a, false);
    const last = new Uint8Array(100_000).fill(7);
    const sent = sendMessageOnHelperThread(a, last, { eor: true });
    for (let i = 0; i < queued; i++) assert.equal(receiveMessage(b, into)?.length, 65536);
    await sent;
    const got = receiveMessage(b, into);
    assert.equal(got?.length, last.length);
    assert.deepEqual(into.subarray(0, last.length), last);
    close(a);
    await assert.rejects(() => sendMessageOnHelperThread(b, new Uint8Array(1)));
  } finally {
    close(b);
  }
});
