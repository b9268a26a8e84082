/**
 * MODE SENSE(6) and (10) (SPC-4 §6.11, §6.12): the mode parameter header,
 * a block descriptor (SBC-4 §6.5.2) and the pages Linux asks for:
 * read-write error recovery (0x01), caching (0x08) and control (0x0a); and
 * MODE SELECT(6) and (10) (SPC-4 §6.9, §6.10), which may change one thing,
 * as scsi-hd: the caching page's WCE. With WCE=1 (the default) writes land
 * in the host page cache until SYNCHRONIZE CACHE or FUA; with WCE=0 every
 * write is durable before it completes. Everything else must be sent back
 * as MODE SENSE reports it.
 *
 * @module
 */

import type { Command } from "./cdb.ts";
import type { DiskParameters } from "./disk_parameters.ts";
import { invalidField, invalidParameter, type Sense, Senses } from "./sense.ts";

/** A decoded MODE SENSE(6) or (10). */
export type ModeSense = Extract<Command, { kind: "mode-sense" }>;

/** A decoded MODE SELECT(6) or (10). */
export type ModeSelect = Extract<Command, { kind: "mode-select" }>;

/** The mode parameters a MODE SELECT can change. */
export interface ModeParameters {
  /** Caching page WCE: writes may stay in the host page cache until a flush. */
  readonly writeCache: boolean;
}

/** The parameters at power on (SPC-4 §6.11.3 default values). */
export const DEFAULT_MODE_PARAMETERS: ModeParameters = { writeCache: true };

/** Page codes returned, in the order "all pages" (0x3f) lists them. */
export const MODE_PAGES: readonly number[] = [0x01, 0x08, 0x0a];

/** Page control values (SPC-4 Table 114). */
const PC_CURRENT = 0;
const PC_CHANGEABLE = 1;
const PC_SAVED = 3;

/** The caching page's WCE bit (byte 2). */
const WCE = 0x04;

function modePage(code: number, pageControl: number, current: ModeParameters): Uint8Array {
  const changeable = pageControl === PC_CHANGEABLE;
  switch (code) {
    case 0x01: {
      // SBC-4 §6.5.9: read-write error recovery; no retries to configure.
      return Uint8Array.from([0x01, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    case 0x08: {
      // SBC-4 §6.5.5: caching; WCE (byte 2 bit 2) the one changeable bit, RCD=0.
      const out = new Uint8Array(20);
      out[0] = 0x08;
      out[1] = 0x12;
      const values = pageControl === PC_CURRENT ? current : DEFAULT_MODE_PARAMETERS;
      if (changeable || values.writeCache) out[2] = WCE;
      return out;
    }
    default: {
      // SPC-4 §7.5.8: control; QUEUE ALGORITHM MODIFIER 1 (unrestricted
      // reordering: requests complete out of order), D_SENSE 0 (fixed sense).
      const out = new Uint8Array(12);
      out[0] = 0x0a;
      out[1] = 0x0a;
      if (!changeable) out[3] = 0x10;
      return out;
    }
  }
}

/**
 * The MODE SENSE parameter data, or the sense to refuse the CDB with;
 * current values from `current` (default {@link DEFAULT_MODE_PARAMETERS}).
 */
export function modeSense(
  command: ModeSense,
  disk: DiskParameters,
  current: ModeParameters = DEFAULT_MODE_PARAMETERS,
): Uint8Array | Sense {
  if (command.pageControl === PC_SAVED) return Senses.SAVING_PARAMETERS_NOT_SUPPORTED;
  const all = command.pageCode === 0x3f;
  // Subpage 0x00 only; with "all pages", 0xff (all subpages) is the same list.
  if (command.subpageCode !== 0 && !(all && command.subpageCode === 0xff)) {
    return invalidField(3);
  }
  if (!all && !MODE_PAGES.includes(command.pageCode)) return invalidField(2, 5);
  const pages = (all ? MODE_PAGES : [command.pageCode]).map((code) =>
    modePage(code, command.pageControl, current)
  );
  const longLba = command.llbaa && disk.blocks > 0xffffffff;
  const descriptor = command.dbd ? new Uint8Array(0) : blockDescriptor(disk, longLba);
  const header = new Uint8Array(command.ten ? 8 : 4);
  const length = header.length + descriptor.length + pages.reduce((n, p) => n + p.length, 0);
  // WP (bit 7) for a read-only image; DPOFUA (bit 4): FUA writes reach the disk.
  const deviceSpecific = (disk.readOnly ? 0x80 : 0) | 0x10;
  if (command.ten) {
    const view = new DataView(header.buffer);
    view.setUint16(0, length - 2); // MODE DATA LENGTH
    header[3] = deviceSpecific;
    header[4] = longLba ? 0x01 : 0; // LONGLBA
    view.setUint16(6, descriptor.length); // BLOCK DESCRIPTOR LENGTH
  } else {
    header[0] = length - 1;
    header[2] = deviceSpecific;
    header[3] = descriptor.length;
  }
  const out = new Uint8Array(length);
  out.set(header, 0);
  out.set(descriptor, header.length);
  let at = header.length + descriptor.length;
  for (const p of pages) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** SBC-4 §6.5.2: the short (8-byte) or long (16-byte) LBA block descriptor. */
function blockDescriptor(disk: DiskParameters, long: boolean): Uint8Array {
  const out = new Uint8Array(long ? 16 : 8);
  const view = new DataView(out.buffer);
  if (long) {
    view.setBigUint64(0, BigInt(disk.blocks));
    view.setUint32(12, disk.blockSize);
  } else {
    view.setUint32(0, Math.min(disk.blocks, 0xffffffff));
    view.setUint32(4, disk.blockSize & 0xffffff);
  }
  return out;
}

/**
 * Checks a MODE SELECT parameter list (`data`, the whole list) against the
 * current values, as scsi-hd does: header, at most one short block
 * descriptor whose block length is 0 or the disk's, then whole pages this
 * target reports, each byte equal to its current value except the bits the
 * changeable values allow. Returns the parameters it sets, or the sense to
 * refuse it with (nothing is changed then).
 */
export function modeSelect(
  command: ModeSelect,
  data: Uint8Array,
  options: { disk: DiskParameters; current: ModeParameters },
): ModeParameters | Sense {
  const headerLength = command.ten ? 8 : 4;
  if (data.length < headerLength) return Senses.PARAMETER_LIST_LENGTH_ERROR;
  const descriptorLengthAt = command.ten ? 6 : 3;
  const descriptorLength = command.ten ? (data[6] << 8) | data[7] : data[3];
  if (data.length < headerLength + descriptorLength) return Senses.PARAMETER_LIST_LENGTH_ERROR;
  if (descriptorLength !== 0 && descriptorLength !== 8) {
    return invalidParameter(descriptorLengthAt);
  }
  if (descriptorLength === 8) {
    // The number of blocks is ignored (as scsi-hd); the block size cannot change.
    const at = headerLength + 5;
    const blockLength = (data[at] << 16) | (data[at + 1] << 8) | data[at + 2];
    if (blockLength !== 0 && blockLength !== options.disk.blockSize) return invalidParameter(at);
  }
  let writeCache = options.current.writeCache;
  let at = headerLength + descriptorLength;
  while (at < data.length) {
    const start = at;
    const code = data[at] & 0x3f;
    // SPF: the sub-page format, with a 4-byte page header.
    const subpageFormat = (data[at] & 0x40) !== 0;
    const pageHeader = subpageFormat ? 4 : 2;
    if (data.length - at < pageHeader) return Senses.PARAMETER_LIST_LENGTH_ERROR;
    if (subpageFormat && data[at + 1] !== 0) return invalidParameter(at + 1);
    const pageLength = subpageFormat ? (data[at + 2] << 8) | data[at + 3] : data[at + 1];
    at += pageHeader;
    if (pageLength > data.length - at) return Senses.PARAMETER_LIST_LENGTH_ERROR;
    if (subpageFormat || !MODE_PAGES.includes(code)) return invalidParameter(start);
    const current = modePage(code, PC_CURRENT, options.current);
    const changeable = modePage(code, PC_CHANGEABLE, options.current);
    if (pageLength !== current.length - 2) return invalidParameter(start + 1);
    for (let i = 2; i < current.length; i++) {
      const given = data[at + i - 2];
      if (((given ^ current[i]) & ~changeable[i]) !== 0) return invalidParameter(at + i - 2);
    }
    if (code === 0x08) writeCache = (data[at] & WCE) !== 0;
    at += pageLength;
  }
  return { writeCache };
}
