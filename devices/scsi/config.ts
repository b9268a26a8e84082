/**
 * The command line of `vhost-device-scsi`, shaped like rust-vmm's (clap)
 * and parsed into a {@link ScsiConfig}.
 *
 * @module
 */

import {
  type CommandSpec,
  listenAddresses,
  LOG_OPTIONS,
  logLevelOption,
  LOOP_OPTIONS,
  type ParsedOptions,
  pollMicros,
  UsageError,
} from "../../core/cli.ts";
import type { ListenAddress } from "../../core/daemon.ts";
import type { Level } from "../../core/log.ts";
import { MAX_COALESCE_MICROS, MAX_REQUEST_QUEUES } from "./device.ts";

/** Most images (LUNs), as upstream ("More than 256 LUNs aren't currently supported"). */
export const MAX_LUNS = 256;

/**
 * The default `--poll-us` cap, in µs: longer than the loop's 200, because
 * a TCG guest at depth 32 submits every few hundred µs, and while the
 * window stays open the core polls the request ring instead of taking kicks. Measured
 * with `bench:scsi` (fio 4k random reads, same run, medians of 5): 12615
 * against 10775 IOPS at depth 32 with 200, 15314 against 12980 in a second
 * run; depth 1 3054 against 2842. The window still adapts (0 when idle) and
 * polling stops when the CPU is contended.
 */
export const SCSI_POLL_MICROS = 1000;

/**
 * The default `--coalesce-us`: completion interrupts held while the guest
 * keeps submitting, until it has been quiet this long. Measured with
 * `bench:scsi` (fio 4k random reads in a TCG guest, same run, medians of 5):
 * at depth 32 16627 against 7613 IOPS without (guest interrupts per I/O
 * 0.061 against 0.716; qemu-storage-daemon 9546 IOPS and 0.548); at depth 1
 * 3341 against 3200 (a guest that waits for each request is not held).
 */
export const SCSI_COALESCE_MICROS = 100;

/** The I/O engines `--io` selects. */
export type IoEngine = "auto" | "io-uring" | "sync";

/** The option definitions: parser, `--help` and man page. */
export const SCSI_COMMAND: CommandSpec = {
  name: "vhost-device-scsi",
  about: "A virtio SCSI host (virtio-scsi) serving image files as LUNs over vhost-user",
  backendType: "scsi",
  positionals: {
    name: "IMAGES",
    help: "Raw image files, one LUN each on target 0 (LUN 0 first; at most 256)",
  },
  options: [
    {
      long: "socket-path",
      short: "s",
      kind: "value",
      valueName: "SOCKET_PATH",
      help: "vhost-user Unix socket path (used as given)",
    },
    {
      long: "socket-fd",
      kind: "value",
      valueName: "FD",
      help: "Serve an inherited listening socket (systemd socket activation) instead of a path",
    },
    {
      long: "read-only",
      short: "r",
      kind: "flag",
      help: "Serve the images read-only: opened O_RDONLY, writes fail with DATA PROTECT",
    },
    {
      long: "solid-state",
      kind: "flag",
      help: "Report the disks as non-rotating (VPD page 0xb1)",
    },
    {
      long: "block-size",
      kind: "value",
      valueName: "BYTES",
      defaultValue: "512",
      help: "Logical block size: 512 or 4096 (image sizes must be a multiple of it)",
    },
    {
      long: "num-queues",
      kind: "value",
      valueName: "N",
      defaultValue: String(MAX_REQUEST_QUEUES),
      help:
        `Request queues offered, 1..=${MAX_REQUEST_QUEUES} (QEMU's num_queues may use up to this many)`,
    },
    {
      long: "io",
      kind: "value",
      valueName: "ENGINE",
      defaultValue: "auto",
      help:
        "How the image files are read and written: auto (inline where nothing waits on a disk: images on tmpfs/ramfs, cached reads; io_uring for the rest), io-uring (everything), or sync (everything in the event loop)",
    },
    {
      long: "coalesce-us",
      kind: "value",
      valueName: "MICROS",
      defaultValue: String(SCSI_COALESCE_MICROS),
      help:
        `Completion coalescing: while the guest keeps submitting, hold the completion interrupt until it has been quiet this long (at most ${MAX_COALESCE_MICROS} µs in all; a guest waiting on each request is not held); 0 notifies at once`,
    },
    // A longer poll cap than the other daemons': see SCSI_POLL_MICROS.
    ...LOOP_OPTIONS.map((option) =>
      option.long === "poll-us" ? { ...option, defaultValue: String(SCSI_POLL_MICROS) } : option
    ),
    ...LOG_OPTIONS,
  ],
};

/** What the daemon runs. */
export interface ScsiConfig {
  /** The one socket (or inherited fd). */
  readonly address: ListenAddress;
  /** Image paths, LUN 0 first. */
  readonly images: readonly string[];
  /** `--read-only`. */
  readonly readOnly: boolean;
  /** `--solid-state`. */
  readonly solidState: boolean;
  /** `--block-size`. */
  readonly blockSize: 512 | 4096;
  /** `--num-queues`. */
  readonly requestQueues: number;
  /** `--io`. */
  readonly io: IoEngine;
  /** `--log-level`, if given. */
  readonly logLevel: Level | undefined;
  /** `--poll-us`. */
  readonly pollMicros: number;
  /** `--coalesce-us`. */
  readonly coalesceMicros: number;
}

/** Parses options into a config. Throws {@link UsageError} naming the problem. */
export function scsiConfig(parsed: ParsedOptions): ScsiConfig {
  const [address] = listenAddresses(parsed, { indexed: false });
  const images = (parsed.IMAGES ?? []) as string[];
  if (images.length === 0) throw new UsageError("no image given: pass at least one image path");
  if (images.length > MAX_LUNS) {
    throw new UsageError(`${images.length} images given: at most ${MAX_LUNS} LUNs are supported`);
  }
  if (images.some((i) => i === "")) throw new UsageError("an image path is empty");
  const blockSize = String(parsed["block-size"]);
  if (blockSize !== "512" && blockSize !== "4096") {
    throw new UsageError(`invalid value '${blockSize}' for --block-size: must be 512 or 4096`);
  }
  const queues = String(parsed["num-queues"]);
  const requestQueues = /^[0-9]+$/.test(queues) ? Number(queues) : NaN;
  if (!(requestQueues >= 1 && requestQueues <= MAX_REQUEST_QUEUES)) {
    throw new UsageError(
      `invalid value '${queues}' for --num-queues: must be 1..=${MAX_REQUEST_QUEUES}`,
    );
  }
  const io = String(parsed.io);
  if (io !== "auto" && io !== "io-uring" && io !== "sync") {
    throw new UsageError(`invalid value '${io}' for --io: must be auto, io-uring or sync`);
  }
  const coalesce = String(parsed["coalesce-us"]);
  const coalesceMicros = /^[0-9]+$/.test(coalesce) ? Number(coalesce) : NaN;
  if (!(coalesceMicros <= MAX_COALESCE_MICROS)) {
    throw new UsageError(
      `invalid value '${coalesce}' for --coalesce-us: must be 0..=${MAX_COALESCE_MICROS}`,
    );
  }
  const logLevel = logLevelOption(parsed);
  return {
    address,
    images,
    readOnly: parsed["read-only"] === true,
    solidState: parsed["solid-state"] === true,
    blockSize: Number(blockSize) as 512 | 4096,
    requestQueues,
    io,
    logLevel,
    pollMicros: pollMicros(parsed),
    coalesceMicros,
  };
}
