import assert from "node:assert/strict";
import {
  CONFIG_SIZE,
  configSpace,
  decodeCommandRequest,
  decodeControlRequest,
  decodeLun,
  encodeCommandResponse,
  REQUEST_HEADER_SIZE,
  RESPONSE_HEADER_SIZE,
} from "./virtio_scsi.ts";

Deno.test("virtio-scsi: header sizes of §5.6.6.1", () => {
  assert.equal(REQUEST_HEADER_SIZE, 51);
  assert.equal(RESPONSE_HEADER_SIZE, 108);
});

Deno.test("virtio-scsi: LUN addressing (§5.6.6.1)", () => {
  assert.deepEqual(decodeLun(Uint8Array.of(1, 0, 0, 3, 0, 0, 0, 0)), {
    kind: "lun",
    target: 0,
    lun: 3,
  });
  assert.deepEqual(decodeLun(Uint8Array.of(1, 2, 0x40, 3, 0, 0, 0, 0)), {
    kind: "lun",
    target: 2,
    lun: 3,
  });
  assert.deepEqual(decodeLun(Uint8Array.of(1, 0, 0x41, 0x2c, 0, 0, 0, 0)), {
    kind: "lun",
    target: 0,
    lun: 300,
  });
  assert.equal(decodeLun(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0)).kind, "invalid");
  assert.equal(
    decodeLun(Uint8Array.of(1, 0, 0xc1, 0x01, 0, 0, 0, 0)).kind,
    "invalid",
    "well-known LUN",
  );
  assert.equal(decodeLun(Uint8Array.of(1, 0, 0x01, 0, 0, 0, 0, 0)).kind, "invalid", "bus 1");
  assert.equal(decodeLun(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 1)).kind, "invalid", "second level");
});

Deno.test("virtio-scsi: request and response codecs", () => {
  const header = new Uint8Array(REQUEST_HEADER_SIZE);
  header.set([1, 0, 0, 2]);
  new DataView(header.buffer).setBigUint64(8, 99n, true);
  header[19] = 0x12;
  const request = decodeCommandRequest(header);
  assert.deepEqual(request.address, { kind: "lun", target: 0, lun: 2 });
  assert.equal(request.id, 99n);
  assert.equal(request.cdb.length, 32);
  assert.equal(request.cdb[0], 0x12);
  const response = encodeCommandResponse({
    response: 1,
    status: 2,
    sense: new Uint8Array(200).fill(7),
    residual: 5,
  });
  const view = new DataView(response.buffer);
  assert.equal(view.getUint32(0, true), 96, "sense truncated to sense_size");
  assert.equal(view.getUint32(4, true), 5);
  assert.deepEqual([response[10], response[11]], [2, 1]);
  // A reused buffer is overwritten whole: no sense is left from the last response.
  const reused = encodeCommandResponse({ response: 0, status: 0, residual: 0x01020304 }, response);
  assert.equal(reused.buffer, response.buffer);
  assert.deepEqual([...reused.subarray(0, 12)], [0, 0, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0]);
  assert.ok(reused.subarray(12).every((b) => b === 0));
  assert.equal(reused.length, RESPONSE_HEADER_SIZE);
});

Deno.test("virtio-scsi: control requests (§5.6.6.2)", () => {
  const tmf = new Uint8Array(24);
  const v = new DataView(tmf.buffer);
  v.setUint32(4, 5, true);
  tmf.set([1, 0, 0, 1], 8);
  v.setBigUint64(16, 7n, true);
  assert.deepEqual(decodeControlRequest(tmf), {
    kind: "tmf",
    subtype: 5,
    address: { kind: "lun", target: 0, lun: 1 },
    id: 7n,
  });
  assert.equal(decodeControlRequest(tmf.subarray(0, 20)), null);
  const an = new Uint8Array(16);
  new DataView(an.buffer).setUint32(0, 1, true);
  assert.equal(decodeControlRequest(an)?.kind, "an");
  new DataView(an.buffer).setUint32(0, 9, true);
  assert.deepEqual(decodeControlRequest(an), { kind: "unknown", type: 9 });
  assert.equal(decodeControlRequest(new Uint8Array(2)), null);
});

Deno.test("virtio-scsi: config space (§5.6.4)", () => {
  const config = configSpace({ numQueues: 4, queueSize: 128 });
  const v = new DataView(config.buffer);
  assert.equal(config.length, CONFIG_SIZE);
  assert.deepEqual(
    [0, 4, 8, 12, 16, 20, 24].map((at) => v.getUint32(at, true)),
    [4, 126, 0xffff, 128, 16, 96, 32],
  );
  assert.equal(v.getUint16(30, true), 255);
  assert.equal(v.getUint32(32, true), 16383);
});
