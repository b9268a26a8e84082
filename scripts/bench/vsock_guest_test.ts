import assert from "node:assert/strict";
import { GUEST_BUF_ALLOC, GuestStream } from "./vsock_guest.ts";
import { VIRTIO_VSOCK_OP_RW } from "../../devices/vsock/packet.ts";

Deno.test("guest stream: credit follows the host's fields, updates once less than 64 KiB is free", () => {
  const stream = new GuestStream(1000, 2000);
  const host = stream.header(VIRTIO_VSOCK_OP_RW);
  stream.update({ ...host, bufAlloc: 65536, fwdCnt: 0 });
  assert.equal(stream.credit, 65536);
  stream.sent(60000);
  assert.equal(stream.credit, 5536);
  stream.update({ ...host, bufAlloc: 65536, fwdCnt: 60000 });
  assert.equal(stream.credit, 65536);
  // 256 KiB buffer: due once more than 192 KiB was read unannounced.
  assert.equal(stream.consumed(65536), false);
  assert.equal(stream.consumed(131072), false);
  assert.equal(stream.consumed(1), true);
  const header = stream.header(VIRTIO_VSOCK_OP_RW, { len: 10 });
  assert.deepEqual([header.fwdCnt, header.bufAlloc, header.len], [196609, GUEST_BUF_ALLOC, 10]);
  assert.equal(stream.consumed(1), false, "the header just sent announced the credit");
});
