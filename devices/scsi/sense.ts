/**
 * SCSI status and sense data (SPC-4 §4.5): what a command that fails tells
 * the initiator. Responses use fixed-format sense (SPC-4 §4.5.3), which
 * Linux and QEMU's scsi-hd use; REQUEST SENSE may ask for descriptor format.
 *
 * @module
 */

/** SAM-5 §5.3 status codes. */
export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  BUSY: 0x08,
} as const;

/** SPC-4 Table 49: sense keys. */
export const SenseKey = {
  NO_SENSE: 0x0,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  ABORTED_COMMAND: 0xb,
  MISCOMPARE: 0xe,
} as const;

/** A sense key with its additional sense code and qualifier (SPC-4 Annex D). */
export interface Sense {
  /** Sense key. */
  readonly key: number;
  /** Additional sense code. */
  readonly asc: number;
  /** Additional sense code qualifier. */
  readonly ascq: number;
  /**
   * Sense-key specific field pointer (SPC-4 §4.5.2.4.2) for an invalid field:
   * the CDB (or parameter list) byte and, optionally, bit in error.
   */
  readonly field?: { readonly inCdb: boolean; readonly byte: number; readonly bit?: number };
  /** The INFORMATION field (SPC-4 §4.5.3), with VALID set: e.g. MISCOMPARE's byte offset. */
  readonly information?: number;
}

/** The conditions this target reports, as SPC-4 Annex D names them. */
export const Senses = {
  NO_SENSE: { key: SenseKey.NO_SENSE, asc: 0x00, ascq: 0x00 },
  INVALID_COMMAND_OPERATION_CODE: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x20, ascq: 0x00 },
  LBA_OUT_OF_RANGE: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x21, ascq: 0x00 },
  INVALID_FIELD_IN_CDB: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x24, ascq: 0x00 },
  LOGICAL_UNIT_NOT_SUPPORTED: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x25, ascq: 0x00 },
  INVALID_FIELD_IN_PARAMETER_LIST: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x26, ascq: 0x00 },
  PARAMETER_LIST_LENGTH_ERROR: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x1a, ascq: 0x00 },
  SAVING_PARAMETERS_NOT_SUPPORTED: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x39, ascq: 0x00 },
  WRITE_PROTECTED: { key: SenseKey.DATA_PROTECT, asc: 0x27, ascq: 0x00 },
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: { key: SenseKey.DATA_PROTECT, asc: 0x27, ascq: 0x07 },
  UNRECOVERED_READ_ERROR: { key: SenseKey.MEDIUM_ERROR, asc: 0x11, ascq: 0x00 },
  WRITE_ERROR: { key: SenseKey.MEDIUM_ERROR, asc: 0x0c, ascq: 0x00 },
  INTERNAL_TARGET_FAILURE: { key: SenseKey.HARDWARE_ERROR, asc: 0x44, ascq: 0x00 },
  POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED: {
    key: SenseKey.UNIT_ATTENTION,
    asc: 0x29,
    ascq: 0x00,
  },
  MISCOMPARE_DURING_VERIFY_OPERATION: { key: SenseKey.MISCOMPARE, asc: 0x1d, ascq: 0x00 },
} as const satisfies Record<string, Sense>;

/** INVALID FIELD IN CDB pointing at `byte` (and `bit`) of the CDB. */
export function invalidField(byte: number, bit?: number): Sense {
  return { ...Senses.INVALID_FIELD_IN_CDB, field: { inCdb: true, byte, bit } };
}

/** INVALID FIELD IN PARAMETER LIST pointing at `byte` of the data-out buffer. */
export function invalidParameter(byte: number): Sense {
  return { ...Senses.INVALID_FIELD_IN_PARAMETER_LIST, field: { inCdb: false, byte } };
}

/** MISCOMPARE DURING VERIFY OPERATION at byte `offset` of the data-out buffer (SBC-4 §5.30). */
export function miscompare(offset: number): Sense {
  return { ...Senses.MISCOMPARE_DURING_VERIFY_OPERATION, information: offset };
}

/** Length of the fixed-format sense data this target returns. */
export const FIXED_SENSE_LENGTH = 18;

/** SPC-4 §4.5.3: fixed-format sense data, current error (response code 0x70). */
export function fixedSense(sense: Sense): Uint8Array {
  const out = new Uint8Array(FIXED_SENSE_LENGTH);
  out[0] = 0x70;
  out[2] = sense.key & 0x0f;
  if (sense.information !== undefined) {
    out[0] |= 0x80; // VALID: the INFORMATION field is defined
    new DataView(out.buffer).setUint32(3, sense.information >>> 0);
  }
  out[7] = FIXED_SENSE_LENGTH - 8; // additional sense length
  out[12] = sense.asc;
  out[13] = sense.ascq;
  if (sense.field) {
    // SKSV | C/D | BPV | bit pointer, then the field pointer (§4.5.2.4.2).
    out[15] = 0x80 | (sense.field.inCdb ? 0x40 : 0) |
      (sense.field.bit !== undefined ? 0x08 | (sense.field.bit & 7) : 0);
    out[16] = (sense.field.byte >> 8) & 0xff;
    out[17] = sense.field.byte & 0xff;
  }
  return out;
}

/** SPC-4 §4.5.2: descriptor-format sense data without descriptors (response code 0x72). */
export function descriptorSense(sense: Sense): Uint8Array {
  const out = new Uint8Array(8);
  out[0] = 0x72;
  out[1] = sense.key & 0x0f;
  out[2] = sense.asc;
  out[3] = sense.ascq;
  return out;
}
