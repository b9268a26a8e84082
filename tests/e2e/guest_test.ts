// Proves the guest rig with QEMU's own devices only, none of our backends.
// Run: deno test --allow-all tests/e2e/guest_test.ts
import {
  assertGuestSucceeded,
  bootGuest,
  consoleTail,
  type GuestResult,
  startGuest,
} from "./guest.ts";

function check(condition: boolean, message: string, result: GuestResult): void {
  if (!condition) {
    throw new Error(`${message}\nlast console lines:\n${consoleTail(result.console)}`);
  }
}

Deno.test("guest: QEMU's virtio-rng-pci feeds /dev/hwrng through virtio_rng", async () => {
  const result = await bootGuest({
    modules: ["virtio_rng"],
    qemuArgs: [
      "-object",
      "rng-random,id=r,filename=/dev/urandom",
      "-device",
      "virtio-rng-pci,rng=r",
    ],
    script: `
      echo "@@RESULT rng_current $(cat /sys/class/misc/hw_random/rng_current)"
      echo "@@RESULT bytes $(dd if=/dev/hwrng bs=64 count=16 2>/dev/null | wc -c)"
    `,
  });
  assertGuestSucceeded(result);
  check(
    result.results.rng_current?.includes("virtio_rng") ?? false,
    `rng_current is "${result.results.rng_current}", expected virtio_rng`,
    result,
  );
  check(
    result.results.bytes === "1024",
    `read ${result.results.bytes} bytes from /dev/hwrng, expected 1024`,
    result,
  );
});

Deno.test("guest: gpio-virtio and i2c-virtio drivers load", async () => {
  // Out-of-tree modules from the kit unless Debian's kernel has them.
  const result = await bootGuest({
    modules: ["gpio_virtio", "i2c_virtio"],
    script: `
      for d in gpio_virtio i2c_virtio; do
        [ -d /sys/bus/virtio/drivers/$d ] || { echo "no virtio driver $d"; exit 1; }
      done
    `,
  });
  assertGuestSucceeded(result);
});

Deno.test("guest: host tools are copied with their shared libraries", async () => {
  const result = await bootGuest({
    tools: ["socat", "sha256sum"],
    script: `
      version=$(socat -V | grep "socat version") || { socat -V; exit 1; }
      echo "@@RESULT socat $version"
      echo "@@RESULT sum $(printf abc | sha256sum | cut -d' ' -f1)"
    `,
  });
  assertGuestSucceeded(result);
  check(
    result.results.sum ===
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    `sha256sum printed "${result.results.sum}"`,
    result,
  );
});

Deno.test("guest: a test can kill QEMU mid-run; timeouts kill it too", async () => {
  await using guest = await startGuest({ script: "echo running; sleep 600" });
  await guest.waitFor("running");
  guest.kill("SIGKILL");
  const killed = await guest.result;
  check(
    killed.stopReason === "killed" && killed.exitCode === null &&
      killed.qemuStatus.signal === "SIGKILL",
    `after kill: stopReason=${killed.stopReason} exitCode=${killed.exitCode}` +
      ` signal=${killed.qemuStatus.signal}`,
    killed,
  );

  const timedOut = await bootGuest({ script: "sleep 600", timeoutMs: 1 });
  check(
    timedOut.stopReason === "timeout" && timedOut.exitCode === null,
    `after timeout: stopReason=${timedOut.stopReason} exitCode=${timedOut.exitCode}`,
    timedOut,
  );
});

Deno.test("guest: deno and the project run inside the guest (echo integration tests there)", async () => {
  // The rig for testing real host-side layers against the guest kernel's devices.
  const result = await bootGuest({
    deno: true,
    script: `
      cd /project || exit 1
      echo "@@RESULT version $(deno --version | head -n 1)"
      # An npm import (vsock's yaml) resolves from the copied cache.
      echo "@@RESULT vsock $(deno run --allow-all devices/vsock/main.ts --help | head -n 1)"
      # Two of the echo tests: the daemon and the front-end share the guest's kernel.
      deno test --allow-all --no-check --filter "/^echo: (negotiation|the daemon serves a new)/" \\
        tests/integration/echo_test.ts > /tmp/out 2>&1
      rc=$?
      tail -n 5 /tmp/out
      echo "@@RESULT summary $(grep -E '^(ok|FAILED) \\|' /tmp/out)"
      exit $rc
    `,
  });
  assertGuestSucceeded(result);
  check(
    result.results.vsock?.startsWith("A virtio-vsock device") ?? false,
    `vsock --help in the guest printed "${result.results.vsock}"`,
    result,
  );
  check(
    /^ok \| \d+ passed \| 0 failed/.test(result.results.summary ?? ""),
    `deno test in the guest: ${result.results.summary}`,
    result,
  );
});
