/**
 * `vhost-device-rng`: a drop-in for rust-vmm's binary of that name.
 *
 * ```sh
 * deno run --allow-all devices/rng/main.ts -s /run/vhost/rng.sock -m 512 -p 1000
 * ```
 *
 * @module
 */

import { type CommandSpec, loggerFor, runMain } from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import { RNG_COMMAND, rngConfig } from "./config.ts";
import { RngDevice } from "./device.ts";
import { FileEntropySource } from "./entropy_source.ts";
import { RateLimiter } from "./rate_limiter.ts";

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = RNG_COMMAND;

if (import.meta.main) {
  await runMain(RNG_COMMAND, async (options) => {
    const config = rngConfig(options);
    const log = loggerFor("vhost_device_rng", { flag: config.logLevel });
    const limiters = config.addresses.map(() =>
      new RateLimiter({ periodMs: config.periodMs, maxBytes: config.maxBytesPerInstance })
    );
    const daemon = new Daemon({
      log,
      pollMicros: config.pollMicros,
      // Devices are made per connection, after the source below is open.
      createDevice: (index) => new RngDevice({ source, limiter: limiters[index] }),
    });
    // Opened before listening: a bad source fails the start, not the first guest.
    const source = FileEntropySource.open(config.source, { loop: daemon.loop });
    try {
      for (const address of config.addresses) daemon.listen(address);
      await daemon.run();
    } finally {
      source.close();
    }
  });
}
