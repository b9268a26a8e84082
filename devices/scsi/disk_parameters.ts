/**
 * What the guest is told about one logical unit: its geometry and identity.
 * INQUIRY, MODE SENSE and READ CAPACITY all answer from these.
 *
 * @module
 */

/** The geometry and identity of one LUN. */
export interface DiskParameters {
  /** Logical block size in bytes: 512 or 4096. */
  readonly blockSize: number;
  /** Number of logical blocks. */
  readonly blocks: number;
  /** The image is served read-only (WP set, writes refused with DATA PROTECT). */
  readonly readOnly: boolean;
  /** Reported as non-rotating (VPD 0xb1), as `--solid-state`. */
  readonly solidState: boolean;
  /** Unit serial number (VPD 0x80), printable ASCII. */
  readonly serial: string;
  /** 8-byte NAA locally assigned designator (VPD 0x83). */
  readonly naa: Uint8Array;
}

/** Largest number of blocks one WRITE SAME or UNMAP descriptor may cover (VPD 0xb0). */
export function maxUnmapBlocks(blockSize: number): number {
  // 1 GiB, as QEMU's scsi-hd: bounded work per command.
  return (1 << 30) / blockSize;
}

/** Largest transfer of one READ or WRITE, in blocks (VPD 0xb0): 32 MiB. */
export function maxTransferBlocks(blockSize: number): number {
  return (32 << 20) / blockSize;
}

/** Most UNMAP block descriptors in one parameter list (VPD 0xb0). */
export const MAX_UNMAP_DESCRIPTORS = 255;

/**
 * A stable identity for an image: a 64-bit FNV-1a hash of its real path,
 * as a 16-digit serial and an NAA 3 (locally assigned) designator. The
 * same image gets the same identity across daemon restarts, so the
 * guest's /dev/disk/by-id links stay put.
 */
export function imageIdentity(realPath: string): { serial: string; naa: Uint8Array } {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(realPath)) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  const serial = hash.toString(16).padStart(16, "0");
  const naa = new Uint8Array(8);
  // NAA 3 in the top nibble (SPC-4 §7.8.6.6.4), 60 bits of the hash below it.
  const value = (3n << 60n) | (hash & 0x0fffffffffffffffn);
  new DataView(naa.buffer).setBigUint64(0, value);
  return { serial, naa };
}
