/**
 * INQUIRY (SPC-4 §6.6): the standard data and the vital product data pages
 * Linux asks for: 0x00 (supported pages), 0x80 (unit serial number), 0x83
 * (device identification), 0xb0 (block limits), 0xb1 (block device
 * characteristics) and 0xb2 (logical block provisioning).
 *
 * @module
 */

import {
  type DiskParameters,
  MAX_UNMAP_DESCRIPTORS,
  maxTransferBlocks,
  maxUnmapBlocks,
} from "./disk_parameters.ts";
import { invalidField, type Sense } from "./sense.ts";

/** Vendor, product and revision, as upstream's vhost-device-scsi reports them. */
export const VENDOR = "rust-vmm";
/** Product identification (16 bytes, space padded). */
export const PRODUCT = "vhost-user-scsi";
/** Product revision level (4 bytes). */
export const REVISION = "v0";

/** The VPD pages this target returns, in page 0x00's order. */
export const VPD_PAGES: readonly number[] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/** Peripheral device type of a direct access block device (SPC-4 §6.6.2). */
const PDT_DISK = 0x00;
/** Peripheral qualifier 011b, type 1Fh: no logical unit at this LUN. */
const NO_LUN = 0x7f;

function ascii(out: Uint8Array, at: number, text: string, width: number): void {
  for (let i = 0; i < width; i++) out[at + i] = i < text.length ? text.charCodeAt(i) : 0x20;
}

/**
 * The standard INQUIRY data (SPC-4 §6.6.2), 36 bytes; for a missing LUN
 * (`disk` null) with peripheral qualifier 011b as SPC-4 requires.
 */
export function standardInquiry(disk: DiskParameters | null): Uint8Array {
  const out = new Uint8Array(36);
  out[0] = disk ? PDT_DISK : NO_LUN;
  out[2] = 0x06; // VERSION: SPC-4
  out[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
  out[4] = out.length - 5; // ADDITIONAL LENGTH
  out[7] = 0x02; // CMDQUE: tagged queuing, requests run concurrently
  ascii(out, 8, VENDOR, 8);
  ascii(out, 16, PRODUCT, 16);
  ascii(out, 32, REVISION, 4);
  return out;
}

/** A VPD page (SPC-4 §7.8), or INVALID FIELD IN CDB for a page not supported. */
export function vpdPage(disk: DiskParameters, pageCode: number): Uint8Array | Sense {
  switch (pageCode) {
    case 0x00:
      return page(0x00, Uint8Array.from(VPD_PAGES));
    case 0x80:
      return page(0x80, new TextEncoder().encode(disk.serial));
    case 0x83:
      return page(0x83, deviceIdentification(disk));
    case 0xb0:
      return page(0xb0, blockLimits(disk));
    case 0xb1: {
      // SBC-4 §6.6.2: MEDIUM ROTATION RATE 1 = non-rotating, 0 = not reported.
      const body = new Uint8Array(0x3c);
      body[1] = disk.solidState ? 1 : 0;
      return page(0xb1, body);
    }
    case 0xb2: {
      // SBC-4 §6.6.4: UNMAP and WRITE SAME(10/16) with UNMAP punch holes,
      // which read back as zeros: LBPU, LBPWS, LBPWS10, LBPRZ=001b; thin.
      const body = new Uint8Array(4);
      body[1] = 0x80 | 0x40 | 0x20 | (0b001 << 2);
      body[2] = 0x02; // PROVISIONING TYPE: thin provisioned
      return page(0xb2, body);
    }
    default:
      return invalidField(2);
  }
}

function page(code: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  out[0] = PDT_DISK;
  out[1] = code;
  out[2] = body.length >> 8;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}

/** SPC-4 §7.8.6: an NAA designator and a T10 vendor ID designator, both of the LUN. */
function deviceIdentification(disk: DiskParameters): Uint8Array {
  const t10 = new Uint8Array(8 + 16 + disk.serial.length);
  ascii(t10, 0, VENDOR, 8);
  ascii(t10, 8, PRODUCT, 16);
  ascii(t10, 24, disk.serial, disk.serial.length);
  const out = new Uint8Array(4 + disk.naa.length + 4 + t10.length);
  // CODE SET 1 (binary), ASSOCIATION 0 (LUN), TYPE 3 (NAA).
  out.set([0x01, 0x03, 0x00, disk.naa.length], 0);
  out.set(disk.naa, 4);
  const at = 4 + disk.naa.length;
  // CODE SET 2 (ASCII), ASSOCIATION 0, TYPE 1 (T10 vendor ID based).
  out.set([0x02, 0x01, 0x00, t10.length], at);
  out.set(t10, at + 4);
  return out;
}

/** SBC-4 §6.6.3: the block limits page. */
function blockLimits(disk: DiskParameters): Uint8Array {
  const body = new Uint8Array(0x3c);
  const view = new DataView(body.buffer);
  body[0] = 0x01; // WSNZ: WRITE SAME with a count of 0 is refused
  const perPage = Math.max(1, 4096 / disk.blockSize);
  view.setUint16(2, perPage); // OPTIMAL TRANSFER LENGTH GRANULARITY: a host page
  view.setUint32(4, maxTransferBlocks(disk.blockSize)); // MAXIMUM TRANSFER LENGTH
  view.setUint32(16, maxUnmapBlocks(disk.blockSize)); // MAXIMUM UNMAP LBA COUNT
  view.setUint32(20, MAX_UNMAP_DESCRIPTORS); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
  view.setUint32(24, perPage); // OPTIMAL UNMAP GRANULARITY
  view.setBigUint64(32, BigInt(maxUnmapBlocks(disk.blockSize))); // MAXIMUM WRITE SAME LENGTH
  return body;
}
