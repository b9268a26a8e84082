import assert from "node:assert/strict";
import {
  armTimerFd,
  close,
  createEventFd,
  createTimerFd,
  drainEventFd,
  Epoll,
  EPOLLIN,
  signalEventFd,
} from "./mod.ts";

Deno.test("epoll reports the token of a signalled eventfd", () => {
  const epoll = new Epoll();
  const a = createEventFd();
  const b = createEventFd();
  try {
    epoll.add(a, { events: EPOLLIN, token: 7 });
    epoll.add(b, { events: EPOLLIN, token: 9 });
    assert.equal(epoll.wait(0), 0);
    signalEventFd(b);
    assert.equal(epoll.wait(100), 1);
    assert.equal(epoll.eventToken(0), 9);
    assert.equal(epoll.eventFlags(0) & EPOLLIN, EPOLLIN);
    assert.equal(drainEventFd(b), 1);
    assert.equal(drainEventFd(b), 0);
    epoll.modify(a, { events: EPOLLIN, token: 3 });
    signalEventFd(a);
    assert.equal(epoll.wait(100), 1);
    assert.equal(epoll.eventToken(0), 3);
    epoll.remove(a);
    assert.equal(epoll.wait(0), 0);
  } finally {
    close(a);
    close(b);
    epoll.close();
  }
});

Deno.test("a timerfd fires once after its delay", () => {
  const epoll = new Epoll();
  const timer = createTimerFd();
  try {
    epoll.add(timer, { events: EPOLLIN, token: 1 });
    armTimerFd(timer, 50);
    assert.equal(epoll.wait(0), 0);
    assert.equal(epoll.wait(1000), 1);
    assert.equal(drainEventFd(timer), 1);
    armTimerFd(timer, 0);
    assert.equal(epoll.wait(20), 0);
  } finally {
    close(timer);
    epoll.close();
  }
});

Deno.test("epoll_ctl on a bad fd names the call", () => {
  const epoll = new Epoll();
  assert.throws(
    () => epoll.add(99999, { events: EPOLLIN, token: 1 }),
    /epoll_ctl\(op 1, fd 99999\) failed: EBADF/,
  );
  epoll.close();
});
