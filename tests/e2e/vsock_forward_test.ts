// vhost-device-vsock's AF_VSOCK forwarding, proven inside a guest: the host's
// AF_VSOCK belongs to this machine's hypervisor and must not be touched, but
// the guest kernel's vsock_loopback gives a private AF_VSOCK world. The daemon,
// the TypeScript front-end (the inner guest) and the AF_VSOCK programs all run
// there: see tests/e2e/in_guest/vsock_forward.ts.
// Run: deno test --allow-all tests/e2e/vsock_forward_test.ts (root: QEMU, guest kit)
import { assertGuestSucceeded, bootGuest, consoleTail } from "./guest.ts";

Deno.test("e2e vsock: --forward-cid 1 / --forward-listen inside a guest with vsock_loopback", async () => {
  const result = await bootGuest({
    deno: true,
    modules: ["vsock_loopback"],
    timeoutMs: 600_000,
    script: `
      cd /project || exit 1
      deno test --allow-all --no-check tests/e2e/in_guest/vsock_forward.ts 2>&1 | tee /tmp/out
      rc=$(grep -qE '^ok \|' /tmp/out && echo 0 || echo 1)
      echo "@@RESULT summary $(grep -E '^(ok|FAILED) \\|' /tmp/out)"
      exit $rc
    `,
  });
  try {
    assertGuestSucceeded(result);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${consoleTail(result.console, 80)}`);
  }
});
