// vhost-device-i2c against a real kernel adapter: a guest loads i2c-stub and
// runs the daemon and the TypeScript front-end itself (deno in the guest),
// tests/e2e/i2c_stub_guest.ts. Needs root (QEMU, the guest kit).
// Run: deno test --allow-all tests/e2e/i2c_stub_test.ts
import { assertGuestSucceeded, bootGuest, consoleTail, ensureGuestKit } from "./guest.ts";

Deno.test("i2c e2e: the daemon on i2c-stub through i2c-dev, inside a guest", async () => {
  const kit = await ensureGuestKit();
  const stub = `${kit.modulesDir}/kernel/drivers/i2c/i2c-stub.ko.xz`;
  const result = await bootGuest({
    deno: true,
    // A host this loaded can make the kernel's IO-APIC timer check fail under TCG (a panic).
    // Deno compiling the daemon and the tests under TCG takes most of the run.
    timeoutMs: 420_000,
    modules: ["i2c_dev"],
    tools: [stub, "i2cget"],
    script: `
      xz -dc ${stub} > /tmp/i2c-stub.ko || exit 1
      cd /project || exit 1
      I2C_STUB_KO=/tmp/i2c-stub.ko deno test --allow-all --no-check tests/e2e/i2c_stub_guest.ts > /tmp/out 2>&1
      rc=$?
      tail -n 40 /tmp/out
      echo "@@RESULT summary $(grep -E '^(ok|FAILED) \\|' /tmp/out)"
      exit $rc
    `,
  });
  assertGuestSucceeded(result);
  if (!/^ok \| 2 passed \| 0 failed/.test(result.results.summary ?? "")) {
    throw new Error(
      `deno test in the guest: ${result.results.summary}\n${consoleTail(result.console, 60)}`,
    );
  }
});
