import assert from "node:assert/strict";
import type { DiskParameters } from "./disk_parameters.ts";
import {
  DEFAULT_MODE_PARAMETERS,
  MODE_PAGES,
  type ModeSelect,
  modeSelect,
  type ModeSense,
  modeSense,
} from "./mode_pages.ts";
import { invalidParameter, Senses } from "./sense.ts";

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
  assert.deepEqual([...changeable.subarray(6)], [0x04, ...new Array(17).fill(0)], "WCE only");
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

const SELECT6: ModeSelect = { kind: "mode-select", ten: false, parameterListLength: 0 };

function select(data: number[], ten = false) {
  return modeSelect({ ...SELECT6, ten }, Uint8Array.from(data), {
    disk: { ...DISK, readOnly: false },
    current: DEFAULT_MODE_PARAMETERS,
  });
}

/** The caching page as MODE SENSE reports it, WCE as given. */
function cachingPage(wce: boolean): number[] {
  return [0x08, 0x12, wce ? 0x04 : 0, ...new Array(17).fill(0)];
}

Deno.test("mode select: what MODE SENSE reports comes back unchanged; WCE is the one change", () => {
  // The whole MODE SENSE(6) answer, mode data length zeroed (reserved in MODE SELECT).
  const current = [...sense({})];
  current[0] = 0;
  current[2] = 0; // device-specific parameter: ignored, as scsi-hd
  assert.deepEqual(select(current), { writeCache: true });
  assert.deepEqual(select([0, 0, 0, 0, ...cachingPage(false)]), { writeCache: false });
  // MODE SELECT(10): an 8-byte header, a short block descriptor with the block size.
  assert.deepEqual(
    select([0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 2, 0, ...cachingPage(false)], true),
    { writeCache: false },
  );
  assert.deepEqual(select([0, 0, 0, 0]), { writeCache: true }, "header only");
});

Deno.test("mode select: refusals name the parameter byte at fault", () => {
  // Another block size (byte 9: the block length in the descriptor).
  assert.deepEqual(select([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0]), invalidParameter(9));
  // A block descriptor length other than 0 or 8.
  assert.deepEqual(select([0, 0, 0, 4, 0, 0, 0, 0]), invalidParameter(3));
  // The control page's queue algorithm modifier is not changeable (page byte 3).
  const control = [0x0a, 0x0a, 0, 0, ...new Array(8).fill(0)];
  assert.deepEqual(select([0, 0, 0, 0, ...control]), invalidParameter(7));
  // A page this target does not report, and a page of the wrong length.
  assert.deepEqual(select([0, 0, 0, 0, 0x1c, 0x0a, ...new Array(10).fill(0)]), invalidParameter(4));
  assert.deepEqual(select([0, 0, 0, 0, 0x08, 0x0a, ...new Array(10).fill(0)]), invalidParameter(5));
  // Sub-page format.
  assert.deepEqual(select([0, 0, 0, 0, 0x48, 1, 0, 0x12]), invalidParameter(5));
  // A header or page cut short.
  assert.equal(select([0, 0, 0]), Senses.PARAMETER_LIST_LENGTH_ERROR);
  assert.equal(select([0, 0, 0, 8, 0, 0]), Senses.PARAMETER_LIST_LENGTH_ERROR);
  assert.equal(
    select([0, 0, 0, 0, ...cachingPage(true).slice(0, 10)]),
    Senses.PARAMETER_LIST_LENGTH_ERROR,
  );
  assert.equal(select([0, 0, 0, 0, 0x08]), Senses.PARAMETER_LIST_LENGTH_ERROR);
});

Deno.test("mode sense: the current WCE follows MODE SELECT; default values keep it on", () => {
  const off = { writeCache: false };
  const page = (pageControl: number) =>
    modeSense(
      {
        kind: "mode-sense",
        ten: false,
        dbd: true,
        llbaa: false,
        pageControl,
        pageCode: 0x08,
        subpageCode: 0,
        allocationLength: 255,
      },
      DISK,
      off,
    ) as Uint8Array;
  assert.equal(page(0)[6], 0, "current: WCE off");
  assert.equal(page(2)[6], 0x04, "default: WCE on");
});
