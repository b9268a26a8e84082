/**
 * MODE SENSE(6) and (10) (SPC-4 §6.11, §6.12): the mode parameter header,
 * a block descriptor (SBC-4 §6.5.2) and the pages Linux asks for:
 * read-write error recovery (0x01), caching (0x08, write cache enabled:
 * writes land in the host page cache until SYNCHRONIZE CACHE or FUA) and
 * control (0x0a). MODE SELECT is not supported, so nothing is changeable.
 *
 * @module
 */

import type { Command } from "./cdb.ts";
import type { DiskParameters } from "./disk_parameters.ts";
import { invalidField, type Sense, Senses } from "./sense.ts";

/** A decoded MODE SENSE(6) or (10). */
export type ModeSense = Extract<Command, { kind: "mode-sense" }>;

/** Page codes returned, in the order "all pages" (0x3f) lists them. */
export const MODE_PAGES: readonly number[] = [0x01, 0x08, 0x0a];

/** Page control values (SPC-4 Table 114). */
const PC_CHANGEABLE = 1;
const PC_SAVED = 3;

function modePage(code: number, pageControl: number): Uint8Array {
  const changeable = pageControl === PC_CHANGEABLE;
  switch (code) {
    case 0x01: {
      // SBC-4 §6.5.9: read-write error recovery; no retries to configure.
      return Uint8Array.from([0x01, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    case 0x08: {
      // SBC-4 §6.5.5: caching; WCE=1 (byte 2 bit 2), RCD=0.
      const out = new Uint8Array(20);
      out[0] = 0x08;
      out[1] = 0x12;
      if (!changeable) out[2] = 0x04;
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

/** The MODE SENSE parameter data, or the sense to refuse the CDB with. */
export function modeSense(command: ModeSense, disk: DiskParameters): Uint8Array | Sense {
  if (command.pageControl === PC_SAVED) return Senses.SAVING_PARAMETERS_NOT_SUPPORTED;
  const all = command.pageCode === 0x3f;
  // Subpage 0x00 only; with "all pages", 0xff (all subpages) is the same list.
  if (command.subpageCode !== 0 && !(all && command.subpageCode === 0xff)) {
    return invalidField(3);
  }
  if (!all && !MODE_PAGES.includes(command.pageCode)) return invalidField(2, 5);
  const pages = (all ? MODE_PAGES : [command.pageCode]).map((code) =>
    modePage(code, command.pageControl)
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
