import assert from "node:assert/strict";
import { DeferredPass } from "./deferred_pass.ts";
import { EventLoop } from "./event_loop.ts";
import { Logger } from "./log.ts";

Deno.test("deferred pass: runs once after the handler that scheduled it, however often asked, then may be scheduled again", async () => {
  const loop = new EventLoop(new Logger("test", { level: "error", sink: () => {} }));
  const runs: boolean[] = [];
  const pass = new DeferredPass(() => {
    runs.push(pass.scheduled);
    if (runs.length === 2) loop.stop();
  });
  const fromHandler = (): void => {
    pass.schedule(loop);
    pass.schedule(loop);
    assert.equal(pass.scheduled, true);
  };
  loop.setTimer(1, () => {
    fromHandler();
    assert.equal(runs.length, 0, "not run inside the handler");
    loop.setTimer(5, fromHandler);
  });
  await loop.run();
  loop.close();
  assert.deepEqual(runs, [false, false], "two passes, each no longer scheduled while it runs");
});
