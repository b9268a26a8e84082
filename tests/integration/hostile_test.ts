/**
 * The hostile-input suite: one echo daemon takes malformed messages, bad
 * descriptors, bad rings and broken connections, then still serves a
 * well-behaved front-end with no descriptor leaked.
 */
import assert from "node:assert/strict";
import {
  close,
  connectUnix,
  createEventFd,
  createMemfd,
  sendWithFds,
  shutdownSocket,
} from "../../ffi/mod.ts";
import {
  bit,
  FrontendRequest as R,
  HEADER_SIZE,
  NEED_REPLY_FLAG,
  VERSION,
} from "../../core/protocol/constants.ts";
import {
  encodeHeader,
  encodeMessage,
  encodeU64,
  encodeVringState,
} from "../../core/protocol/message.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../../core/virtio/features.ts";
import { DriverMemory, DriverQueue, VhostUserFrontend } from "../../frontend/mod.ts";
import { DaemonProcess, socketDir } from "./daemon_process.ts";

const ECHO = new URL("../echo_device/main.ts", import.meta.url).pathname;
const FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) |
  bit(VIRTIO_RING_F_EVENT_IDX);

Deno.test("hostile input: the daemon rejects it all, keeps serving, and leaks nothing", async (t) => {
  const dir = socketDir();
  const path = `${dir}/echo.sock`;
  const daemon = await DaemonProcess.start(ECHO, {
    args: ["-s", path, "--log-level", "debug"],
    waitFor: [path],
  });
  let connections = 0;
  const served = () => daemon.waitForLog("waiting for a front-end", { count: connections });

  /** A raw connection that sends `bytes` (and `fds`), then expects the daemon to hang up. */
  const expectDropped = async (bytes: Uint8Array, fds: number[] = []) => {
    const fd = connectUnix(path);
    sendWithFds(fd, bytes, { fds });
    const frontend = new VhostUserFrontend(fd, { timeoutMs: 2000 });
    assert.ok(frontend.waitForHangUp(3000), "the daemon closed the connection");
    frontend.close();
    connections++;
    await served();
  };

  /** A negotiated connection (REPLY_ACK on every message). */
  const negotiated = async () => {
    const frontend = await VhostUserFrontend.connect(path, { replyAck: "all", timeoutMs: 3000 });
    frontend.init();
    return frontend;
  };

  try {
    const baseline = await (async () => {
      const warm = await negotiated();
      warm.close();
      connections++;
      await served();
      return daemon.fds();
    })();

    await t.step("broken connections: truncated header, hang-up mid-payload", async () => {
      const fd = connectUnix(path);
      sendWithFds(
        fd,
        encodeHeader({ request: R.GET_FEATURES, flags: VERSION, size: 0 }).subarray(0, 5),
      );
      close(fd);
      connections++;
      await served();
      const fd2 = connectUnix(path);
      const memfd = createMemfd("x", 4096);
      sendWithFds(fd2, encodeHeader({ request: R.SET_MEM_TABLE, flags: VERSION, size: 100 }), {
        fds: [memfd],
      });
      sendWithFds(fd2, new Uint8Array(10));
      shutdownSocket(fd2);
      close(fd2);
      close(memfd);
      connections++;
      await served();
    });

    await t.step(
      "unframeable headers: oversized payload, wrong version, reserved flags",
      async () => {
        await expectDropped(encodeHeader({ request: R.SET_CONFIG, flags: VERSION, size: 0x10000 }));
        await expectDropped(encodeMessage(R.GET_FEATURES, { flags: 0x2 }));
        await expectDropped(encodeMessage(R.GET_FEATURES, { flags: VERSION | 0x100 }));
      },
    );

    await t.step("bad messages fail with an ack and the connection lives on", async () => {
      const f = await negotiated();
      const ack = (request: number, payload: Uint8Array, fds: number[] = []) => {
        f.sendRaw(encodeMessage(request, { flags: VERSION | NEED_REPLY_FLAG, payload }), fds);
        const reply = f.readRawReply();
        assert.ok(reply, `a reply to request ${request}`);
        return new DataView(reply.payload.buffer, reply.payload.byteOffset).getBigUint64(0, true);
      };
      assert.notEqual(ack(999, new Uint8Array(7)), 0n, "unknown request");
      assert.notEqual(ack(R.SET_FEATURES, new Uint8Array(3)), 0n, "short payload");
      const stray = [createEventFd(), createEventFd()];
      assert.notEqual(ack(R.GET_FEATURES, new Uint8Array(0), stray), 0n, "fds on GET_FEATURES");
      stray.forEach(close);
      assert.notEqual(ack(R.SET_FEATURES, encodeU64(1n << 60n)), 0n, "features never offered");
      assert.notEqual(ack(R.SET_VRING_KICK, encodeU64(0n)), 0n, "kick without its fd");
      const flood = Array.from({ length: 32 }, () => createEventFd());
      assert.notEqual(
        ack(R.SET_VRING_NUM, encodeVringState(0, 256), flood),
        0n,
        "fds where none belong",
      );
      flood.forEach(close);
      for (const num of [0, 3, 2048]) assert.throws(() => f.setVringNum(0, num), /size|ack/i);
      const call = createEventFd();
      assert.throws(() => f.setVringCall(200, call), /ack/i, "queue index out of range");
      close(call);
      assert.throws(
        () => f.setVringAddr(0, { descUser: 8, availUser: 0, usedUser: 0 }),
        "misaligned ring",
      );
      assert.throws(() => f.getConfig(250, 10), "config past its end");

      const memfd = createMemfd("small", 0x1000);
      const region = (size: number, gpa = 0) => ({
        descriptor: {
          guestPhysAddr: gpa,
          memorySize: size,
          userspaceAddr: 0x10000 + gpa,
          mmapOffset: 0,
        },
        fd: memfd,
      });
      assert.throws(() => f.setMemTable([region(0)]), "region of size 0");
      assert.throws(() => f.setMemTable([region(0x2000)]), "region past the end of its file");
      assert.throws(
        () => f.setMemTable(Array.from({ length: 9 }, (_, i) => region(0x1000, i * 0x1000))),
        "nine regions",
      );
      assert.throws(
        () => f.setMemTable([region(0x1000), region(0x1000, 0x800)]),
        "overlapping regions",
      );
      assert.throws(
        () => f.addMemReg(region(0x1_0000_0000)),
        "ADD_MEM_REG past the end of its file",
      );
      f.setMemTable([region(0x1000)]);
      f.setVringNum(0, 16);
      f.setVringAddr(0, { descUser: 0x40_0000, availUser: 0x40_1000, usedUser: 0x40_2000 });
      const kick = createEventFd();
      assert.throws(() => f.setVringKick(0, kick), "rings outside guest memory");
      close(kick);
      close(memfd);
      assert.ok(f.getFeatures() & bit(VIRTIO_F_VERSION_1), "still talking");
      f.close();
      connections++;
      await served();
    });

    await t.step(
      "bad descriptor chains are refused one by one while good ones are served",
      async () => {
        const f = await negotiated();
        const memory = new DriverMemory({ size: 1 << 20 });
        const queue = new DriverQueue(memory, { size: 16, eventIdx: true });
        f.start({ memory, queues: [queue], features: FEATURES });
        const good = () => {
          queue.add({ readable: [new Uint8Array([42])], writable: [1] });
          queue.publish();
          f.kick(0);
          assert.ok(f.waitForCall(0, 3000));
          const used = queue.takeUsed();
          assert.deepEqual(used.map((u) => u.data[0]), [42]);
        };
        const bad = (
          descriptors: Parameters<DriverQueue["writeDescriptor"]>[1][],
          reason: RegExp,
        ) => {
          descriptors.forEach((d, i) => queue.writeDescriptor(12 + i, d));
          queue.rawPushAvail(12);
          queue.publish();
          f.kick(0);
          assert.ok(f.waitForCall(0, 3000));
          assert.deepEqual(queue.takeUsedRaw(), [{ id: 12, length: 0 }]);
          // Ask for the next call, as takeUsed() does for well-formed chains.
          queue.setUsedEvent(queue.lastUsedIndex);
          good();
          return daemon.waitForLog(reason);
        };
        good();
        const buffer = memory.alloc(64);
        await bad([
          { addr: buffer, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 13 },
          { addr: buffer, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 12 },
        ], /a loop/);
        await bad(
          [{ addr: (1 << 20) - 4, len: 64, flags: VIRTQ_DESC_F_WRITE, next: 0 }],
          /outside guest memory/,
        );
        await bad(
          [{ addr: buffer, len: 24, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }],
          /not a whole number/,
        );
        await bad(
          [{ addr: 2 ** 52, len: 1, flags: 0, next: 0 }],
          /out of range|outside guest memory/,
        );

        queue.writeAvailIdx(queue.readAvailIdx() + 100);
        f.kick(0);
        await daemon.waitForLog("the driver broke the ring");
        assert.ok(f.takeError(0), "the error eventfd was signalled");
        f.close();
        memory.close();
        connections++;
        await served();
      },
    );

    await t.step(
      "after all that, a well-behaved front-end is served and no fd leaked",
      async () => {
        const f = await VhostUserFrontend.connect(path);
        const memory = new DriverMemory({ size: 1 << 20 });
        const queue = new DriverQueue(memory, { size: 64, eventIdx: true });
        f.init();
        f.start({ memory, queues: [queue], features: FEATURES });
        queue.add({ readable: [new TextEncoder().encode("still here")], writable: [10] });
        queue.publish();
        f.kick(0);
        assert.ok(f.waitForCall(0, 3000));
        assert.equal(new TextDecoder().decode(queue.takeUsed()[0].data), "still here");
        f.close();
        memory.close();
        connections++;
        await served();
        await daemon.expectFds(baseline);
        assert.doesNotMatch(daemon.log, /failed in the device|Uncaught|panicked/);
      },
    );
  } catch (error) {
    console.error(`daemon log:\n${daemon.log}`);
    throw error;
  } finally {
    const status = await daemon.stop();
    if (Deno.env.get("SHOW_DAEMON_LOG")) console.error(daemon.log);
    assert.equal(status.code, 0, "the daemon never crashed");
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("hostile input: a header split across writes is reassembled", async () => {
  const dir = socketDir();
  const path = `${dir}/echo.sock`;
  const daemon = await DaemonProcess.start(ECHO, { args: ["-s", path], waitFor: [path] });
  try {
    const fd = connectUnix(path);
    const message = encodeMessage(R.GET_FEATURES, {});
    for (let i = 0; i < HEADER_SIZE; i++) {
      sendWithFds(fd, message.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 2));
    }
    const frontend = new VhostUserFrontend(fd);
    const reply = frontend.readRawReply({ timeoutMs: 3000 });
    assert.equal(reply?.request, R.GET_FEATURES);
    frontend.close();
  } finally {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});
