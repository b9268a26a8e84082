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
import { close } from "../../ffi/mod.ts";
import { type BlockIo, SyncBlockIo } from "./block_io.ts";
import { SCSI_COMMAND, scsiConfig } from "./config.ts";
import { ScsiDevice } from "./device.ts";
import { type OpenImage, openImage } from "./image.ts";
import { LogicalUnit } from "./logical_unit.ts";
import { Target } from "./target.ts";
import { UringBlockIo } from "./uring_block_io.ts";

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
        createDevice: () => new ScsiDevice({ target, io, requestQueues: config.requestQueues }),
      });
      const io: BlockIo = config.io === "sync"
        ? new SyncBlockIo()
        : new UringBlockIo({ loop: daemon.loop, log });
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
