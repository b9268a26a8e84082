/**
 * The core end to end through real processes: the TypeScript front-end
 * drives the echo device's daemon over a real socket, real memfd guest RAM
 * and real eventfds.
 */
import assert from "node:assert/strict";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import { BackendRequest, VHOST_USER_F_PROTOCOL_FEATURES } from "../../core/protocol/constants.ts";
import { FILL_BYTE } from "../echo_device/device.ts";
import { DriverMemory, DriverQueue, VhostUserFrontend } from "../../frontend/mod.ts";
import { DaemonProcess, socketDir } from "./daemon_process.ts";

const ECHO = new URL("../echo_device/main.ts", import.meta.url).pathname;
const FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) |
  bit(VIRTIO_RING_F_EVENT_IDX);
const encoder = new TextEncoder();

async function withEcho(
  fn: (daemon: DaemonProcess, path: string) => Promise<void>,
  args: string[] = [],
): Promise<void> {
  const dir = socketDir();
  const path = `${dir}/echo.sock`;
  const daemon = await DaemonProcess.start(ECHO, {
    args: ["--socket-path", path, "--log-level", "debug", ...args],
    waitFor: [path],
  });
  try {
    await fn(daemon, path);
  } catch (error) {
    console.error(`daemon log:\n${daemon.log}`);
    throw error;
  } finally {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** A started session: memory in two regions, one queue placed in the second. */
async function session(
  path: string,
  options: { eventIdx?: boolean; size?: number; memoryUpdate?: "table" } = {},
) {
  const frontend = await VhostUserFrontend.connect(path);
  const memory = new DriverMemory({ size: 4 << 20, split: { at: 2 << 20 } });
  const queue = new DriverQueue(memory, {
    size: options.size ?? 256,
    eventIdx: options.eventIdx ?? true,
    region: 1,
  });
  const init = frontend.init();
  const features = FEATURES & (options.eventIdx === false ? ~bit(VIRTIO_RING_F_EVENT_IDX) : ~0n);
  frontend.start({ memory, queues: [queue], features, memoryUpdate: options.memoryUpdate });
  return {
    frontend,
    memory,
    queue,
    init,
    close() {
      frontend.close();
      memory.close();
    },
  };
}

function roundTrip(
  s: Awaited<ReturnType<typeof session>>,
  chain: Parameters<DriverQueue["add"]>[0],
) {
  s.queue.add(chain);
  s.queue.publish();
  if (s.queue.needsKick()) s.frontend.kick(0);
  assert.ok(s.frontend.waitForCall(0, 5000), "the device answered");
  const used = s.queue.takeUsed();
  assert.equal(used.length, 1);
  return used[0];
}

Deno.test("echo: negotiation, echo through direct and indirect chains, stop and restart", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path);
    assert.equal(s.init.queueNum, 1);
    assert.equal(s.init.maxMemSlots, 509);
    assert.equal(s.init.features & FEATURES, FEATURES);
    assert.ok(s.init.protocolFeatures & bit(P.REPLY_ACK));
    const hello = roundTrip(s, {
      readable: [encoder.encode("hello, "), encoder.encode("world")],
      writable: [8, 8],
    });
    assert.equal(new TextDecoder().decode(hello.data), "hello, world");
    const indirect = roundTrip(s, {
      readable: [encoder.encode("abc")],
      writable: [3],
      indirect: true,
    });
    assert.equal(new TextDecoder().decode(indirect.data), "abc");
    const fill = roundTrip(s, { readable: [], writable: [64] });
    assert.equal(fill.length, 64);
    assert.ok(fill.data.every((b) => b === FILL_BYTE));
    const [base] = s.frontend.stop();
    assert.equal(base, 3);
    s.frontend.start({ memory: s.memory, queues: [s.queue], features: FEATURES });
    assert.equal(roundTrip(s, { readable: [encoder.encode("again")], writable: [5] }).length, 5);
    s.close();
  });
});

Deno.test("echo: without EVENT_IDX, with SET_MEM_TABLE instead of ADD_MEM_REG", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path, { eventIdx: false, memoryUpdate: "table" });
    for (let i = 0; i < 100; i++) {
      assert.equal(roundTrip(s, { readable: [new Uint8Array([i])], writable: [1] }).data[0], i);
    }
    s.close();
  });
});

Deno.test("echo: 20,000 requests at depth 64 with EVENT_IDX never lose a wake-up", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path, { size: 128 });
    let sent = 0;
    let done = 0;
    const total = 20_000;
    while (done < total) {
      while (sent < total && s.queue.inFlight < 64) {
        s.queue.add({ readable: [new Uint8Array([sent & 0xff])], writable: [1] });
        sent++;
      }
      s.queue.publish();
      if (s.queue.needsKick()) s.frontend.kick(0);
      for (;;) {
        const used = s.queue.takeUsed();
        done += used.length;
        if (used.length > 0 || done === total) break;
        assert.ok(s.frontend.waitForCall(0, 5000), `stalled after ${done} of ${total}`);
      }
    }
    s.close();
  }, ["--log-level", "info"]);
});

Deno.test("echo: the daemon serves a new front-end after each hang-up, without leaking fds", async () => {
  await withEcho(async (daemon, path) => {
    const warm = await session(path);
    roundTrip(warm, { readable: [new Uint8Array([1])], writable: [1] });
    warm.close();
    await daemon.waitForLog("waiting for a front-end");
    const baseline = daemon.fds();
    for (let i = 0; i < 10; i++) {
      const s = await session(path);
      roundTrip(s, { readable: [new Uint8Array([i])], writable: [1] });
      s.close();
      await daemon.waitForLog("waiting for a front-end", { count: i + 2 });
    }
    await daemon.expectFds(baseline);
  }, ["--log-level", "info"]);
});

Deno.test("echo: a second front-end is refused while one is connected", async () => {
  await withEcho(async (daemon, path) => {
    const s = await session(path);
    const second = await VhostUserFrontend.connect(path, { timeoutMs: 500 });
    assert.ok(second.waitForHangUp(2000));
    second.close();
    await daemon.waitForLog("already connected; refusing another");
    roundTrip(s, { readable: [new Uint8Array([7])], writable: [1] });
    s.close();
  });
});

Deno.test("echo: config space reads, writes and the config-change message", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path);
    s.frontend.setBackendReqFd();
    roundTrip(s, { readable: [new Uint8Array([1])], writable: [1] });
    const config = new DataView(s.frontend.getConfig(0, 8).buffer);
    assert.equal(config.getUint32(0, true), 1);
    s.frontend.setConfig(4, new Uint8Array([1, 2, 3, 4]));
    const message = s.frontend.readBackendRequest(2000);
    assert.equal(message?.request, BackendRequest.CONFIG_CHANGE_MSG);
    assert.deepEqual([...s.frontend.getConfig(4, 4)], [1, 2, 3, 4]);
    assert.throws(() => s.frontend.setConfig(0, new Uint8Array(4)), /non-zero|ack/i);
    s.close();
  });
});

Deno.test("echo: status, RESET_DEVICE and a fresh start on the same connection", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path);
    assert.equal(s.frontend.getStatus() & 4, 4, "DRIVER_OK");
    s.frontend.stop();
    s.frontend.resetDevice();
    s.queue.reset();
    s.frontend.start({ memory: s.memory, queues: [s.queue], features: FEATURES });
    assert.equal(roundTrip(s, { readable: [new Uint8Array([9])], writable: [1] }).data[0], 9);
    s.close();
  });
});

Deno.test("echo: a ring served before SET_VRING_CALL brings its fd signals that fd on arrival", async () => {
  await withEcho(async (_daemon, path) => {
    const frontend = await VhostUserFrontend.connect(path);
    const memory = new DriverMemory({ size: 4 << 20 });
    const queue = new DriverQueue(memory, { size: 64, eventIdx: false });
    const init = frontend.init();
    // RESET_DEVICE drops the call fd init gave; the ring then starts without one.
    frontend.resetDevice();
    frontend.setFeatures(
      FEATURES & ~bit(VIRTIO_RING_F_EVENT_IDX) |
        (init.features & bit(VHOST_USER_F_PROTOCOL_FEATURES)),
    );
    frontend.setMemTable(memory.regions());
    frontend.setVringNum(0, queue.size);
    frontend.setVringBase(0, 0);
    frontend.setVringAddr(0, queue.addresses());
    frontend.setVringKick(0, frontend.kickFd(0));
    frontend.setVringEnable(0, true);
    queue.add({ readable: [new Uint8Array([7])], writable: [1] });
    queue.publish();
    frontend.kick(0);
    const deadline = performance.now() + 5000;
    while (queue.readUsedIdx() === 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.equal(queue.readUsedIdx(), 1, "served without a call fd");
    frontend.setVringCall(0, frontend.callFd(0));
    assert.ok(frontend.waitForCall(0, 5000), "the held call came with the fd");
    assert.equal(queue.takeUsed()[0].data[0], 7);
    frontend.close();
    memory.close();
  });
});

Deno.test("echo: SIGTERM stops the daemon cleanly and removes its socket", async () => {
  const dir = socketDir();
  const path = `${dir}/echo.sock`;
  const daemon = await DaemonProcess.start(ECHO, {
    args: ["-s", path, "--log-level", "info"],
    waitFor: [path],
  });
  const s = await session(path);
  const status = await daemon.stop("SIGTERM");
  assert.equal(status.code, 0);
  assert.throws(() => Deno.lstatSync(path));
  assert.match(daemon.log, /stopped after serving 1 connection/);
  s.close();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("echo: bad flags give one line and exit status 2", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ECHO, "--bogus"],
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  const text = new TextDecoder().decode(out.stderr).trim();
  assert.equal(text.split("\n").length, 1);
  assert.match(text, /vhost-device-echo: error: .*bogus/);
  const missing = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ECHO],
    stderr: "piped",
  }).output();
  assert.equal(missing.code, 2);
  assert.match(
    new TextDecoder().decode(missing.stderr),
    /--socket-path \(or --socket-fd\) is required/,
  );
});

Deno.test("echo: --socket-fd serves an inherited (blocking) listening socket, as systemd passes it", async () => {
  const dir = socketDir();
  const path = `${dir}/activated.sock`;
  // python3 stands in for systemd: bind, listen, and exec the daemon with the fd inherited.
  const launcher = [
    "import os, socket, sys",
    "s = socket.socket(socket.AF_UNIX)",
    "s.bind(sys.argv[1])",
    "s.listen(1)",
    "os.set_inheritable(s.fileno(), True)",
    "os.execv(sys.argv[2], [sys.argv[2], 'run', '-A', sys.argv[3], '--socket-fd', str(s.fileno()), '--log-level', 'info'])",
  ].join("\n");
  const child = new Deno.Command("python3", {
    args: ["-c", launcher, path, Deno.execPath(), ECHO],
    stderr: "piped",
  }).spawn();
  try {
    for (let i = 0; i < 2; i++) {
      const s = await session(path);
      assert.equal(roundTrip(s, { readable: [new Uint8Array([i])], writable: [1] }).data[0], i);
      s.close();
    }
  } finally {
    child.kill("SIGTERM");
    // A daemon stuck in a blocking accept would never see SIGTERM.
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    const status = await child.status;
    clearTimeout(killer);
    await child.stderr.cancel();
    assert.equal(status.code, 0);
    assert.ok(Deno.lstatSync(path).isSocket, "a socket the daemon did not create is left alone");
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("echo: with --poll-us the daemon serves, and SIGTERM still stops it", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path);
    for (let i = 0; i < 200; i++) {
      assert.equal(roundTrip(s, { readable: [new Uint8Array([i])], writable: [1] }).data[0], i);
    }
    s.close();
  }, ["--poll-us", "100"]);
});

Deno.test("echo: memory regions removed and added while the ring runs", async () => {
  await withEcho(async (daemon, path) => {
    const s = await session(path);
    const [first] = s.memory.regions();
    // The ring and its buffers live in region 1; region 0 can come and go.
    s.frontend.remMemReg(first.descriptor);
    assert.equal(roundTrip(s, { readable: [new Uint8Array([1])], writable: [1] }).data[0], 1);
    assert.throws(() => s.frontend.remMemReg(first.descriptor), "removing it twice fails");
    s.frontend.addMemReg(first);
    assert.equal(roundTrip(s, { readable: [new Uint8Array([2])], writable: [1] }).data[0], 2);
    await daemon.waitForLog("REM_MEM_REG refused: no region at 0x0");
    s.close();
  });
});

Deno.test("echo: SET_FEATURES on a live ring switches EVENT_IDX without setting the ring up again", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path, { eventIdx: false });
    assert.equal(roundTrip(s, { readable: [new Uint8Array([1])], writable: [1] }).data[0], 1);
    assert.equal(
      s.queue.readAvailEvent(),
      0,
      "without EVENT_IDX the device leaves avail_event alone",
    );
    s.frontend.setFeatures(FEATURES | bit(30));
    assert.equal(roundTrip(s, { readable: [new Uint8Array([2])], writable: [1] }).data[0], 2);
    // While its loop polls the ring, the device leaves kicks off; it
    // publishes avail_event before it sleeps.
    for (let i = 0; i < 400 && s.queue.readAvailEvent() !== 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(
      s.queue.readAvailEvent(),
      2,
      "with it, the device publishes its next available index",
    );
    s.close();
  });
});

Deno.test("echo: a full ring is served in passes (budget 256) without losing a chain", async () => {
  await withEcho(async (_daemon, path) => {
    const s = await session(path, { size: 1024 });
    for (let i = 0; i < 1000; i++) {
      s.queue.add({ readable: [], writable: [8] });
    }
    s.queue.publish();
    if (s.queue.needsKick()) s.frontend.kick(0);
    let done = 0;
    while (done < 1000) {
      const used = s.queue.takeUsed();
      done += used.length;
      if (used.length === 0) assert.ok(s.frontend.waitForCall(0, 3000), `stalled after ${done}`);
    }
    s.close();
  });
});
