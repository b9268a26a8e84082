/**
 * `vhost-device-vsock`: virtio-vsock back-ends for one or several VMs, with
 * hybrid vsock over Unix sockets or forwarding to AF_VSOCK, as rust-vmm's
 * binary of the same name.
 *
 * @module
 */

import {
  type CommandSpec,
  LOG_OPTIONS,
  loggerFor,
  LOOP_OPTIONS,
  pollMicros,
  runMain,
} from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import { loadYamlParser, vmConfigsFrom, VSOCK_OPTIONS } from "./config.ts";
import { CidRegistry } from "./registry.ts";
import { createBackend, VsockVm } from "./vm.ts";

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = {
  name: "vhost-device-vsock",
  about: "A virtio-vsock device backend (vhost-user), with hybrid vsock over Unix sockets",
  backendType: "vsock",
  options: [...VSOCK_OPTIONS, ...LOOP_OPTIONS, ...LOG_OPTIONS],
};

if (import.meta.main) {
  await runMain(COMMAND, async (options) => {
    const log = loggerFor("vhost_device_vsock", {
      flag: options["log-level"] as string | undefined,
    });
    if (options.config !== undefined) await loadYamlParser();
    const configs = vmConfigsFrom(options);
    const registry = new CidRegistry();
    const vms: VsockVm[] = [];
    const daemon = new Daemon({
      log,
      pollMicros: pollMicros(options),
      createDevice: (index) => vms[index].createDevice(),
    });
    for (const config of configs) {
      const vmLog = configs.length > 1 ? log.child(`cid${config.guestCid}`) : log;
      const backend = await createBackend(config, { loop: daemon.loop, log: vmLog });
      vms.push(new VsockVm(config, { loop: daemon.loop, log: vmLog, registry, backend }));
    }
    try {
      for (const vm of vms) vm.start();
      for (const vm of vms) daemon.listen({ path: vm.config.socket });
      await daemon.run();
    } finally {
      for (const vm of vms) vm.close({ unwatch: false });
    }
  });
}
