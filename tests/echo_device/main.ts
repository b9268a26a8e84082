/**
 * `vhost-device-echo`: the test device behind a vhost-user socket.
 *
 * @module
 */

import {
  listenAddresses,
  LOG_OPTIONS,
  loggerFor,
  LOOP_OPTIONS,
  parseInteger,
  pollMicros,
  runMain,
  SOCKET_OPTIONS,
  UsageError,
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
    {
      long: "wait-policy",
      kind: "value",
      valueName: "POLICY",
      defaultValue: "hybrid",
      help: "Event loop waits: hybrid (sync when busy) or async (always on a helper thread)",
    },
    ...LOOP_OPTIONS,
    ...LOG_OPTIONS,
  ],
} as const;

if (import.meta.main) {
  await runMain(SPEC, async (options) => {
    const log = loggerFor("vhost_device_echo", {
      flag: options["log-level"] as string | undefined,
    });
    const queues = parseInteger(options.queues as string, { option: "queues", min: 1, max: 8 });
    const waitPolicy = options["wait-policy"];
    if (waitPolicy !== "hybrid" && waitPolicy !== "async") {
      throw new UsageError(`invalid value '${waitPolicy}' for --wait-policy`);
    }
    const daemon = new Daemon({
      log,
      waitPolicy,
      pollMicros: pollMicros(options),
      createDevice: () => new EchoDevice(queues),
    });
    for (const address of listenAddresses(options, { indexed: false })) daemon.listen(address);
    await daemon.run();
  });
}
