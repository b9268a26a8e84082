import assert from "node:assert/strict";
import type { DiskParameters } from "./disk_parameters.ts";
import { MODE_PAGES, type ModeSense, modeSense } from "./mode_pages.ts";
import { Senses } from "./sense.ts";

const DISK: DiskParameters = {
  blockSize: 512,
  blocks: 0x1_0000_0001,
  readOnly: true,
  solidState: false,
  serial: "s",
  naa: new Uint8Array(8),
};

function sense(options: Partial<ModeSense>): Uint8Array {
  const out = modeSense({
    kind: "mode-sense",
    ten: false,
    dbd: false,
    llbaa: false,
    pageControl: 0,
    pageCode: 0x3f,
    subpageCode: 0,
    allocationLength: 255,
    ...options,
  }, DISK);
  assert.ok(out instanceof Uint8Array);
  return out;
}

Deno.test("mode sense(6): header, WP and DPOFUA, short block descriptor, all pages", () => {
  const data = sense({});
  assert.equal(data[0], data.length - 1);
  assert.equal(data[2], 0x90, "WP | DPOFUA");
  assert.equal(data[3], 8);
  assert.deepEqual([...data.subarray(4, 12)], [0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]);
  const codes = [];
  for (let at = 12; at < data.length; at += data[at + 1] + 2) codes.push(data[at]);
  assert.deepEqual(codes, MODE_PAGES);
  const caching = sense({ pageCode: 0x08, dbd: true });
  assert.deepEqual([...caching.subarray(4, 7)], [0x08, 0x12, 0x04], "WCE");
});

Deno.test("mode sense(10): long LBA descriptor with LLBAA, changeable values, errors", () => {
  const data = sense({ ten: true, llbaa: true, pageCode: 0x0a });
  assert.equal(new DataView(data.buffer).getUint16(0), data.length - 2);
  assert.equal(data[4], 1, "LONGLBA");
  assert.equal(new DataView(data.buffer).getUint16(6), 16);
  assert.equal(new DataView(data.buffer).getBigUint64(8), 0x1_0000_0001n);
  const changeable = sense({ pageCode: 0x08, dbd: true, pageControl: 1 });
  assert.deepEqual([...changeable.subarray(6)], new Array(18).fill(0));
  assert.equal(
    modeSense({
      kind: "mode-sense",
      ten: false,
      dbd: false,
      llbaa: false,
      pageControl: 3,
      pageCode: 8,
      subpageCode: 0,
      allocationLength: 4,
    }, DISK),
    Senses.SAVING_PARAMETERS_NOT_SUPPORTED,
  );
  const bad = modeSense({
    kind: "mode-sense",
    ten: false,
    dbd: false,
    llbaa: false,
    pageControl: 0,
    pageCode: 0x1c,
    subpageCode: 0,
    allocationLength: 4,
  }, DISK);
  assert.ok(!(bad instanceof Uint8Array) && bad.asc === 0x24);
  assert.ok(sense({ subpageCode: 0xff }).length > 0, "all pages and subpages");
});
