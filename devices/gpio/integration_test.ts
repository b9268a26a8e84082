// The real vhost-device-gpio process driven by the TypeScript vhost-user
// front-end (tests/frontend): real socket, memfd guest RAM and eventfds; the
// simulated chip's inputs driven through its control socket.
import assert from "node:assert/strict";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import { VHOST_USER_F_PROTOCOL_FEATURES } from "../../core/protocol/constants.ts";
import {
  VIRTIO_GPIO_F_IRQ as F_IRQ,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH as EDGE_BOTH,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING as EDGE_FALLING,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING as EDGE_RISING,
  VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH as LEVEL_HIGH,
  VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW as LEVEL_LOW,
  VIRTIO_GPIO_IRQ_TYPE_NONE as IRQ_NONE,
  VIRTIO_GPIO_MSG_GET_DIRECTION as GET_DIRECTION,
  VIRTIO_GPIO_MSG_GET_LINE_NAMES as GET_LINE_NAMES,
  VIRTIO_GPIO_MSG_GET_VALUE as GET_VALUE,
  VIRTIO_GPIO_MSG_SET_DIRECTION as SET_DIRECTION,
  VIRTIO_GPIO_MSG_SET_IRQ_TYPE as SET_IRQ_TYPE,
  VIRTIO_GPIO_MSG_SET_VALUE as SET_VALUE,
} from "./protocol.ts";
import {
  encodeRequest,
  GPIO_DRIVER_FEATURES,
  GpioDriver,
  SimControl,
  startGpioDaemon,
} from "./testing.ts";

const FEATURES = GPIO_DRIVER_FEATURES;
const OK = 0;
const ERR = 1;
const IN = 2;
const OUT = 1;
const NONE = 0;
const VALID = 1;
const INVALID = 0;

const request = encodeRequest;
const session = GpioDriver.connect;

Deno.test("gpio daemon: negotiation, config space and every request on a simulated chip", async () => {
  await using daemon = await startGpioDaemon("s8");
  await using control = await SimControl.connect(daemon.controlPath);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    assert.equal(s.init.features, FEATURES | bit(VHOST_USER_F_PROTOCOL_FEATURES));
    assert.equal(
      s.init.protocolFeatures,
      bit(P.MQ) | bit(P.CONFIG) | bit(P.REPLY_ACK) | bit(P.CONFIGURE_MEM_SLOTS),
    );
    assert.equal(s.init.queueNum, 2);
    const names = "line0\0line1\0line2\0line3\0line4\0line5\0line6\0line7\0";
    const config = s.frontend.getConfig(0, 8);
    const view = new DataView(config.buffer, config.byteOffset, 8);
    assert.equal(view.getUint16(0, true), 8, "ngpio");
    assert.equal(view.getUint16(2, true), 0, "padding");
    assert.equal(view.getUint32(4, true), names.length, "gpio_names_size");

    // §5.17.6.1: status, then gpio_names_size bytes of names.
    const got = s.call({ readable: [request(GET_LINE_NAMES, 0)], writable: [1 + names.length] });
    assert.equal(got.length, 1 + names.length);
    assert.equal(got.data[0], OK);
    assert.equal(new TextDecoder().decode(got.data.subarray(1)), names);

    assert.deepEqual(s.ask(GET_DIRECTION, 0), [OK, NONE]);
    // Linux's direction_output: SET_VALUE first, then SET_DIRECTION (§5.17.6.5).
    assert.deepEqual(s.ask(SET_VALUE, 1, 1), [OK, 0]);
    assert.deepEqual(s.ask(SET_DIRECTION, 1, OUT), [OK, 0]);
    assert.deepEqual(await control.get(0, 1), { value: 1, direction: "out", edges: "none" });
    assert.deepEqual(s.ask(GET_DIRECTION, 1), [OK, OUT]);
    assert.deepEqual(s.ask(GET_VALUE, 1), [OK, 1]);
    assert.deepEqual(s.ask(SET_VALUE, 1, 0), [OK, 0]);
    assert.equal((await control.get(0, 1)).value, 0);
    // The outside world cannot override an output.
    await control.set(0, 1, 1);
    assert.deepEqual(s.ask(GET_VALUE, 1), [OK, 0]);

    // An input follows the outside level.
    assert.deepEqual(s.ask(SET_DIRECTION, 2, IN), [OK, 0]);
    assert.deepEqual(s.ask(GET_VALUE, 2), [OK, 0]);
    await control.set(0, 2, 1);
    assert.deepEqual(s.ask(GET_VALUE, 2), [OK, 1]);
    assert.deepEqual(s.ask(GET_DIRECTION, 2), [OK, IN]);

    // NONE releases the line and forgets its state.
    assert.deepEqual(s.ask(SET_DIRECTION, 1, NONE), [OK, 0]);
    assert.deepEqual(s.ask(GET_DIRECTION, 1), [OK, NONE]);
    assert.equal((await control.get(0, 1)).direction, "none");

    // A request split over two readable descriptors, and one through an indirect table.
    let used = s.call({
      readable: [request(GET_VALUE, 2).subarray(0, 3), request(GET_VALUE, 2).subarray(3)],
      writable: [1, 1],
    });
    assert.deepEqual([used.length, ...used.data], [2, OK, 1]);
    used = s.call({ readable: [request(GET_DIRECTION, 2)], writable: [2], indirect: true });
    assert.deepEqual([used.length, ...used.data], [2, OK, IN]);
  } finally {
    s.close();
  }
  await daemon.waitForLog("waiting for a front-end");
});

Deno.test("gpio daemon: hostile requests get ERR (or INVALID) and a log line; the daemon keeps serving", async () => {
  await using daemon = await startGpioDaemon("s4");
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    const err = [ERR, 0];
    assert.deepEqual(s.ask(7, 0), err, "unknown type");
    assert.deepEqual(s.ask(0, 0), err, "type 0");
    assert.deepEqual(s.ask(GET_VALUE, 4), err, "line past ngpio");
    assert.deepEqual(s.ask(GET_DIRECTION, 0xffff), err, "line 65535");
    assert.deepEqual(s.ask(SET_VALUE, 0, 2), err, "value above 1");
    assert.deepEqual(s.ask(SET_VALUE, 0, 0xffff_ffff), err, "value 2^32-1");
    assert.deepEqual(s.ask(SET_DIRECTION, 0, 3), err, "unknown direction");
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 0, 5), err, "irq types are not a bit mask");
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 0, 0x10), err, "unknown irq type");
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 0, 0x0c), err, "both levels");

    // Wrong lengths.
    let used = s.call({ readable: [request(GET_VALUE, 0).subarray(0, 7)], writable: [2] });
    assert.deepEqual([used.length, ...used.data], [2, ERR, 0], "7-byte request");
    used = s.call({ readable: [new Uint8Array(9)], writable: [2] });
    assert.deepEqual([used.length, ...used.data], [2, ERR, 0], "9-byte request");
    used = s.call({ readable: [request(GET_VALUE, 0)], writable: [1] });
    assert.deepEqual([used.length, used.data[0]], [1, ERR], "1-byte response buffer");
    used = s.call({ readable: [request(GET_VALUE, 0)], writable: [] });
    assert.equal(used.length, 0, "no response buffer: nothing written");
    used = s.call({ readable: [request(GET_LINE_NAMES, 0)], writable: [10] });
    assert.deepEqual([used.length, ...used.data], [2, ERR, 0], "names buffer too small");

    // An output gets no interrupt; a second type needs NONE between.
    assert.deepEqual(s.ask(SET_DIRECTION, 1, OUT), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 1, EDGE_RISING), err, "irq on an output");
    assert.deepEqual(s.ask(SET_DIRECTION, 2, IN), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 2, EDGE_RISING), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 2, EDGE_RISING), [OK, 0], "the same type again");
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 2, EDGE_FALLING), err, "a change not through NONE");
    assert.deepEqual(s.ask(SET_DIRECTION, 2, OUT), err, "an interrupt line made an output");
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 2, IRQ_NONE), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 2, EDGE_FALLING), [OK, 0]);

    // eventq: bad line, bad length, no status byte, a second buffer for a line.
    s.arm(99);
    assert.deepEqual(s.events(1), [[99, INVALID]]);
    s.armChain({ readable: [Uint8Array.of(1, 0, 0)], writable: [1] }, 1000);
    assert.deepEqual(s.events(1), [[1000, INVALID]], "3-byte irq request");
    s.armChain({ readable: [Uint8Array.of(1, 0)], writable: [] }, 1001);
    const [empty] = s.eventsRaw(1);
    assert.equal(empty.length, 0, "no status byte: nothing written");
    s.arm(2);
    s.armChain({ readable: [Uint8Array.of(2, 0)], writable: [1] }, 2002);
    assert.deepEqual(s.events(1), [[2002, INVALID]], "the second buffer for line 2 comes back");
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 2, IRQ_NONE), [OK, 0]);
    assert.deepEqual(s.events(1), [[2, INVALID]], "disabling returns the held buffer");

    await daemon.waitForLog("refused", { count: 10 });
    assert.ok(daemon.running);
    assert.deepEqual(s.ask(GET_DIRECTION, 2), [OK, IN], "still serving");
  } finally {
    s.close();
  }

  // Without VIRTIO_GPIO_F_IRQ negotiated, SET_IRQ_TYPE is refused (§5.17.6.6).
  await daemon.waitForLog("waiting for a front-end");
  const plain = await session(`${daemon.socketPrefix}0`, { features: FEATURES & ~bit(F_IRQ) });
  try {
    assert.deepEqual(plain.ask(SET_DIRECTION, 0, IN), [OK, 0]);
    assert.deepEqual(plain.ask(SET_IRQ_TYPE, 0, EDGE_RISING), [ERR, 0]);
  } finally {
    plain.close();
  }
  await daemon.waitForLog("without VIRTIO_GPIO_F_IRQ");
});

Deno.test("gpio daemon: edge interrupts are latched while masked and delivered in the order they happen", async () => {
  await using daemon = await startGpioDaemon("s8");
  await using control = await SimControl.connect(daemon.controlPath);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    // Unmasked before enabled: returned at once (§5.17.6.6).
    s.arm(3);
    assert.deepEqual(s.events(1), [[3, INVALID]]);

    assert.deepEqual(s.ask(SET_DIRECTION, 3, IN), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 3, EDGE_RISING), [OK, 0]);
    assert.equal((await control.get(0, 3)).edges, "rising");
    s.arm(3);
    await control.set(0, 3, 1);
    assert.deepEqual(s.events(1), [[3, VALID]]);

    // Masked now: a falling edge is not wanted, a rising one is latched.
    await control.set(0, 3, 0);
    await control.set(0, 3, 1);
    s.arm(3);
    assert.deepEqual(s.events(1), [[3, VALID]], "the latched edge fires on unmask");

    // Nothing latched now: the buffer waits. Line 4 fires first, proving line 3 held.
    assert.deepEqual(s.ask(SET_DIRECTION, 4, IN), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 4, EDGE_FALLING), [OK, 0]);
    s.arm(3);
    s.arm(4);
    await control.set(0, 4, 1); // rising: not wanted on line 4
    await control.set(0, 4, 0);
    assert.deepEqual(s.events(1), [[4, VALID]]);

    // Ordering: buffers come back in the order the lines fire, not the order queued.
    for (const line of [5, 6, 7]) {
      assert.deepEqual(s.ask(SET_DIRECTION, line, IN), [OK, 0]);
      assert.deepEqual(s.ask(SET_IRQ_TYPE, line, EDGE_BOTH), [OK, 0]);
      s.arm(line);
    }
    assert.deepEqual(s.ask(GET_DIRECTION, 7), [OK, IN]); // the buffers are taken
    await control.send("set 0 7 1", "set 0 5 1", "set 0 6 1");
    assert.deepEqual(s.events(3), [[7, VALID], [5, VALID], [6, VALID]]);
    // EDGE_BOTH: a falling edge too.
    s.arm(6);
    await control.set(0, 6, 0);
    assert.deepEqual(s.events(1), [[6, VALID]]);

    // An unpaced burst: 1000 edges in one write, faster than any driver unmasks. Edges
    // coalesce into the latch (§5.17.7), one interrupt per unmask; nothing wedges.
    s.arm(6);
    // A request after the kick: once answered, the daemon has taken the eventq buffer too.
    assert.deepEqual(s.ask(GET_DIRECTION, 6), [OK, IN]);
    await control.send(...Array.from({ length: 1000 }, (_, i) => `set 0 6 ${(i + 1) % 2}`));
    assert.deepEqual(s.events(1), [[6, VALID]]);
    s.arm(6);
    assert.deepEqual(s.events(1), [[6, VALID]], "the edges after the first were latched");
    s.arm(6);
    await control.set(0, 6, 1);
    assert.deepEqual(s.events(1), [[6, VALID]], "and the next edge is delivered");
    await control.set(0, 6, 0);
    s.arm(6);
    assert.deepEqual(s.events(1), [[6, VALID]]);

    // Disabling discards the latch and returns the held buffer.
    await control.set(0, 5, 0); // latched on the masked line 5
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 5, IRQ_NONE), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 5, EDGE_BOTH), [OK, 0]);
    s.arm(5);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 3, IRQ_NONE), [OK, 0]);
    assert.deepEqual(s.events(1), [[3, INVALID]], "line 3's held buffer, not a stale line-5 edge");
    // SET_DIRECTION NONE also returns a held buffer (all state discarded).
    assert.deepEqual(s.ask(SET_DIRECTION, 5, NONE), [OK, 0]);
    assert.deepEqual(s.events(1), [[5, INVALID]]);
  } finally {
    s.close();
  }
});

Deno.test("gpio daemon: level interrupts fire while asserted, re-fire on unmask, stop when released", async () => {
  await using daemon = await startGpioDaemon("s4");
  await using control = await SimControl.connect(daemon.controlPath);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    assert.deepEqual(s.ask(SET_DIRECTION, 0, IN), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 0, LEVEL_HIGH), [OK, 0]);
    assert.deepEqual(s.ask(SET_DIRECTION, 1, IN), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 1, EDGE_RISING), [OK, 0]);
    s.arm(0);
    await control.set(0, 0, 1);
    assert.deepEqual(s.events(1), [[0, VALID]], "fires when asserted");
    for (let i = 0; i < 5; i++) {
      s.arm(0);
      assert.deepEqual(s.events(1), [[0, VALID]], "re-fires while still asserted");
    }
    await control.set(0, 0, 0);
    s.arm(0);
    s.arm(1);
    await control.set(0, 1, 1);
    assert.deepEqual(s.events(1), [[1, VALID]], "released: line 0 stays quiet");
    await control.set(0, 0, 1);
    assert.deepEqual(s.events(1), [[0, VALID]], "asserted again");

    // Not latched while masked: high then low before the unmask, nothing fires.
    await control.set(0, 0, 0);
    await control.set(0, 0, 1);
    await control.set(0, 0, 0);
    s.arm(0);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 0, IRQ_NONE), [OK, 0]);
    assert.deepEqual(s.events(1), [[0, INVALID]]);

    // LEVEL_LOW: a line already low fires as soon as it is enabled and unmasked.
    assert.deepEqual(s.ask(SET_DIRECTION, 2, IN), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 2, LEVEL_LOW), [OK, 0]);
    s.arm(2);
    assert.deepEqual(s.events(1), [[2, VALID]]);
    await control.set(0, 2, 1);
    s.arm(2);
    await control.set(0, 2, 0);
    assert.deepEqual(s.events(1), [[2, VALID]], "the falling edge asserts LEVEL_LOW");
  } finally {
    s.close();
  }
});

Deno.test("gpio daemon: reconnects find lines released; the fd count stays the same", async () => {
  await using daemon = await startGpioDaemon("s4:s2");
  await using control = await SimControl.connect(daemon.controlPath);
  const socket = `${daemon.socketPrefix}1`;
  const round = async (n: number): Promise<void> => {
    const s = await session(socket);
    try {
      const config = s.frontend.getConfig(0, 2);
      assert.equal(config[0], 2, "socket 1 serves the 2-line chip");
      assert.deepEqual(s.ask(GET_DIRECTION, 0), [OK, NONE], "released by the last connection");
      assert.deepEqual(s.ask(SET_DIRECTION, 0, OUT), [OK, 0]);
      assert.deepEqual(s.ask(SET_DIRECTION, 1, IN), [OK, 0]);
      assert.deepEqual(s.ask(SET_IRQ_TYPE, 1, EDGE_BOTH), [OK, 0]);
      s.arm(1);
      await control.send(`set 1 1 ${n % 2}`);
      assert.deepEqual(s.events(1), [[1, VALID]]);
      s.arm(1); // left held when the front-end goes
    } finally {
      s.close();
    }
    await daemon.waitForLog("waiting for a front-end", { count: n });
    assert.equal((await control.get(1, 0)).direction, "none");
  };
  await round(1);
  const fds = daemon.fdCount();
  for (let n = 2; n <= 5; n++) await round(n);
  assert.equal(daemon.fdCount(), fds, "the daemon's fd count grew across connections");
  assert.ok(daemon.running);
});

Deno.test("gpio daemon: held eventq buffers survive a VM pause and a live memory-table update; a reset driver's fresh rings never get them and find the lines reset", async () => {
  await using daemon = await startGpioDaemon("s4");
  await using control = await SimControl.connect(daemon.controlPath);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    for (const line of [0, 1]) {
      assert.deepEqual(s.ask(SET_DIRECTION, line, IN), [OK, 0]);
      assert.deepEqual(s.ask(SET_IRQ_TYPE, line, EDGE_BOTH), [OK, 0]);
    }
    s.arm(0);
    s.arm(1);
    assert.deepEqual(s.ask(GET_DIRECTION, 0), [OK, IN]); // the buffers are taken

    // stop/cont: the rings stop (GET_VRING_BASE) and start again at the same place.
    s.stopRings();
    s.startRings();
    await control.set(0, 0, 1);
    assert.deepEqual(s.events(1), [[0, VALID]], "line 0's buffer, held across the pause");
    await daemon.waitForLog("eventq resumed: 2 held buffer(s) kept");
    // A new memory table while the rings run: the core rebuilds them.
    s.resendMemoryTable();
    await control.set(0, 1, 1);
    assert.deepEqual(s.events(1), [[1, VALID]], "line 1's buffer, held across the rebuild");
    // An edge while paused is latched and delivered on resumption.
    s.arm(0);
    assert.deepEqual(s.ask(GET_DIRECTION, 0), [OK, IN]);
    s.stopRings();
    await control.set(0, 0, 0);
    s.startRings();
    assert.deepEqual(s.events(1), [[0, VALID]], "the edge from the pause");

    // A driver reset: fresh rings. The held buffer must not come back on them
    // (its head would not be in flight: takeUsed would throw), and the lines are reset.
    s.arm(1);
    assert.deepEqual(s.ask(GET_DIRECTION, 1), [OK, IN]);
    s.resetRings();
    await daemon.waitForLog("eventq set up afresh");
    assert.deepEqual(s.ask(GET_DIRECTION, 1), [OK, NONE], "a reset device has released its lines");
    assert.deepEqual(s.ask(SET_DIRECTION, 1, IN), [OK, 0]);
    assert.deepEqual(s.ask(SET_IRQ_TYPE, 1, EDGE_RISING), [OK, 0], "no stale EDGE_BOTH to clear");
    s.arm(1);
    await control.send("set 0 1 0", "set 0 1 1");
    assert.deepEqual(s.events(1), [[1, VALID]], "a new buffer on the fresh ring");
  } finally {
    s.close();
  }
});
