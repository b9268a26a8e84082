import assert from "node:assert/strict";
import type { DiskParameters } from "./disk_parameters.ts";
import { standardInquiry, VPD_PAGES, vpdPage } from "./inquiry.ts";
import { Senses } from "./sense.ts";

const DISK: DiskParameters = {
  blockSize: 4096,
  blocks: 1024,
  readOnly: false,
  solidState: true,
  serial: "0123456789abcdef",
  naa: Uint8Array.of(0x31, 2, 3, 4, 5, 6, 7, 8),
};

function page(code: number): Uint8Array {
  const out = vpdPage(DISK, code);
  assert.ok(out instanceof Uint8Array, `page 0x${code.toString(16)}`);
  assert.equal(out[1], code);
  assert.equal((out[2] << 8 | out[3]) + 4, out.length, "PAGE LENGTH");
  return out;
}

Deno.test("inquiry: standard data, and peripheral qualifier 011b for a missing LUN", () => {
  const data = standardInquiry(DISK);
  assert.equal(data.length, 36);
  assert.equal(data[0], 0);
  assert.equal(data[2], 6);
  assert.equal(data[3], 0x12);
  assert.equal(data[4], 31);
  assert.equal(data[7] & 0x02, 0x02);
  assert.equal(new TextDecoder().decode(data.subarray(8, 36)), "rust-vmmvhost-user-scsi v0  ");
  assert.equal(standardInquiry(null)[0], 0x7f);
});

Deno.test("inquiry: VPD pages 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2", () => {
  assert.deepEqual([...page(0x00).subarray(4)], VPD_PAGES);
  assert.equal(new TextDecoder().decode(page(0x80).subarray(4)), DISK.serial);
  const id = page(0x83);
  assert.deepEqual([...id.subarray(4, 8)], [0x01, 0x03, 0, 8]);
  assert.deepEqual(id.subarray(8, 16), DISK.naa);
  assert.deepEqual([...id.subarray(16, 20)], [0x02, 0x01, 0, 8 + 16 + 16]);
  const limits = new DataView(page(0xb0).buffer);
  assert.equal(limits.getUint8(4) & 1, 1, "WSNZ");
  assert.equal(limits.getUint32(8), 8192, "32 MiB of 4 KiB blocks");
  assert.equal(limits.getUint32(20), 262144, "1 GiB of 4 KiB blocks");
  assert.equal(limits.getUint32(24), 255);
  assert.equal(limits.getUint32(28), 1);
  assert.equal(page(0xb1)[5], 1, "non-rotating");
  assert.equal(page(0xb2)[5], 0xe4, "LBPU, LBPWS, LBPWS10, LBPRZ=001b");
  assert.deepEqual(vpdPage(DISK, 0x86), {
    ...Senses.INVALID_FIELD_IN_CDB,
    field: { inCdb: true, byte: 2, bit: undefined },
  });
});
