import assert from "node:assert/strict";
import { MessageQueue, OutgoingMessage, pieceFlags } from "./seqpacket.ts";
import { TxBuffer } from "./tx_buffer.ts";
import { VIRTIO_VSOCK_SEQ_EOM, VIRTIO_VSOCK_SEQ_EOR } from "./packet.ts";

const EOM = VIRTIO_VSOCK_SEQ_EOM;
const EOR = VIRTIO_VSOCK_SEQ_EOR;

Deno.test("seqpacket: packets gather into whole messages in the connection's buffer", () => {
  const queue = new MessageQueue(new TxBuffer(4096));
  assert.equal(queue.peek(), null);
  assert.throws(() => queue.shift(), RangeError);
  queue.append(new Uint8Array([1, 2]));
  queue.append(new Uint8Array(0));
  queue.append(new Uint8Array([3]));
  assert.equal(queue.gathering, 3);
  assert.equal(queue.count, 0, "no EOM yet");
  assert.equal(queue.end({ eor: true }), true);
  assert.equal(queue.end({ eor: false }), false, "an empty message is not queued");
  queue.append(new Uint8Array([9]));
  queue.end({ eor: false });
  queue.append(new Uint8Array([7, 7]));
  assert.deepEqual([queue.count, queue.gathering, queue.free], [2, 2, 4090]);
  const first = queue.peek()!;
  assert.deepEqual([...first.bytes], [1, 2, 3]);
  assert.equal(first.eor, true);
  assert.equal(queue.shift(), 3);
  assert.deepEqual([...queue.peek()!.bytes], [9]);
  assert.equal(queue.peek()!.eor, false);
  assert.equal(queue.shift(), 1);
  assert.equal(queue.peek(), null, "the gathering message is not whole");
  assert.throws(() => queue.append(new Uint8Array(4095)), RangeError);
});

Deno.test("seqpacket: a message that wraps around the buffer's end comes out whole", () => {
  const buffer = new TxBuffer(4096);
  const queue = new MessageQueue(buffer);
  queue.append(new Uint8Array(3000));
  queue.end({ eor: false });
  queue.append(new Uint8Array(100).fill(1));
  queue.end({ eor: false });
  assert.equal(queue.shift(), 3000);
  const wrapping = Uint8Array.from({ length: 3500 }, (_, i) => i & 0xff);
  queue.append(wrapping);
  queue.end({ eor: false });
  assert.equal(queue.shift(), 100);
  assert.deepEqual(queue.peek()!.bytes, wrapping);
  assert.equal(queue.shift(), 3500);
  assert.ok(buffer.empty);
});

Deno.test("seqpacket: a host message is cut into pieces, EOM (and EOR) on the last", () => {
  const bytes = Uint8Array.from({ length: 10 }, (_, i) => i);
  const message = new OutgoingMessage(bytes, { eor: true });
  const first = message.next(4);
  assert.deepEqual([...first.bytes], [0, 1, 2, 3]);
  assert.equal(first.flags, 0);
  assert.equal(message.remaining, 6);
  assert.equal(message.next(4).flags, 0);
  const last = message.next(4);
  assert.deepEqual([...last.bytes], [8, 9]);
  assert.equal(last.flags, EOM | EOR);
  assert.equal(message.remaining, 0);
  assert.throws(() => new OutgoingMessage(bytes, { eor: false }).next(0), RangeError);
  const whole = new OutgoingMessage(bytes, { eor: false }).next(64 * 1024);
  assert.equal(whole.bytes.length, 10);
  assert.equal(whole.flags, EOM);
});

Deno.test("seqpacket: a sibling packet cut in pieces keeps EOM/EOR for its last piece only", () => {
  assert.equal(pieceFlags(EOM | EOR, { last: false }), 0);
  assert.equal(pieceFlags(EOM | EOR, { last: true }), EOM | EOR);
  assert.equal(pieceFlags(EOM | 0x10, { last: false }), 0x10);
});
