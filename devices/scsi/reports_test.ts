import assert from "node:assert/strict";
import { SUPPORTED_COMMANDS } from "./cdb.ts";
import type { DiskParameters } from "./disk_parameters.ts";
import {
  encodeLun,
  readCapacity10,
  readCapacity16,
  reportLuns,
  reportSupportedOperationCodes,
} from "./reports.ts";

const DISK: DiskParameters = {
  blockSize: 512,
  blocks: 2 ** 33,
  readOnly: false,
  solidState: false,
  serial: "s",
  naa: new Uint8Array(8),
};

Deno.test("read capacity: (10) saturates at 0xffffffff, (16) is exact with LBPME and LBPRZ", () => {
  assert.deepEqual([...readCapacity10(DISK)], [0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]);
  const rc16 = readCapacity16(DISK);
  assert.equal(new DataView(rc16.buffer).getBigUint64(0), 2n ** 33n - 1n);
  assert.equal(rc16[14], 0xc0);
});

Deno.test("report luns: peripheral and flat addressing; select report", () => {
  assert.deepEqual([...encodeLun(5)], [0, 5, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...encodeLun(300)], [0x41, 44, 0, 0, 0, 0, 0, 0]);
  const all = reportLuns({ kind: "report-luns", selectReport: 0, allocationLength: 64 }, [0, 1]);
  assert.ok(all instanceof Uint8Array);
  assert.equal(new DataView(all.buffer).getUint32(0), 16);
  const wellKnown = reportLuns({ kind: "report-luns", selectReport: 1, allocationLength: 64 }, [0]);
  assert.ok(wellKnown instanceof Uint8Array && wellKnown.length === 8);
  assert.ok(
    !(reportLuns({ kind: "report-luns", selectReport: 3, allocationLength: 64 }, [0]) instanceof
      Uint8Array),
  );
});

Deno.test("report supported operation codes: all, one, and unsupported", () => {
  const base = {
    kind: "report-supported-operation-codes" as const,
    requestedOpcode: 0,
    requestedServiceAction: 0,
    allocationLength: 4096,
  };
  const all = reportSupportedOperationCodes({ ...base, reportingOptions: 0 });
  assert.ok(all instanceof Uint8Array);
  assert.equal(all.length, 4 + 8 * SUPPORTED_COMMANDS.length);
  const read10 = reportSupportedOperationCodes({
    ...base,
    reportingOptions: 1,
    requestedOpcode: 0x28,
  });
  assert.ok(read10 instanceof Uint8Array);
  assert.equal(read10[1], 3);
  assert.equal(read10[3], 10);
  assert.equal(read10[4], 0x28);
  const rc16 = reportSupportedOperationCodes({
    ...base,
    reportingOptions: 2,
    requestedOpcode: 0x9e,
    requestedServiceAction: 0x10,
  });
  assert.ok(rc16 instanceof Uint8Array && rc16[1] === 3);
  const none = reportSupportedOperationCodes({
    ...base,
    reportingOptions: 1,
    requestedOpcode: 0x04,
  });
  assert.deepEqual([...(none as Uint8Array)], [0, 1, 0, 0]);
  assert.ok(
    !(reportSupportedOperationCodes({
      ...base,
      reportingOptions: 1,
      requestedOpcode: 0x9e,
    }) instanceof Uint8Array),
  );
  assert.ok(
    !(reportSupportedOperationCodes({ ...base, reportingOptions: 5 }) instanceof Uint8Array),
  );
});
