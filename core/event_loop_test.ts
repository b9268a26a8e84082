import assert from "node:assert/strict";
import { close, createEventFd, drainEventFd, signalEventFd } from "../ffi/mod.ts";
import { EventLoop } from "./event_loop.ts";
import { Logger } from "./log.ts";

const quiet = (lines: string[] = []) =>
  new Logger("loop", { level: "error", sink: (l) => lines.push(l) });

Deno.test("the loop dispatches ready fds, survives a throwing handler, and stops", async () => {
  const lines: string[] = [];
  const loop = new EventLoop(quiet(lines));
  const a = createEventFd();
  const b = createEventFd();
  const seen: string[] = [];
  loop.watch(a, () => {
    drainEventFd(a);
    seen.push("a");
    throw new Error("boom");
  });
  loop.watch(b, () => {
    drainEventFd(b);
    seen.push("b");
    loop.stop();
  });
  signalEventFd(a);
  loop.setTimer(20, () => signalEventFd(b));
  await loop.run();
  assert.deepEqual(seen, ["a", "b"]);
  assert.match(lines[0], /handler for fd \d+ failed: Error: boom/);
  loop.unwatch(a);
  loop.unwatch(b);
  loop.close();
  close(a);
  close(b);
});

Deno.test("promises and Deno timers still run while the loop waits", async () => {
  const loop = new EventLoop(quiet());
  let resolved = false;
  void loop.track(new Promise((r) => setTimeout(r, 10))).then(() => {
    resolved = true;
    loop.stop();
  });
  await loop.run();
  assert.ok(resolved);
  loop.close();
});

Deno.test("a cancelled timer never fires", async () => {
  const loop = new EventLoop(quiet());
  let fired = false;
  loop.setTimer(5, () => fired = true).cancel();
  loop.setTimer(30, () => loop.stop());
  await loop.run();
  assert.ok(!fired);
  loop.close();
});

Deno.test("deferred work runs after the ready fds, and a busy source cannot starve the rest", async () => {
  const loop = new EventLoop(quiet());
  const other = createEventFd();
  const order: string[] = [];
  let passes = 0;
  // A source with endless work, done one pass at a time.
  const busy = () => {
    order.push("busy");
    if (++passes < 5) loop.defer(busy);
  };
  loop.watch(other, () => {
    drainEventFd(other);
    order.push("other");
  });
  loop.defer(busy);
  signalEventFd(other);
  loop.setTimer(30, () => loop.stop());
  await loop.run();
  assert.equal(passes, 5);
  assert.ok(
    order.indexOf("other") < order.lastIndexOf("busy"),
    `the fd was served between passes: ${order}`,
  );
  loop.unwatch(other);
  loop.close();
  close(other);
});

Deno.test("the poll window opens while work keeps coming and closes when the loop idles", async () => {
  const loop = new EventLoop(quiet(), { pollMicros: 200 });
  const fd = createEventFd();
  let kicks = 0;
  let busiest = 0;
  loop.watch(fd, () => {
    drainEventFd(fd);
    busiest = Math.max(busiest, loop.pollWindowMicros);
    // Work that comes back at once, as a guest asking again.
    if (++kicks < 50) signalEventFd(fd);
  });
  signalEventFd(fd);
  // Then only far-apart timers: each long sleep shrinks the window.
  let timers = 0;
  const tick = () => {
    if (loop.pollWindowMicros === 0 || ++timers > 20) loop.stop();
    else loop.setTimer(20, tick);
  };
  loop.setTimer(20, tick);
  await loop.run();
  assert.equal(kicks, 50);
  assert.ok(busiest > 0, "the window opened");
  assert.equal(loop.pollWindowMicros, 0, `closed after ${timers} idle periods`);
  loop.unwatch(fd);
  loop.close();
  close(fd);
});

Deno.test("pollers serve rings while the loop polls, and are armed before it sleeps", async () => {
  const loop = new EventLoop(quiet(), { pollMicros: 200 });
  const fd = createEventFd();
  const log: string[] = [];
  let kicks = 0;
  let served = 0;
  let pollsOutsidePolling = 0;
  // A ring in memory: the poller serves it; its kicks go through `fd`.
  let waiting = 0;
  loop.addPoller({
    poll: () => {
      // A ring served here may leave its kicks off: the loop polls or arms next.
      if (!loop.pollsNext) pollsOutsidePolling++;
      if (waiting === 0) return false;
      waiting--;
      served++;
      log.push("polled");
      return true;
    },
    arm: () => {
      log.push("armed");
      // Requests that came while kicks were off are served now, as a kick would.
      if (waiting === 0) return false;
      served += waiting;
      waiting = 0;
      return true;
    },
  });
  loop.watch(fd, () => {
    drainEventFd(fd);
    if (++kicks < 50) signalEventFd(fd);
    // Work that comes while polling: found in memory, not through the fd.
    else waiting = 5;
  });
  signalEventFd(fd);
  loop.setTimer(50, () => loop.stop());
  await loop.run();
  assert.equal(kicks, 50);
  assert.equal(served, 5, "every waiting request was served");
  assert.equal(pollsOutsidePolling, 0);
  assert.equal(loop.pollsNext, false, "outside handlers, rings arm for real");
  assert.ok(log.includes("polled"), "the window was open: the ring was polled");
  assert.equal(log.at(-1), "armed", "armed last, when the loop stopped");
  loop.unwatch(fd);
  loop.close();
  close(fd);
});
