import assert from "node:assert/strict";
import {
  descriptorSense,
  FIXED_SENSE_LENGTH,
  fixedSense,
  invalidField,
  invalidParameter,
  miscompare,
  Senses,
} from "./sense.ts";

Deno.test("sense: fixed format (SPC-4 §4.5.3) with key, ASC, ASCQ", () => {
  const sense = fixedSense(Senses.WRITE_PROTECTED);
  assert.equal(sense.length, FIXED_SENSE_LENGTH);
  assert.equal(sense[0], 0x70);
  assert.equal(sense[2], 0x07);
  assert.equal(sense[7], 10);
  assert.deepEqual([sense[12], sense[13]], [0x27, 0x00]);
  assert.deepEqual([...sense.subarray(15)], [0, 0, 0]);
});

Deno.test("sense: field pointers for invalid CDB and parameter list fields", () => {
  const cdb = fixedSense(invalidField(300, 5));
  assert.deepEqual([...cdb.subarray(15)], [0x80 | 0x40 | 0x08 | 5, 1, 44]);
  const list = fixedSense(invalidParameter(2));
  assert.deepEqual([...list.subarray(15)], [0x80, 0, 2]);
});

Deno.test("sense: MISCOMPARE carries the offset in the INFORMATION field, VALID set", () => {
  const sense = fixedSense(miscompare(0x01020304));
  assert.equal(sense[0], 0xf0);
  assert.equal(sense[2], 0x0e);
  assert.deepEqual([...sense.subarray(3, 7)], [1, 2, 3, 4]);
  assert.deepEqual([sense[12], sense[13]], [0x1d, 0x00]);
  assert.equal(fixedSense(Senses.WRITE_PROTECTED)[0] & 0x80, 0, "no INFORMATION, no VALID");
});

Deno.test("sense: descriptor format (SPC-4 §4.5.2)", () => {
  assert.deepEqual([...descriptorSense(Senses.LOGICAL_UNIT_NOT_SUPPORTED)], [
    0x72,
    5,
    0x25,
    0,
    0,
    0,
    0,
    0,
  ]);
});
