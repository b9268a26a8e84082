import assert from "node:assert/strict";
import fc from "fast-check";
import { cdbLength, decodeCdb, isSense, SUPPORTED_COMMANDS } from "./cdb.ts";
import { invalidField, Senses } from "./sense.ts";

function cdb(...bytes: number[]): Uint8Array {
  const out = new Uint8Array(32);
  out.set(bytes);
  return out;
}

Deno.test("cdb: READ/WRITE(6/10/12/16) decode LBA, count and FUA", () => {
  assert.deepEqual(decodeCdb(cdb(0x08, 0x01, 0x02, 0x03, 0)), {
    kind: "read",
    lba: 0x10203,
    blocks: 256,
  });
  assert.deepEqual(decodeCdb(cdb(0x28, 0, 0, 0, 1, 0, 0, 0, 8, 0)), {
    kind: "read",
    lba: 256,
    blocks: 8,
  });
  assert.deepEqual(decodeCdb(cdb(0x2a, 0x08, 0, 0, 0, 9, 0, 0, 1, 0)), {
    kind: "write",
    lba: 9,
    blocks: 1,
    fua: true,
  });
  assert.deepEqual(decodeCdb(cdb(0xa8, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0)), {
    kind: "read",
    lba: 1,
    blocks: 65536,
  });
  assert.deepEqual(
    decodeCdb(cdb(0x8a, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0)),
    { kind: "write", lba: 2 ** 32 + 2, blocks: 4, fua: false },
  );
});

Deno.test("cdb: an LBA of 2^53 or more is out of every image", () => {
  const command = decodeCdb(
    cdb(0x88, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0),
  );
  assert.ok(!isSense(command) && command.kind === "read");
  assert.equal(command.lba, Number.MAX_SAFE_INTEGER);
});

Deno.test("cdb: refusals carry the sense and field the standards name", () => {
  assert.equal(decodeCdb(cdb(0xff)), Senses.INVALID_COMMAND_OPERATION_CODE);
  assert.equal(decodeCdb(cdb(0x7f)), Senses.INVALID_COMMAND_OPERATION_CODE, "variable length");
  assert.equal(decodeCdb(cdb(0x04)), Senses.INVALID_COMMAND_OPERATION_CODE, "FORMAT UNIT");
  assert.deepEqual(decodeCdb(cdb(0x15, 0x00, 0, 0, 12, 0)), invalidField(1, 4), "MODE SELECT PF=0");
  assert.deepEqual(decodeCdb(cdb(0x15, 0x11, 0, 0, 12, 0)), invalidField(1, 0), "SP=1");
  assert.deepEqual(decodeCdb(cdb(0x55, 0x10, 0, 0, 0, 0, 0, 1, 4, 0)), {
    kind: "mode-select",
    ten: true,
    parameterListLength: 260,
  });
  // NACA in the control byte.
  assert.deepEqual(decodeCdb(cdb(0x00, 0, 0, 0, 0, 0x04)), {
    ...Senses.INVALID_FIELD_IN_CDB,
    field: { inCdb: true, byte: 5, bit: 2 },
  });
  const withField = (sense: unknown) => (sense as { field: { byte: number } }).field.byte;
  assert.equal(withField(decodeCdb(cdb(0x12, 0, 0x80, 0, 36, 0))), 2, "page code without EVPD");
  assert.equal(withField(decodeCdb(cdb(0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0))), 1, "RDPROTECT");
  assert.equal(withField(decodeCdb(cdb(0x41, 0x10, 0, 0, 0, 0, 0, 0, 1, 0))), 1, "ANCHOR");
  assert.equal(withField(decodeCdb(cdb(0x41, 0x08, 0, 0, 0, 0, 0, 0, 0, 0))), 7, "WSNZ");
  assert.deepEqual(
    decodeCdb(cdb(0x2f, 0x04, 0, 0, 0, 0, 0, 0, 1, 0)),
    invalidField(1, 2),
    "BYTCHK 10b is reserved",
  );
  assert.deepEqual(decodeCdb(cdb(0x2f, 0x02, 0, 0, 0, 9, 0, 0, 2, 0)), {
    kind: "verify",
    lba: 9,
    blocks: 2,
    byteCheck: 1,
    countByte: 7,
  });
  assert.deepEqual(decodeCdb(cdb(0x8f, 0x06, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0)), {
    kind: "verify",
    lba: 3,
    blocks: 1,
    byteCheck: 3,
    countByte: 10,
  });
  const ws10 = decodeCdb(cdb(0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0));
  assert.ok(!isSense(ws10) && ws10.kind === "write-same" && ws10.countByte === 7, "WRITE SAME(10)");
  const ws16 = decodeCdb(cdb(0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0));
  assert.ok(!isSense(ws16) && ws16.kind === "write-same" && ws16.countByte === 10, "(16)");
  assert.equal(withField(decodeCdb(cdb(0x9e, 0x11))), 1, "service action");
  assert.equal(withField(decodeCdb(cdb(0xa3, 0x0c, 0x80))), 2, "RCTD");
});

Deno.test("cdb: every supported command decodes, with usage data as long as its CDB", () => {
  for (const command of SUPPORTED_COMMANDS) {
    assert.equal(command.usage.length, cdbLength(command.opcode), `opcode ${command.opcode}`);
    assert.equal(command.usage[0], command.opcode);
    const bytes = cdb(command.opcode, command.serviceAction ?? 0);
    // WRITE SAME needs a block count (WSNZ).
    if (command.opcode === 0x41) bytes[8] = 1;
    if (command.opcode === 0x93) bytes[13] = 1;
    // MODE SELECT needs PF.
    if (command.opcode === 0x15 || command.opcode === 0x55) bytes[1] = 0x10;
    const decoded = decodeCdb(bytes);
    assert.ok(
      !isSense(decoded),
      `opcode 0x${command.opcode.toString(16)}: ${JSON.stringify(decoded)}`,
    );
  }
});

Deno.test("cdb: hostile CDBs decode to a command or sense, never an exception", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
      const decoded = decodeCdb(bytes);
      if (isSense(decoded)) return decoded.key === 0x5;
      if ("lba" in decoded) return Number.isSafeInteger(decoded.lba) && decoded.blocks >= 0;
      return true;
    }),
    { numRuns: 20000 },
  );
});
