import assert from "node:assert/strict";
import {
  close,
  receiveMessage,
  sendMessage,
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
