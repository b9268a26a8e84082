// The daemons under bookworm's own QEMU 7.2, the older front-end we support
// (its message order differs from 10.0's: see the protocol reference, §4).
// Two boots against the same daemons: vhost-user-rng and vhost-user-vsock
// together, then again after QEMU exits. Needs root (QEMU, the guest kit).
import assert from "node:assert/strict";
import { startRngDaemon } from "../../devices/rng/testing.ts";
import { DaemonProcess, socketDir } from "../integration/daemon_process.ts";
import { assertGuestSucceeded, bootGuest, ensureGuestKit } from "./guest.ts";

const VSOCK = new URL("../../devices/vsock/main.ts", import.meta.url).pathname;

Deno.test("QEMU 7.2: rng and vsock serve a guest, twice, through the older message order", async () => {
  const kit = await ensureGuestKit();
  await using rng = await startRngDaemon([]);
  const dir = socketDir();
  await using vsock = await DaemonProcess.start(VSOCK, {
    args: ["--guest-cid", "3", "--socket", `${dir}/vhost.sock`, "--uds-path", `${dir}/vm.vsock`],
    waitFor: [`${dir}/vhost.sock`],
    env: { RUST_LOG: "info" },
    tempDir: dir,
  });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/vm.vsock_5000` });
  try {
    for (const boot of [1, 2]) {
      const received = (async () => {
        const conn = await listener.accept();
        const text = await new Response(conn.readable).text();
        return text;
      })();
      // Reported through the assertion below, not as a stray rejection.
      received.catch(() => {});
      const result = await bootGuest({
        qemu: kit.qemu72,
        modules: ["virtio_rng", "vmw_vsock_virtio_transport"],
        tools: ["socat"],
        qemuArgs: [
          "-chardev",
          `socket,id=rng0,path=${rng.socketPrefix}0`,
          "-device",
          "vhost-user-rng-pci,chardev=rng0",
          "-chardev",
          `socket,id=vsock0,path=${dir}/vhost.sock`,
          "-device",
          "vhost-user-vsock-pci,chardev=vsock0",
        ],
        script: `
          echo "@@RESULT rng_current $(cat /sys/class/misc/hw_random/rng_current)"
          echo "@@RESULT hwrng_bytes $(dd if=/dev/hwrng bs=64 count=64 2>/dev/null | wc -c)"
          echo "boot ${boot} under QEMU 7.2" | socat - VSOCK-CONNECT:2:5000
        `,
      });
      assertGuestSucceeded(result);
      assert.doesNotMatch(result.qemuStderr, /vhost|error/i, "QEMU complained");
      assert.match(result.results.rng_current, /^virtio_rng/);
      assert.equal(result.results.hwrng_bytes, "4096");
      assert.equal((await received).trim(), `boot ${boot} under QEMU 7.2`);
      await rng.waitForLog("waiting for a front-end", { count: boot });
    }
    assert.ok(rng.running && vsock.running, "both daemons outlived both guests");
  } finally {
    listener.close();
  }
});
