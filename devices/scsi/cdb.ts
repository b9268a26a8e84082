/**
 * Command descriptor blocks decoded into typed commands, once, at the edge
 * (SPC-4 §4.2, SBC-4 §5). A CDB this target cannot execute becomes the sense
 * data to report instead. Field names follow the standards.
 *
 * @module
 */

import { invalidField, type Sense, Senses } from "./sense.ts";

/** Operation codes this target executes (SPC-4 Annex E, SBC-4 Table 31). */
export const Opcode = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  MODE_SENSE_6: 0x1a,
  START_STOP_UNIT: 0x1b,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  VERIFY_10: 0x2f,
  SYNCHRONIZE_CACHE_10: 0x35,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  MODE_SELECT_10: 0x55,
  MODE_SENSE_10: 0x5a,
  READ_16: 0x88,
  WRITE_16: 0x8a,
  VERIFY_16: 0x8f,
  SYNCHRONIZE_CACHE_16: 0x91,
  WRITE_SAME_16: 0x93,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  MAINTENANCE_IN: 0xa3,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
} as const;

/** SERVICE ACTION IN(16) service action: READ CAPACITY(16) (SBC-4 §5.16). */
export const SAI_READ_CAPACITY_16 = 0x10;
/** MAINTENANCE IN service action: REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35). */
export const MI_REPORT_SUPPORTED_OPERATION_CODES = 0x0c;

/** A decoded command. LBAs and counts are in logical blocks. */
export type Command =
  | { readonly kind: "test-unit-ready" }
  | {
    readonly kind: "request-sense";
    readonly descriptorFormat: boolean;
    readonly allocationLength: number;
  }
  | {
    readonly kind: "inquiry";
    readonly evpd: boolean;
    readonly pageCode: number;
    readonly allocationLength: number;
  }
  | {
    readonly kind: "mode-sense";
    /** MODE SENSE(10) rather than (6). */
    readonly ten: boolean;
    /** Disable block descriptors. */
    readonly dbd: boolean;
    /** Long LBA block descriptors accepted (10 only). */
    readonly llbaa: boolean;
    /** PC: 0 current, 1 changeable, 2 default, 3 saved. */
    readonly pageControl: number;
    readonly pageCode: number;
    readonly subpageCode: number;
    readonly allocationLength: number;
  }
  | {
    readonly kind: "mode-select";
    /** MODE SELECT(10) rather than (6): an 8-byte parameter header. */
    readonly ten: boolean;
    readonly parameterListLength: number;
  }
  | { readonly kind: "start-stop-unit" }
  | { readonly kind: "read-capacity-10" }
  | { readonly kind: "read-capacity-16"; readonly allocationLength: number }
  | { readonly kind: "read"; readonly lba: number; readonly blocks: number }
  | { readonly kind: "write"; readonly lba: number; readonly blocks: number; readonly fua: boolean }
  | {
    readonly kind: "verify";
    readonly lba: number;
    readonly blocks: number;
    /**
     * BYTCHK (SBC-4 §5.30): 0 checks the medium only, 1 compares it with
     * the data-out buffer, 3 compares every block with one data-out block.
     */
    readonly byteCheck: 0 | 1 | 3;
    /** The CDB byte of the VERIFICATION LENGTH field (for a sense field pointer). */
    readonly countByte: number;
  }
  | { readonly kind: "synchronize-cache"; readonly lba: number; readonly blocks: number }
  | {
    readonly kind: "write-same";
    readonly lba: number;
    readonly blocks: number;
    readonly unmap: boolean;
    /** No data-out buffer: the block is zeros (WRITE SAME(16) NDOB). */
    readonly ndob: boolean;
    /** The CDB byte of the NUMBER OF LOGICAL BLOCKS field (for a sense field pointer). */
    readonly countByte: number;
  }
  | { readonly kind: "unmap"; readonly parameterListLength: number }
  | {
    readonly kind: "report-luns";
    readonly selectReport: number;
    readonly allocationLength: number;
  }
  | {
    readonly kind: "report-supported-operation-codes";
    readonly reportingOptions: number;
    readonly requestedOpcode: number;
    readonly requestedServiceAction: number;
    readonly allocationLength: number;
  };

/** One command this target supports, for REPORT SUPPORTED OPERATION CODES. */
export interface SupportedCommand {
  /** Operation code. */
  readonly opcode: number;
  /** Service action, for opcodes that have them. */
  readonly serviceAction?: number;
  /** CDB usage data (SPC-4 §6.35.3): the bits the target looks at, byte by byte. */
  readonly usage: readonly number[];
}

const C = 0x04; // the CONTROL byte: NACA is evaluated (and refused)

/** Every command {@link decodeCdb} accepts, in opcode order. */
export const SUPPORTED_COMMANDS: readonly SupportedCommand[] = [
  { opcode: 0x00, usage: [0x00, 0, 0, 0, 0, C] },
  { opcode: 0x03, usage: [0x03, 0x01, 0, 0, 0xff, C] },
  { opcode: 0x08, usage: [0x08, 0x1f, 0xff, 0xff, 0xff, C] },
  { opcode: 0x0a, usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, C] },
  { opcode: 0x12, usage: [0x12, 0x01, 0xff, 0xff, 0xff, C] },
  { opcode: 0x15, usage: [0x15, 0x11, 0, 0, 0xff, C] },
  { opcode: 0x1a, usage: [0x1a, 0x08, 0xff, 0xff, 0xff, C] },
  { opcode: 0x1b, usage: [0x1b, 0x01, 0, 0x0f, 0xf7, C] },
  { opcode: 0x25, usage: [0x25, 0, 0, 0, 0, 0, 0, 0, 0, C] },
  { opcode: 0x28, usage: [0x28, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, C] },
  { opcode: 0x2a, usage: [0x2a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, C] },
  { opcode: 0x2f, usage: [0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, C] },
  { opcode: 0x35, usage: [0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, C] },
  { opcode: 0x41, usage: [0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, C] },
  { opcode: 0x42, usage: [0x42, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, C] },
  { opcode: 0x55, usage: [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, C] },
  { opcode: 0x5a, usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, C] },
  { opcode: 0x88, usage: [0x88, 0xf8, ...ones(8), ...ones(4), 0, C] },
  { opcode: 0x8a, usage: [0x8a, 0xf8, ...ones(8), ...ones(4), 0, C] },
  { opcode: 0x8f, usage: [0x8f, 0xf6, ...ones(8), ...ones(4), 0, C] },
  { opcode: 0x91, usage: [0x91, 0x02, ...ones(8), ...ones(4), 0, C] },
  { opcode: 0x93, usage: [0x93, 0xf9, ...ones(8), ...ones(4), 0, C] },
  {
    opcode: 0x9e,
    serviceAction: SAI_READ_CAPACITY_16,
    usage: [0x9e, 0x1f, ...zeros(8), ...ones(4), 0, C],
  },
  { opcode: 0xa0, usage: [0xa0, 0, 0xff, 0, 0, 0, ...ones(4), 0, C] },
  {
    opcode: 0xa3,
    serviceAction: MI_REPORT_SUPPORTED_OPERATION_CODES,
    usage: [0xa3, 0x1f, 0x07, 0xff, 0xff, 0xff, ...ones(4), 0, C],
  },
  { opcode: 0xa8, usage: [0xa8, 0xf8, ...ones(4), ...ones(4), 0, C] },
  { opcode: 0xaa, usage: [0xaa, 0xf8, ...ones(4), ...ones(4), 0, C] },
];

function ones(n: number): number[] {
  return new Array(n).fill(0xff);
}

function zeros(n: number): number[] {
  return new Array(n).fill(0);
}

/** SPC-4 §4.2.5.1: CDB length by group code (the opcode's top 3 bits); 0 if variable or vendor. */
export function cdbLength(opcode: number): number {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return 0;
  }
}

/** Logical block addresses at or above this cannot be on any image (2^53 bytes). */
const LBA_LIMIT = Number.MAX_SAFE_INTEGER;

function be16(cdb: Uint8Array, at: number): number {
  return (cdb[at] << 8) | cdb[at + 1];
}

function be32(cdb: Uint8Array, at: number): number {
  return ((cdb[at] << 24) | (cdb[at + 1] << 16) | (cdb[at + 2] << 8) | cdb[at + 3]) >>> 0;
}

function be64(cdb: Uint8Array, at: number): number {
  const high = be32(cdb, at);
  // Anything from 2^53 up is beyond every image: report it as out of range.
  if (high >= 0x200000) return LBA_LIMIT;
  return high * 0x1_0000_0000 + be32(cdb, at + 4);
}

/**
 * Decodes `cdb` (the request's CDB field, at least 16 bytes). Returns the
 * command, or the sense data to answer with CHECK CONDITION.
 */
export function decodeCdb(cdb: Uint8Array): Command | Sense {
  const opcode = cdb[0];
  const length = cdbLength(opcode);
  if (length === 0 || length > cdb.length) return Senses.INVALID_COMMAND_OPERATION_CODE;
  // SAM-5 §5.2: NACA=1 asks for ACA, which this target does not support.
  if (cdb[length - 1] & 0x04) return invalidField(length - 1, 2);
  switch (opcode) {
    case Opcode.TEST_UNIT_READY:
      return { kind: "test-unit-ready" };
    case Opcode.REQUEST_SENSE:
      return {
        kind: "request-sense",
        descriptorFormat: (cdb[1] & 1) !== 0,
        allocationLength: cdb[4],
      };
    case Opcode.INQUIRY: {
      const evpd = (cdb[1] & 1) !== 0;
      // CMDDT (obsolete) set, or a page code without EVPD (SPC-4 §6.6.1).
      if (cdb[1] & 0x02) return invalidField(1, 1);
      if (!evpd && cdb[2] !== 0) return invalidField(2);
      return { kind: "inquiry", evpd, pageCode: cdb[2], allocationLength: be16(cdb, 3) };
    }
    case Opcode.MODE_SENSE_6:
    case Opcode.MODE_SENSE_10: {
      const ten = opcode === Opcode.MODE_SENSE_10;
      return {
        kind: "mode-sense",
        ten,
        dbd: (cdb[1] & 0x08) !== 0,
        llbaa: ten && (cdb[1] & 0x10) !== 0,
        pageControl: cdb[2] >> 6,
        pageCode: cdb[2] & 0x3f,
        subpageCode: cdb[3],
        allocationLength: ten ? be16(cdb, 7) : cdb[4],
      };
    }
    case Opcode.MODE_SELECT_6:
    case Opcode.MODE_SELECT_10: {
      // PF=1 (pages as SPC-4 formats them), SP=0 (nothing is saved), as scsi-hd.
      if ((cdb[1] & 0x10) === 0) return invalidField(1, 4);
      if (cdb[1] & 0x01) return invalidField(1, 0);
      const ten = opcode === Opcode.MODE_SELECT_10;
      return { kind: "mode-select", ten, parameterListLength: ten ? be16(cdb, 7) : cdb[4] };
    }
    case Opcode.START_STOP_UNIT:
      // Nothing to spin or eject: every power condition is accepted as is.
      return { kind: "start-stop-unit" };
    case Opcode.READ_CAPACITY_10:
      // PMI (obsolete in SBC-4) with a non-zero LBA is not supported.
      if ((cdb[8] & 1) === 0 && be32(cdb, 2) !== 0) return invalidField(2);
      return { kind: "read-capacity-10" };
    case Opcode.SERVICE_ACTION_IN_16:
      if ((cdb[1] & 0x1f) !== SAI_READ_CAPACITY_16) return invalidField(1, 4);
      return { kind: "read-capacity-16", allocationLength: be32(cdb, 10) };
    case Opcode.READ_6:
    case Opcode.WRITE_6: {
      const lba = ((cdb[1] & 0x1f) << 16) | be16(cdb, 2);
      // SBC-4 §5.12: a TRANSFER LENGTH of 0 means 256 blocks.
      const blocks = cdb[4] === 0 ? 256 : cdb[4];
      return opcode === Opcode.READ_6
        ? { kind: "read", lba, blocks }
        : { kind: "write", lba, blocks, fua: false };
    }
    case Opcode.READ_10:
    case Opcode.READ_12:
    case Opcode.READ_16:
    case Opcode.WRITE_10:
    case Opcode.WRITE_12:
    case Opcode.WRITE_16: {
      // RDPROTECT/WRPROTECT: this target has no protection information.
      if (cdb[1] & 0xe0) return invalidField(1, 7);
      const { lba, blocks } = lbaAndCount(cdb, opcode);
      const read = opcode === Opcode.READ_10 || opcode === Opcode.READ_12 ||
        opcode === Opcode.READ_16;
      // FUA on a read asks for the medium, which the page cache is coherent with.
      return read
        ? { kind: "read", lba, blocks }
        : { kind: "write", lba, blocks, fua: (cdb[1] & 0x08) !== 0 };
    }
    case Opcode.VERIFY_10:
    case Opcode.VERIFY_16: {
      if (cdb[1] & 0xe0) return invalidField(1, 7);
      const byteCheck = (cdb[1] >> 1) & 0x03;
      // BYTCHK 10b is reserved (SBC-4 Table 73).
      if (byteCheck === 2) return invalidField(1, 2);
      const { lba, blocks } = lbaAndCount(cdb, opcode);
      const countByte = opcode === Opcode.VERIFY_10 ? 7 : 10;
      return { kind: "verify", lba, blocks, byteCheck: byteCheck as 0 | 1 | 3, countByte };
    }
    case Opcode.SYNCHRONIZE_CACHE_10:
    case Opcode.SYNCHRONIZE_CACHE_16: {
      const { lba, blocks } = lbaAndCount(cdb, opcode);
      return { kind: "synchronize-cache", lba, blocks };
    }
    case Opcode.WRITE_SAME_10:
    case Opcode.WRITE_SAME_16: {
      if (cdb[1] & 0xe0) return invalidField(1, 7);
      // ANCHOR: anchored blocks are not supported (VPD 0xb2 ANC_SUP=0).
      if (cdb[1] & 0x10) return invalidField(1, 4);
      const { lba, blocks } = lbaAndCount(cdb, opcode);
      const countByte = opcode === Opcode.WRITE_SAME_10 ? 7 : 10;
      // WSNZ=1 (VPD 0xb0): a count of 0 ("to the end") is refused.
      if (blocks === 0) return invalidField(countByte);
      const ndob = opcode === Opcode.WRITE_SAME_16 && (cdb[1] & 0x01) !== 0;
      return { kind: "write-same", lba, blocks, unmap: (cdb[1] & 0x08) !== 0, ndob, countByte };
    }
    case Opcode.UNMAP:
      if (cdb[1] & 0x01) return invalidField(1, 0);
      return { kind: "unmap", parameterListLength: be16(cdb, 7) };
    case Opcode.REPORT_LUNS:
      return { kind: "report-luns", selectReport: cdb[2], allocationLength: be32(cdb, 6) };
    case Opcode.MAINTENANCE_IN: {
      if ((cdb[1] & 0x1f) !== MI_REPORT_SUPPORTED_OPERATION_CODES) return invalidField(1, 4);
      // RCTD (command timeouts descriptors) is not supported.
      if (cdb[2] & 0x80) return invalidField(2, 7);
      return {
        kind: "report-supported-operation-codes",
        reportingOptions: cdb[2] & 0x07,
        requestedOpcode: cdb[3],
        requestedServiceAction: be16(cdb, 4),
        allocationLength: be32(cdb, 6),
      };
    }
    default:
      return Senses.INVALID_COMMAND_OPERATION_CODE;
  }
}

function lbaAndCount(cdb: Uint8Array, opcode: number): { lba: number; blocks: number } {
  switch (cdbLength(opcode)) {
    case 10:
      return { lba: be32(cdb, 2), blocks: be16(cdb, 7) };
    case 12:
      return { lba: be32(cdb, 2), blocks: be32(cdb, 6) };
    default:
      return { lba: be64(cdb, 2), blocks: be32(cdb, 10) };
  }
}

/** Whether a decode result is sense data (the CDB was refused). */
export function isSense(result: Command | Sense): result is Sense {
  return !("kind" in result);
}
