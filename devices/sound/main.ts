/**
 * `vhost-device-sound`: a drop-in for rust-vmm's binary of that name.
 *
 * ```sh
 * deno run --allow-all devices/sound/main.ts --socket /run/vhost/snd.sock --backend pipewire
 * ```
 *
 * @module
 */

import { type CommandSpec, loggerFor, runMain } from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import { AlsaBackend } from "./alsa_backend.ts";
import type { AudioBackend } from "./backend.ts";
import { SOUND_COMMAND, type SoundConfig, soundConfig } from "./config.ts";
import { SoundDevice } from "./device.ts";
import { FileBackend } from "./file_backend.ts";
import { NullBackend } from "./null_backend.ts";
import { PipeWireBackend } from "./pipewire_backend.ts";

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = SOUND_COMMAND;

/** Opens the host audio system `config` names. Throws with a message naming the problem. */
export function openBackend(config: SoundConfig): AudioBackend {
  switch (config.backend) {
    case "null":
      return new NullBackend();
    case "file":
      return FileBackend.open({ output: config.output, input: config.input });
    case "alsa":
      return new AlsaBackend(config.device);
    case "pipewire":
      return new PipeWireBackend();
  }
}

if (import.meta.main) {
  await runMain(SOUND_COMMAND, async (options) => {
    const config = soundConfig(options);
    const log = loggerFor("vhost_device_sound", { flag: config.logLevel });
    // Opened before listening: a bad file or device fails the start, not the first guest.
    const backend = openBackend(config);
    try {
      const daemon = new Daemon({
        log,
        pollMicros: config.pollMicros,
        createDevice: () => new SoundDevice({ backend }),
      });
      daemon.listen(config.address);
      await daemon.run();
    } finally {
      backend.close();
    }
  });
}
