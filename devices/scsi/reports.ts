/**
 * The answers that describe the target rather than move data: READ
 * CAPACITY(10/16) (SBC-4 §5.15, §5.16), REPORT LUNS (SPC-4 §6.33) and
 * REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35).
 *
 * @module
 */

import { type Command, SUPPORTED_COMMANDS } from "./cdb.ts";
import type { DiskParameters } from "./disk_parameters.ts";
import { invalidField, type Sense } from "./sense.ts";

/** READ CAPACITY(10) parameter data: last LBA (0xffffffff if larger) and block length. */
export function readCapacity10(disk: DiskParameters): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, Math.min(disk.blocks - 1, 0xffffffff));
  view.setUint32(4, disk.blockSize);
  return out;
}

/** READ CAPACITY(16) parameter data, 32 bytes, with LBPME and LBPRZ set (holes read zero). */
export function readCapacity16(disk: DiskParameters): Uint8Array {
  const out = new Uint8Array(32);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(disk.blocks - 1));
  view.setUint32(8, disk.blockSize);
  out[14] = 0x80 | 0x40; // LBPME | LBPRZ
  return out;
}

/**
 * The single-level LUN of SAM-5 §4.7 for `lun`: peripheral device
 * addressing below 256, flat space addressing (01b) from 256 on.
 */
export function encodeLun(lun: number): Uint8Array {
  const out = new Uint8Array(8);
  if (lun < 256) out[1] = lun;
  else {
    out[0] = 0x40 | (lun >> 8);
    out[1] = lun & 0xff;
  }
  return out;
}

/** REPORT LUNS parameter data for LUNs `luns`, or INVALID FIELD for an unknown SELECT REPORT. */
export function reportLuns(
  command: Extract<Command, { kind: "report-luns" }>,
  luns: readonly number[],
): Uint8Array | Sense {
  // 0x00 and 0x02: all LUNs (no well-known LUNs are served); 0x01: only well-known ones.
  if (command.selectReport > 0x02) return invalidField(2);
  const listed = command.selectReport === 0x01 ? [] : luns;
  const out = new Uint8Array(8 + 8 * listed.length);
  new DataView(out.buffer).setUint32(0, 8 * listed.length);
  listed.forEach((lun, i) => out.set(encodeLun(lun), 8 + 8 * i));
  return out;
}

/** REPORT SUPPORTED OPERATION CODES parameter data (RCTD=0), or the sense to refuse it with. */
export function reportSupportedOperationCodes(
  command: Extract<Command, { kind: "report-supported-operation-codes" }>,
): Uint8Array | Sense {
  const { reportingOptions: options, requestedOpcode: opcode } = command;
  if (options === 0) {
    // All commands: 8-byte descriptors after a 4-byte length (§6.35.2).
    const out = new Uint8Array(4 + 8 * SUPPORTED_COMMANDS.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, 8 * SUPPORTED_COMMANDS.length);
    SUPPORTED_COMMANDS.forEach((c, i) => {
      const at = 4 + 8 * i;
      out[at] = c.opcode;
      view.setUint16(at + 2, c.serviceAction ?? 0);
      out[at + 5] = c.serviceAction !== undefined ? 0x01 : 0; // SERVACTV
      view.setUint16(at + 6, c.usage.length);
    });
    return out;
  }
  if (options > 3) return invalidField(2, 2);
  const withAction = SUPPORTED_COMMANDS.some((c) =>
    c.opcode === opcode && c.serviceAction !== undefined
  );
  // 1: an opcode without service actions; 2: opcode and service action; 3: either.
  if (options === 1 && withAction) return invalidField(3);
  if (options === 2 && !withAction && SUPPORTED_COMMANDS.some((c) => c.opcode === opcode)) {
    return invalidField(3);
  }
  const useAction = options === 2 || (options === 3 && withAction);
  const found = SUPPORTED_COMMANDS.find((c) =>
    c.opcode === opcode &&
    (!useAction || c.serviceAction === command.requestedServiceAction)
  );
  if (!found) {
    // SUPPORT 001b: not supported; no CDB usage data (§6.35.3).
    return Uint8Array.from([0, 0x01, 0, 0]);
  }
  const out = new Uint8Array(4 + found.usage.length);
  out[1] = 0x03; // SUPPORT 011b: supported as the standard describes
  new DataView(out.buffer).setUint16(2, found.usage.length);
  out.set(found.usage, 4);
  return out;
}
