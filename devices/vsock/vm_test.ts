import assert from "node:assert/strict";
import { EventLoop } from "../../core/event_loop.ts";
import { Logger } from "../../core/log.ts";
import { parseVmOption } from "./config.ts";
import { createBackend } from "./vm.ts";

Deno.test("vm: createBackend builds the host side the config names (AF_VSOCK code loaded on demand)", async () => {
  const log = new Logger("vm_test", { level: "off" });
  const loop = new EventLoop(log);
  try {
    const unix = await createBackend(parseVmOption("socket=/s,uds-path=/u"), { loop, log });
    assert.equal(unix.description, "unix:/u");
    const forward = await createBackend(
      parseVmOption("socket=/s,forward-cid=1,forward-listen=9000+9001"),
      { loop, log },
    );
    assert.equal(forward.description, "vsock: forward to CID 1, listen on 9000+9001");
  } finally {
    loop.close();
  }
});
