/**
 * `vhost-device-echo`: the test device behind a vhost-user socket.
 *
 * @module
 */

import {
  listenAddresses,
  LOG_OPTIONS,
  loggerFor,
  parseInteger,
  runMain,
  SOCKET_OPTIONS,
} from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import { EchoDevice } from "./device.ts";

const SPEC = {
  name: "vhost-device-echo",
  about: "A vhost-user test device that echoes readable buffers into writable ones",
  options: [
    ...SOCKET_OPTIONS,
    {
      long: "queues",
      kind: "value",
      valueName: "N",
      defaultValue: "1",
      help: "Number of request queues",
    },
    ...LOG_OPTIONS,
  ],
} as const;

if (import.meta.main) {
  await runMain(SPEC, async (options) => {
    const log = loggerFor("vhost_device_echo", {
      flag: options["log-level"] as string | undefined,
    });
    const queues = parseInteger(options.queues as string, { option: "queues", min: 1, max: 8 });
    const daemon = new Daemon({ log, createDevice: () => new EchoDevice(queues) });
    for (const address of listenAddresses(options, { indexed: false })) daemon.listen(address);
    await daemon.run();
  });
}
