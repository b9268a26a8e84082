import assert from "node:assert/strict";
import {
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_TYPE_STREAM,
  type VsockHeader,
} from "./packet.ts";
import { resetFor, SiblingFlows } from "./sibling_flows.ts";

function header(op: number, from: [number, number], to: [number, number]): VsockHeader {
  return {
    srcCid: from[0],
    srcPort: from[1],
    dstCid: to[0],
    dstPort: to[1],
    len: 0,
    type: VIRTIO_VSOCK_TYPE_STREAM,
    op,
    flags: 0,
    bufAlloc: 65536,
    fwdCnt: 0,
  };
}

Deno.test("sibling flows: the RST answering a packet goes back to its sender", () => {
  const rst = resetFor(header(VIRTIO_VSOCK_OP_REQUEST, [3, 40000], [4, 5000]));
  assert.deepEqual(
    [rst.srcCid, rst.srcPort, rst.dstCid, rst.dstPort, rst.op, rst.len],
    [4, 5000, 3, 40000, VIRTIO_VSOCK_OP_RST, 0],
  );
});

Deno.test("sibling flows: opened both ways, closed by RST either way, reset when the guest leaves", () => {
  const flows = new SiblingFlows();
  // Our guest (CID 3) connects out to CID 4; CID 5 connects in to us.
  flows.sent(header(VIRTIO_VSOCK_OP_REQUEST, [3, 40000], [4, 5000]));
  flows.received(header(VIRTIO_VSOCK_OP_RESPONSE, [4, 5000], [3, 40000]));
  flows.received(header(VIRTIO_VSOCK_OP_REQUEST, [5, 41000], [3, 6000]));
  flows.sent(header(VIRTIO_VSOCK_OP_RW, [3, 6000], [5, 41000]));
  flows.received(header(VIRTIO_VSOCK_OP_REQUEST, [4, 42000], [3, 7000]));
  flows.sent(header(VIRTIO_VSOCK_OP_RST, [3, 7000], [4, 42000]));
  assert.equal(flows.size, 2);
  const resets = flows.takeResets().map((h) => [h.srcCid, h.srcPort, h.dstCid, h.dstPort, h.op]);
  assert.deepEqual(resets.sort(), [
    [3, 40000, 4, 5000, VIRTIO_VSOCK_OP_RST],
    [3, 6000, 5, 41000, VIRTIO_VSOCK_OP_RST],
  ]);
  assert.equal(flows.size, 0);
});
