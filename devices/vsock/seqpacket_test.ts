import assert from "node:assert/strict";
import { MessageAssembler, OutgoingMessage, pieceFlags } from "./seqpacket.ts";
import { VIRTIO_VSOCK_SEQ_EOM, VIRTIO_VSOCK_SEQ_EOR } from "./packet.ts";

const EOM = VIRTIO_VSOCK_SEQ_EOM;
const EOR = VIRTIO_VSOCK_SEQ_EOR;

Deno.test("seqpacket: packets gather into one message", () => {
  const assembler = new MessageAssembler();
  assert.equal(assembler.take().length, 0);
  assembler.append(new Uint8Array([1, 2]));
  assembler.append(new Uint8Array(0));
  assembler.append(new Uint8Array([3]));
  assert.equal(assembler.length, 3);
  assert.deepEqual([...assembler.take()], [1, 2, 3]);
  assert.equal(assembler.length, 0);
  assembler.append(new Uint8Array([9]));
  assert.deepEqual([...assembler.take()], [9]);
  assembler.append(new Uint8Array([7]));
  assembler.clear();
  assert.equal(assembler.length, 0);
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
