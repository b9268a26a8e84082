/**
 * `vhost-device-scsi`: a drop-in for rust-vmm's binary of that name.
 *
 * ```sh
 * deno run --allow-all devices/scsi/main.ts -s /run/vhost/scsi.sock disk0.img disk1.img
 * ```
 *
 * @module
 */

import { type CommandSpec, loggerFor, runMain } from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import type { EventLoop } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import { close } from "../../ffi/mod.ts";
import { AutoBlockIo, fileRoute } from "./auto_block_io.ts";
import { type BlockIo, SyncBlockIo } from "./block_io.ts";
import { type IoEngine, SCSI_COMMAND, scsiConfig } from "./config.ts";
import { ScsiDevice } from "./device.ts";
import { type OpenImage, openImage } from "./image.ts";
import { LogicalUnit } from "./logical_unit.ts";
import { Target } from "./target.ts";
import { UringBlockIo } from "./uring_block_io.ts";

/**
 * The engine `--io` asks for, serving the image `fds`. Without io_uring (an
 * old kernel, a seccomp profile that forbids it, `kernel.io_uring_disabled`),
 * the daemon still serves, with file I/O in the event loop, and says so.
 */
export function ioEngine(
  engine: IoEngine,
  fds: readonly number[],
  options: { loop: EventLoop; log: Logger },
): BlockIo {
  if (engine === "sync") return new SyncBlockIo();
  let ring: BlockIo;
  try {
    ring = new UringBlockIo(options);
  } catch (error) {
    options.log.warn(
      `io_uring is unavailable (${error instanceof Error ? error.message : error}); ` +
        "file I/O runs in the event loop instead (--io sync)",
    );
    return new SyncBlockIo();
  }
  if (engine === "io-uring") return ring;
  const routes = new Map(fds.map((fd) => [fd, fileRoute(fd)]));
  return new AutoBlockIo({ loop: options.loop, ring, routes });
}

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = SCSI_COMMAND;

if (import.meta.main) {
  await runMain(SCSI_COMMAND, async (options) => {
    const config = scsiConfig(options);
    const log = loggerFor("vhost_device_scsi", { flag: config.logLevel });
    // Opened before listening: a bad image fails the start, not the first guest.
    const images: OpenImage[] = [];
    try {
      for (const path of config.images) {
        images.push(openImage(path, { ...config }));
      }
      if (!config.readOnly) {
        log.warn("serving the images read-write (--read-only serves them read-only)");
      }
      const daemon = new Daemon({
        log,
        pollMicros: config.pollMicros,
        createDevice: () =>
          new ScsiDevice({
            target,
            io,
            requestQueues: config.requestQueues,
            coalesceMicros: config.coalesceMicros,
          }),
      });
      const io = ioEngine(config.io, images.map((i) => i.fd), { loop: daemon.loop, log });
      if (config.io === "auto") {
        config.images.forEach((path, lun) => {
          const memory = fileRoute(images[lun].fd) === "memory";
          log.info(
            `LUN ${lun} (${path}): ${
              memory
                ? "on a memory file system: I/O inline"
                : "cached reads inline, the rest on io_uring"
            }`,
          );
        });
      }
      const target = new Target(
        images.map((image) => new LogicalUnit(image.disk, { fd: image.fd, io, log })),
      );
      try {
        daemon.listen(config.address);
        await daemon.run();
      } finally {
        io.close();
      }
    } finally {
      for (const image of images) close(image.fd);
    }
  });
}
