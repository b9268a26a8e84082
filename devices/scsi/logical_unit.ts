/**
 * One logical unit: a disk image served as a direct access block device
 * (SBC-4). It executes decoded commands against the image through a
 * {@link BlockIo} engine, moving data straight between the file and guest
 * memory, and reports every failure with its sense data.
 *
 * @module
 */

import type { GuestSlice } from "../../core/memory/guest_memory.ts";
import type { Logger } from "../../core/log.ts";
import { pushIovecs, readSlices, writeSlices } from "../../core/virtio/descriptor_chain.ts";
import { addressOf, errnoName, IovecList, stableBuffer } from "../../ffi/mod.ts";
import type { BlockIo } from "./block_io.ts";
import type { Command } from "./cdb.ts";
import {
  type DiskParameters,
  MAX_UNMAP_DESCRIPTORS,
  maxTransferBlocks,
  maxUnmapBlocks,
} from "./disk_parameters.ts";
import { standardInquiry, vpdPage } from "./inquiry.ts";
import {
  DEFAULT_MODE_PARAMETERS,
  type ModeParameters,
  modeSelect,
  modeSense,
} from "./mode_pages.ts";
import { readCapacity10, readCapacity16 } from "./reports.ts";
import {
  descriptorSense,
  fixedSense,
  invalidField,
  invalidParameter,
  miscompare,
  ScsiStatus,
  type Sense,
  Senses,
} from "./sense.ts";
import { VirtioScsiResponse } from "./virtio_scsi.ts";

/** The data buffers of one request: data-out (device-readable) and data-in (device-writable). */
export interface RequestBuffers {
  /** Data-out bytes, after the request header. */
  readonly dataOut: readonly GuestSlice[];
  /** Total data-out bytes. */
  readonly dataOutLength: number;
  /** Data-in space, after the response header. */
  readonly dataIn: readonly GuestSlice[];
  /** Total data-in bytes. */
  readonly dataInLength: number;
}

/** How a command ended. */
export interface Outcome {
  /** §5.6.6.1 response code (OK unless the transport failed, e.g. OVERRUN). */
  readonly response: number;
  /** SCSI status. */
  readonly status: number;
  /** Sense data, with CHECK CONDITION. */
  readonly sense?: Uint8Array;
  /** Bytes written into the data-in buffers. */
  readonly dataIn: number;
  /** Bytes taken from the data-out buffers. */
  readonly dataOut: number;
}

/** Called once when a command ends. */
export type OutcomeDone = (outcome: Outcome) => void;

/** GOOD with `dataIn`/`dataOut` bytes moved. */
export function good(moved: { dataIn?: number; dataOut?: number } = {}): Outcome {
  return {
    response: VirtioScsiResponse.OK,
    status: ScsiStatus.GOOD,
    dataIn: moved.dataIn ?? 0,
    dataOut: moved.dataOut ?? 0,
  };
}

/** CHECK CONDITION with fixed-format `sense`. */
export function checkCondition(sense: Sense): Outcome {
  return {
    response: VirtioScsiResponse.OK,
    status: ScsiStatus.CHECK_CONDITION,
    sense: fixedSense(sense),
    dataIn: 0,
    dataOut: 0,
  };
}

/**
 * VIRTIO_SCSI_S_OVERRUN: the buffers cannot hold the transfer, or point the
 * wrong way for it (§5.6.6.1; QEMU's virtio-scsi answers both so).
 */
export const OVERRUN: Outcome = {
  response: VirtioScsiResponse.OVERRUN,
  status: ScsiStatus.GOOD,
  dataIn: 0,
  dataOut: 0,
};

/**
 * Copies parameter data into the data-in buffers: at most
 * `allocationLength` bytes (SPC-4 §4.2.5.6: truncation is not an error).
 */
export function dataIn(
  data: Uint8Array,
  allocationLength: number,
  buffers: RequestBuffers,
): Outcome {
  const length = Math.min(data.length, allocationLength);
  if (buffers.dataOutLength > 0 || length > buffers.dataInLength) return OVERRUN;
  return good({ dataIn: writeSlices(buffers.dataIn, data.subarray(0, length)) });
}

/** REQUEST SENSE (SPC-4 §6.39): sense is returned with each response, so none is pending. */
export function requestSense(
  command: Extract<Command, { kind: "request-sense" }>,
  buffers: RequestBuffers,
  sense: Sense = Senses.NO_SENSE,
): Outcome {
  const data = command.descriptorFormat ? descriptorSense(sense) : fixedSense(sense);
  return dataIn(data, command.allocationLength, buffers);
}

const EIO = 5;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
const EDQUOT = 122;

/** iovec arrays kept for reuse per unit (one per request in flight at most). */
const MAX_POOLED_IOVECS = 1024;

/** Bytes of the repeated pattern WRITE SAME writes per operation. */
const WRITE_SAME_CHUNK = 1 << 20;

/** Options of {@link LogicalUnit}. */
export interface LogicalUnitOptions {
  /** The open image (read-only if `disk.readOnly`). */
  readonly fd: number;
  /** The engine file operations go through. */
  readonly io: BlockIo;
  /** Where I/O errors are reported. */
  readonly log: Logger;
}

/** A disk image served as one LUN. */
export class LogicalUnit {
  /** What the guest is told about the disk. */
  readonly disk: DiskParameters;
  readonly #fd: number;
  readonly #io: BlockIo;
  readonly #log: Logger;
  /** iovec arrays of finished transfers, for the next ones. */
  readonly #iovecs: IovecList[] = [];
  /** The mode parameters MODE SELECT changed (the write cache). */
  #mode: ModeParameters = DEFAULT_MODE_PARAMETERS;

  /** Serves `disk` from `options.fd`. */
  constructor(disk: DiskParameters, options: LogicalUnitOptions) {
    this.disk = disk;
    this.#fd = options.fd;
    this.#io = options.io;
    this.#log = options.log;
  }

  /** The current mode parameters. */
  get modeParameters(): ModeParameters {
    return this.#mode;
  }

  /** A power on (a new front-end): mode parameters return to their defaults. */
  powerOn(): void {
    this.#mode = DEFAULT_MODE_PARAMETERS;
  }

  /** Executes `command`; `done` runs once, now or when the I/O completes. */
  execute(command: Command, buffers: RequestBuffers, done: OutcomeDone): void {
    const disk = this.disk;
    switch (command.kind) {
      case "test-unit-ready":
      case "start-stop-unit":
        return done(noData(buffers));
      case "request-sense":
        return done(requestSense(command, buffers));
      case "inquiry": {
        const data = command.evpd ? vpdPage(disk, command.pageCode) : standardInquiry(disk);
        return done(answer(data, command.allocationLength, buffers));
      }
      case "mode-sense":
        return done(
          answer(modeSense(command, disk, this.#mode), command.allocationLength, buffers),
        );
      case "mode-select":
        return this.#modeSelect(command, buffers, done);
      case "read-capacity-10":
        return done(dataIn(readCapacity10(disk), 8, buffers));
      case "read-capacity-16":
        return done(dataIn(readCapacity16(disk), command.allocationLength, buffers));
      case "read":
      case "write":
        return this.#readWrite(command, buffers, done);
      case "verify":
        return this.#verify(command, buffers, done);
      case "synchronize-cache":
        return this.#synchronizeCache(command, buffers, done);
      case "write-same":
        return this.#writeSame(command, buffers, done);
      case "unmap":
        return this.#unmap(command.parameterListLength, buffers, done);
      case "report-luns":
      case "report-supported-operation-codes":
        // Answered by the target for every LUN.
        return done(checkCondition(Senses.INVALID_COMMAND_OPERATION_CODE));
    }
  }

  #outOfRange(lba: number, blocks: number): boolean {
    return lba > this.disk.blocks || lba + blocks > this.disk.blocks;
  }

  #readWrite(
    command: Extract<Command, { kind: "read" | "write" }>,
    buffers: RequestBuffers,
    done: OutcomeDone,
  ): void {
    const reading = command.kind === "read";
    const length = command.blocks * this.disk.blockSize;
    // The transport's checks first, as QEMU: direction and room for the transfer.
    const room = reading ? buffers.dataInLength : buffers.dataOutLength;
    const wrongWay = reading ? buffers.dataOutLength : buffers.dataInLength;
    if (length > 0 && (wrongWay > 0 || length > room)) return done(OVERRUN);
    if (!reading && this.disk.readOnly) return done(checkCondition(Senses.WRITE_PROTECTED));
    if (this.#outOfRange(command.lba, command.blocks)) {
      return done(checkCondition(Senses.LBA_OUT_OF_RANGE));
    }
    if (length === 0) return done(noData(buffers));
    // WCE=0: every write is durable before it completes, as with FUA.
    const fua = command.kind === "write" && (command.fua || !this.#mode.writeCache);
    this.#transfer(
      { reading, slices: reading ? buffers.dataIn : buffers.dataOut, fua },
      { offset: command.lba * this.disk.blockSize, length },
      (errno) => {
        if (errno !== 0) return done(this.#ioError(reading ? "read" : "write", errno));
        done(good(reading ? { dataIn: length } : { dataOut: length }));
      },
    );
  }

  /**
   * Moves `range.length` bytes between `slices` and the image at
   * `range.offset`, in as many operations as short transfers and IOV_MAX
   * need. `done` gets 0 or an errno.
   */
  #transfer(
    what: { reading: boolean; slices: readonly GuestSlice[]; fua: boolean },
    range: { offset: number; length: number },
    done: (errno: number) => void,
  ): void {
    // iovec arrays are reused: allocating one per request costs more than the request.
    const iov = this.#iovecs.pop() ?? new IovecList(16);
    let progress = 0;
    const finish = (errno: number): void => {
      iov.clear();
      if (this.#iovecs.length < MAX_POOLED_IOVECS) this.#iovecs.push(iov);
      done(errno);
    };
    const step = (): void => {
      iov.clear();
      pushIovecs(what.slices, iov, { skip: progress, max: range.length - progress });
      const offset = range.offset + progress;
      const op = what.reading
        ? { kind: "readv" as const, fd: this.#fd, iov, offset }
        : { kind: "writev" as const, fd: this.#fd, iov, offset, dsync: what.fua };
      this.#io.submit(op, (result) => {
        if (result < 0) return finish(-result);
        // End of file inside the image: it shrank under us.
        if (result === 0) return finish(EIO);
        progress += result;
        if (progress < range.length) step();
        else finish(0);
      });
    };
    step();
  }

  /**
   * VERIFY (SBC-4 §5.30). BYTCHK=0: the medium is a file the kernel
   * already checks; only the range is. BYTCHK=1 or 3: the range is read
   * and compared with the data-out buffer (3: one block, for each block);
   * the first byte that differs is reported as MISCOMPARE with its offset
   * in the INFORMATION field.
   */
  #verify(
    command: Extract<Command, { kind: "verify" }>,
    buffers: RequestBuffers,
    done: OutcomeDone,
  ): void {
    const { blockSize } = this.disk;
    const { lba, blocks, byteCheck } = command;
    if (byteCheck === 0) {
      if (this.#outOfRange(lba, blocks)) return done(checkCondition(Senses.LBA_OUT_OF_RANGE));
      return done(noData(buffers));
    }
    const expected = byteCheck === 1 ? blocks * blockSize : blocks > 0 ? blockSize : 0;
    if (buffers.dataInLength > 0 || expected > buffers.dataOutLength) return done(OVERRUN);
    if (this.#outOfRange(lba, blocks)) return done(checkCondition(Senses.LBA_OUT_OF_RANGE));
    if (blocks > maxTransferBlocks(blockSize)) {
      return done(invalidFieldOutcome(command.countByte));
    }
    if (blocks === 0) return done(noData(buffers));
    const data = readSlices(buffers.dataOut, { length: expected });
    const medium = stableBuffer(blocks * blockSize);
    this.#readInto(medium, lba * blockSize, (errno) => {
      if (errno !== 0) return done(this.#ioError("read", errno));
      for (let at = 0; at < medium.length; at++) {
        const want = byteCheck === 1 ? data[at] : data[at % blockSize];
        if (medium[at] !== want) return done(checkCondition(miscompare(at)));
      }
      done(good({ dataOut: expected }));
    });
  }

  /** Reads `buffer.length` bytes of the image at `offset` into `buffer` (kept referenced until done). */
  #readInto(buffer: Uint8Array, offset: number, done: (errno: number) => void): void {
    const address = addressOf(buffer);
    const iov = new IovecList(1);
    let progress = 0;
    const step = (): void => {
      iov.clear();
      iov.push(address + progress, buffer.length - progress);
      this.#io.submit({ kind: "readv", fd: this.#fd, iov, offset: offset + progress }, (result) => {
        if (result < 0) return done(-result);
        if (result === 0) return done(EIO);
        progress += result;
        if (progress < buffer.length) step();
        else done(0);
      });
    };
    step();
  }

  /**
   * `done`, after an fdatasync when the write cache is off (WCE=0): what
   * WRITE SAME and UNMAP changed is durable before they complete.
   */
  #durable(done: (errno: number) => void): (errno: number) => void {
    return (errno) => {
      if (errno !== 0 || this.#mode.writeCache) return done(errno);
      this.#io.submit({ kind: "fdatasync", fd: this.#fd }, (result) => done(Math.max(0, -result)));
    };
  }

  /** MODE SELECT (SPC-4 §6.9): see {@link modeSelect}; turning the write cache off flushes it. */
  #modeSelect(
    command: Extract<Command, { kind: "mode-select" }>,
    buffers: RequestBuffers,
    done: OutcomeDone,
  ): void {
    const length = command.parameterListLength;
    if (length === 0) return done(noData(buffers));
    if (buffers.dataInLength > 0 || length > buffers.dataOutLength) return done(OVERRUN);
    const data = readSlices(buffers.dataOut, { length });
    const result = modeSelect(command, data, { disk: this.disk, current: this.#mode });
    if (!("writeCache" in result)) return done(checkCondition(result));
    const flush = this.#mode.writeCache && !result.writeCache && !this.disk.readOnly;
    this.#mode = result;
    if (!flush) return done(good({ dataOut: length }));
    // As scsi-hd: what the cache held is on the disk before write-through begins.
    this.#io.submit({ kind: "fdatasync", fd: this.#fd }, (flushed) => {
      done(flushed < 0 ? this.#ioError("flush", -flushed) : good({ dataOut: length }));
    });
  }

  #ioError(operation: string, errno: number): Outcome {
    this.#log.error(`${operation} on the image failed: ${errnoName(errno)} (${errno})`);
    if (operation === "read") return checkCondition(Senses.UNRECOVERED_READ_ERROR);
    if (errno === ENOSPC || errno === EDQUOT) {
      return checkCondition(Senses.SPACE_ALLOCATION_FAILED_WRITE_PROTECT);
    }
    return checkCondition(Senses.WRITE_ERROR);
  }

  #synchronizeCache(
    command: Extract<Command, { kind: "synchronize-cache" }>,
    buffers: RequestBuffers,
    done: OutcomeDone,
  ): void {
    if (this.#outOfRange(command.lba, command.blocks)) {
      return done(checkCondition(Senses.LBA_OUT_OF_RANGE));
    }
    // Nothing can be dirty in a read-only image.
    if (this.disk.readOnly) return done(noData(buffers));
    // The whole file: fdatasync has no range, and the answer must cover the range asked.
    this.#io.submit({ kind: "fdatasync", fd: this.#fd }, (result) => {
      done(result < 0 ? this.#ioError("flush", -result) : noData(buffers));
    });
  }

  #writeSame(
    command: Extract<Command, { kind: "write-same" }>,
    buffers: RequestBuffers,
    done: OutcomeDone,
  ): void {
    const { blockSize } = this.disk;
    if (!command.ndob && (buffers.dataInLength > 0 || buffers.dataOutLength < blockSize)) {
      return done(OVERRUN);
    }
    if (this.disk.readOnly) return done(checkCondition(Senses.WRITE_PROTECTED));
    if (this.#outOfRange(command.lba, command.blocks)) {
      return done(checkCondition(Senses.LBA_OUT_OF_RANGE));
    }
    if (command.blocks > maxUnmapBlocks(blockSize)) {
      return done(invalidFieldOutcome(command.countByte));
    }
    const pattern = command.ndob
      ? new Uint8Array(blockSize)
      : readSlices(buffers.dataOut, { length: blockSize });
    const zeros = pattern.every((b) => b === 0);
    const range = { offset: command.lba * blockSize, length: command.blocks * blockSize };
    const finish = this.#durable((errno: number): void => {
      done(
        errno === 0
          ? good({ dataOut: command.ndob ? 0 : blockSize })
          : this.#ioError("write", errno),
      );
    });
    // SBC-4 §5.48: with UNMAP, zeros may be deallocated instead of written
    // (LBPRZ=1: a hole reads back as zeros).
    if (command.unmap && zeros) this.#punchHole(range, finish);
    else this.#writePattern(pattern, range, finish);
  }

  /** Deallocates `range`; where the file system cannot, writes zeros (reads must return zeros). */
  #punchHole(range: { offset: number; length: number }, done: (errno: number) => void): void {
    this.#io.submit({ kind: "punch-hole", fd: this.#fd, ...range }, (result) => {
      if (result === -EOPNOTSUPP) {
        return this.#writePattern(new Uint8Array(this.disk.blockSize), range, done);
      }
      done(result < 0 ? -result : 0);
    });
  }

  #writePattern(
    pattern: Uint8Array,
    range: { offset: number; length: number },
    done: (errno: number) => void,
  ): void {
    const chunk = stableBuffer(Math.min(range.length, WRITE_SAME_CHUNK));
    for (let at = 0; at < chunk.length; at += pattern.length) chunk.set(pattern, at);
    const address = addressOf(chunk);
    const iov = new IovecList(1);
    let progress = 0;
    const step = (): void => {
      iov.clear();
      iov.push(address, Math.min(chunk.length, range.length - progress));
      const op = {
        kind: "writev" as const,
        fd: this.#fd,
        iov,
        offset: range.offset + progress,
        dsync: false,
      };
      // `chunk` stays referenced by this closure until the write completes.
      this.#io.submit(op, (result) => {
        if (result < 0) return done(-result);
        if (result === 0 || chunk.length === 0) return done(EIO);
        progress += result;
        if (progress < range.length) step();
        else done(0);
      });
    };
    step();
  }

  /** UNMAP (SBC-4 §5.30): punch a hole for each block descriptor, in order. */
  #unmap(parameterListLength: number, buffers: RequestBuffers, done: OutcomeDone): void {
    if (parameterListLength === 0) return done(noData(buffers));
    if (buffers.dataInLength > 0 || parameterListLength > buffers.dataOutLength) {
      return done(OVERRUN);
    }
    if (this.disk.readOnly) return done(checkCondition(Senses.WRITE_PROTECTED));
    if (parameterListLength < 8) return done(checkCondition(Senses.PARAMETER_LIST_LENGTH_ERROR));
    const list = readSlices(buffers.dataOut, { length: parameterListLength });
    const view = new DataView(list.buffer, list.byteOffset, list.byteLength);
    const descriptorBytes = Math.min(view.getUint16(2), list.length - 8);
    const count = Math.floor(descriptorBytes / 16);
    if (count > MAX_UNMAP_DESCRIPTORS) return done(checkCondition(invalidParameter(2)));
    const ranges: { offset: number; length: number }[] = [];
    for (let i = 0; i < count; i++) {
      const at = 8 + 16 * i;
      const high = view.getUint32(at);
      const lba = high >= 0x200000
        ? Number.MAX_SAFE_INTEGER
        : high * 0x1_0000_0000 + view.getUint32(at + 4);
      const blocks = view.getUint32(at + 8);
      if (this.#outOfRange(lba, blocks)) return done(checkCondition(Senses.LBA_OUT_OF_RANGE));
      if (blocks > maxUnmapBlocks(this.disk.blockSize)) {
        return done(checkCondition(invalidParameter(at + 8)));
      }
      if (blocks > 0) {
        ranges.push({ offset: lba * this.disk.blockSize, length: blocks * this.disk.blockSize });
      }
    }
    const finish = this.#durable((errno) => {
      done(errno === 0 ? good({ dataOut: parameterListLength }) : this.#ioError("unmap", errno));
    });
    const next = (index: number): void => {
      if (index === ranges.length) return finish(0);
      this.#punchHole(ranges[index], (errno) => {
        if (errno !== 0) return done(this.#ioError("unmap", errno));
        next(index + 1);
      });
    };
    next(0);
  }
}

/** GOOD for a command without data: any buffers are untouched. */
function noData(_buffers: RequestBuffers): Outcome {
  return good();
}

function invalidFieldOutcome(byte: number): Outcome {
  return checkCondition(invalidField(byte));
}

function answer(
  data: Uint8Array | Sense,
  allocationLength: number,
  buffers: RequestBuffers,
): Outcome {
  return data instanceof Uint8Array
    ? dataIn(data, allocationLength, buffers)
    : checkCondition(data);
}
