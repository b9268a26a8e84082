import assert from "node:assert/strict";
import { HeapProbe } from "./heap_probe.ts";

Deno.test("heap probe: a forced collection frees garbage, live data stays", async () => {
  const port = HeapProbe.freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `--inspect=127.0.0.1:${port}`,
      "globalThis.kept = new Array(1e6).fill(1); setInterval(() => {}, 1000);",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const probe = await HeapProbe.connect(port);
    try {
      const live = await probe.liveBytes();
      // The kept array (8 MB of doubles, or 4 MB of small integers) is live.
      assert.ok(live > 4e6, `live ${live}`);
      assert.ok(Math.abs((await probe.liveBytes()) - live) < 1e6, "stable between collections");
    } finally {
      await probe.close();
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});
