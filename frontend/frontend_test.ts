import assert from "node:assert/strict";
import {
  close,
  drainEventFd,
  mapShared,
  PAGE_SIZE,
  receiveWithFds,
  sendWithFds,
  setNonBlocking,
  signalEventFd,
  socketPair,
  unmap,
} from "../ffi/mod.ts";
import {
  BackendRequest,
  bit,
  FrontendRequest as R,
  NEED_REPLY_FLAG,
  ProtocolFeature as P,
  REPLY_FLAG,
  VERSION,
  VHOST_USER_F_PROTOCOL_FEATURES,
} from "../core/protocol/constants.ts";
import {
  type Decoded,
  decodeHeader,
  decodeMessage,
  encodeConfig,
  encodeMessage,
  encodeReply,
  encodeU64,
  encodeVringState,
} from "../core/protocol/message.ts";
import { DriverMemory } from "./driver_memory.ts";
import { DriverQueue } from "./driver_queue.ts";
import {
  type FrontendOptions,
  SUPPORTED_PROTOCOL_FEATURES,
  VhostUserFrontend,
  VhostUserFrontendError,
} from "./frontend.ts";

/**
 * A scripted back-end on a socket pair: its replies are queued before the
 * front-end asks (every front-end call blocks this thread), and what the
 * front-end sent is decoded afterwards with the core codec.
 */
class ScriptedBackend {
  readonly frontend: VhostUserFrontend;
  readonly fd: number;

  constructor(options: FrontendOptions = {}) {
    const [ours, theirs] = socketPair();
    this.fd = theirs;
    setNonBlocking(theirs, true);
    this.frontend = new VhostUserFrontend(ours, { timeoutMs: 200, ...options });
  }

  /** Queues replies. */
  reply(...messages: Uint8Array[]): void {
    for (const m of messages) assert.equal(sendWithFds(this.fd, m), m.length);
  }

  /** Decodes every message the front-end has sent so far; the caller closes their fds. */
  received(): { decoded: Decoded; fds: number[] }[] {
    const out: { decoded: Decoded; fds: number[] }[] = [];
    for (;;) {
      const header = new Uint8Array(12);
      const got = receiveWithFds(this.fd, header);
      if (got === null) return out;
      assert.equal(got.length, 12);
      const h = decodeHeader(header);
      const payload = new Uint8Array(h.size);
      if (h.size > 0) assert.equal(receiveWithFds(this.fd, payload)?.length, h.size);
      out.push({ decoded: decodeMessage(h, { payload, fds: got.fds }), fds: got.fds });
    }
  }

  /** The kinds received, closing any fds. */
  kinds(): string[] {
    return this.received().map((m) => {
      m.fds.forEach(close);
      return m.decoded.message.kind;
    });
  }

  close(): void {
    this.frontend.close();
    close(this.fd);
  }
}

const u64 = (request: number, value: bigint): Uint8Array => encodeReply(request, encodeU64(value));
const ack = (request: number, value = 0n): Uint8Array => u64(request, value);

const ALL_PROTOCOL = SUPPORTED_PROTOCOL_FEATURES | bit(P.LOG_SHMFD);
const FEATURES = bit(32) | bit(29) | bit(28) | bit(VHOST_USER_F_PROTOCOL_FEATURES);

Deno.test("init follows QEMU's vhost_dev_init order and masks protocol features", () => {
  const backend = new ScriptedBackend();
  try {
    backend.reply(
      u64(R.GET_FEATURES, FEATURES),
      u64(R.GET_PROTOCOL_FEATURES, ALL_PROTOCOL),
      u64(R.GET_QUEUE_NUM, 2n),
      u64(R.GET_MAX_MEM_SLOTS, 509n),
      ack(R.SET_BACKEND_REQ_FD),
      u64(R.GET_FEATURES, FEATURES),
    );
    const result = backend.frontend.init();
    assert.deepEqual(result, {
      features: FEATURES,
      protocolFeatures: SUPPORTED_PROTOCOL_FEATURES,
      queueNum: 2,
      maxMemSlots: 509,
      queueCount: 2,
    });
    const sent = backend.received();
    assert.deepEqual(sent.map((m) => m.decoded.message.kind), [
      "GET_FEATURES",
      "GET_PROTOCOL_FEATURES",
      "SET_PROTOCOL_FEATURES",
      "GET_QUEUE_NUM",
      "GET_MAX_MEM_SLOTS",
      "SET_BACKEND_REQ_FD",
      "SET_OWNER",
      "GET_FEATURES",
      "SET_VRING_CALL",
      "SET_VRING_ERR",
      "SET_VRING_CALL",
      "SET_VRING_ERR",
    ]);
    const setProtocol = sent[2].decoded.message;
    assert.ok(setProtocol.kind === "SET_PROTOCOL_FEATURES");
    assert.equal(setProtocol.features, SUPPORTED_PROTOCOL_FEATURES); // LOG_SHMFD dropped
    assert.equal(sent[2].decoded.needReply, false);
    // REPLY_ACK is negotiated from here on: QEMU flags SET_BACKEND_REQ_FD only.
    assert.equal(sent[5].decoded.needReply, true);
    assert.equal(sent[5].fds.length, 1);
    assert.equal(sent[6].decoded.needReply, false);
    const calls = sent.slice(8).map((m) => m.decoded.message);
    assert.deepEqual(calls.map((m) => "index" in m ? m.index : -1), [0, 0, 1, 1]);
    assert.ok(sent.slice(8).every((m) => m.fds.length === 1));
    sent.forEach((m) => m.fds.forEach(close));
    assert.ok(backend.frontend.replyAckNegotiated);
    assert.notEqual(backend.frontend.backendChannelFd, null);
  } finally {
    backend.close();
  }
});

Deno.test("init without bit 30 skips protocol features entirely", () => {
  const backend = new ScriptedBackend();
  try {
    backend.reply(u64(R.GET_FEATURES, bit(32)), u64(R.GET_FEATURES, bit(32)));
    const result = backend.frontend.init();
    assert.equal(result.protocolFeatures, 0n);
    assert.equal(result.queueCount, 1);
    assert.deepEqual(backend.kinds(), [
      "GET_FEATURES",
      "SET_OWNER",
      "GET_FEATURES",
      "SET_VRING_CALL",
      "SET_VRING_ERR",
    ]);
  } finally {
    backend.close();
  }
});

/** Puts the front-end in the post-init state: features offered, `protocol` acked. */
function negotiate(backend: ScriptedBackend, protocol: bigint): void {
  backend.reply(u64(R.GET_FEATURES, FEATURES));
  backend.frontend.getFeatures();
  backend.frontend.setProtocolFeatures(protocol);
  backend.kinds();
}

Deno.test("start and stop follow vhost_dev_start / do_vhost_dev_stop with STATUS and mem slots", () => {
  const backend = new ScriptedBackend();
  const memory = new DriverMemory({ size: 64 * PAGE_SIZE, split: { at: 16 * PAGE_SIZE } });
  try {
    negotiate(backend, bit(P.REPLY_ACK) | bit(P.STATUS) | bit(P.CONFIGURE_MEM_SLOTS));
    const queue = new DriverQueue(memory, { size: 32, eventIdx: true });
    queue.lastAvailIndex = 5;
    backend.reply(
      u64(R.GET_STATUS, 0n),
      ack(R.SET_STATUS),
      ack(R.ADD_MEM_REG),
      ack(R.ADD_MEM_REG),
      ack(R.SET_VRING_ENABLE),
      u64(R.GET_STATUS, 8n),
      ack(R.SET_STATUS),
    );
    backend.frontend.start({ memory, queues: [queue], features: bit(32) | bit(29) });
    const sent = backend.received();
    assert.deepEqual(sent.map((m) => m.decoded.message.kind), [
      "SET_FEATURES",
      "GET_STATUS",
      "SET_STATUS",
      "ADD_MEM_REG",
      "ADD_MEM_REG",
      "SET_VRING_NUM",
      "SET_VRING_BASE",
      "SET_VRING_ADDR",
      "SET_VRING_KICK",
      "SET_VRING_ENABLE",
      "GET_STATUS",
      "SET_STATUS",
      "SET_VRING_CALL",
    ]);
    const messages = sent.map((m) => m.decoded.message);
    assert.deepEqual(messages[0], {
      kind: "SET_FEATURES",
      features: bit(32) | bit(29) | bit(VHOST_USER_F_PROTOCOL_FEATURES),
    });
    assert.deepEqual(messages[2], { kind: "SET_STATUS", status: 8 });
    assert.deepEqual(messages[11], { kind: "SET_STATUS", status: 15 });
    const regions = memory.regions();
    assert.deepEqual(messages[3], {
      kind: "ADD_MEM_REG",
      region: regions[0].descriptor,
      fd: sent[3].fds[0],
    });
    assert.deepEqual(messages[4], {
      kind: "ADD_MEM_REG",
      region: regions[1].descriptor,
      fd: sent[4].fds[0],
    });
    assert.deepEqual(messages[5], { kind: "SET_VRING_NUM", index: 0, num: 32 });
    assert.deepEqual(messages[6], { kind: "SET_VRING_BASE", index: 0, num: 5 });
    assert.deepEqual(messages[7], {
      kind: "SET_VRING_ADDR",
      addresses: { index: 0, flags: 0, logGuest: 0, ...queue.addresses() },
    });
    // The region fd that arrived is the memfd: a mapping of it sees guest RAM.
    memory.write(regions[1].descriptor.guestPhysAddr, new Uint8Array([42]));
    const mapped = mapShared(sent[4].fds[0], { length: PAGE_SIZE, offset: 16 * PAGE_SIZE });
    assert.equal(new Uint8Array(mapped.buffer)[0], 42);
    unmap(mapped);
    // The kick fd that arrived is ours.
    backend.frontend.kick(0);
    assert.equal(drainEventFd(sent[8].fds[0]), 1);
    sent.forEach((m) => m.fds.forEach(close));

    backend.reply(
      ack(R.SET_VRING_ENABLE),
      encodeReply(R.GET_VRING_BASE, encodeVringState(0, 9)),
      ack(R.SET_STATUS),
    );
    assert.deepEqual(backend.frontend.stop(), [9]);
    assert.equal(queue.lastAvailIndex, 9);
    const stopped = backend.received().map((m) => m.decoded.message);
    assert.deepEqual(stopped, [
      { kind: "SET_VRING_ENABLE", index: 0, enable: false },
      { kind: "GET_VRING_BASE", index: 0 },
      { kind: "SET_STATUS", status: 0 },
    ]);
  } finally {
    backend.close();
    memory.close();
  }
});

Deno.test("start without mem slots sends SET_MEM_TABLE with one fd per region", () => {
  const backend = new ScriptedBackend();
  const memory = new DriverMemory({ size: 32 * PAGE_SIZE, split: { at: 8 * PAGE_SIZE } });
  try {
    negotiate(backend, 0n);
    const queue = new DriverQueue(memory, { size: 8 });
    // Without REPLY_ACK, SET_VRING_ENABLE is followed by a GET_FEATURES barrier.
    backend.reply(u64(R.GET_FEATURES, FEATURES));
    backend.frontend.start({ memory, queues: [queue], features: bit(32) });
    const sent = backend.received();
    assert.deepEqual(sent.map((m) => m.decoded.message.kind), [
      "SET_FEATURES",
      "SET_MEM_TABLE",
      "SET_VRING_NUM",
      "SET_VRING_BASE",
      "SET_VRING_ADDR",
      "SET_VRING_KICK",
      "SET_VRING_ENABLE",
      "GET_FEATURES",
      "SET_VRING_CALL",
    ]);
    const table = sent[1].decoded.message;
    assert.ok(table.kind === "SET_MEM_TABLE");
    assert.deepEqual(table.regions, memory.regions().map((r) => r.descriptor));
    assert.equal(sent[1].fds.length, 2);
    assert.ok(sent.every((m) => !m.decoded.needReply));
    sent.forEach((m) => m.fds.forEach(close));
  } finally {
    backend.close();
    memory.close();
  }
});

Deno.test("replies are checked as QEMU checks them", () => {
  const cases: [Uint8Array, RegExp][] = [
    [encodeMessage(R.GET_FEATURES, { flags: VERSION, payload: encodeU64(1n) }), /flags 0x1/],
    [
      encodeMessage(R.GET_FEATURES, {
        flags: REPLY_FLAG | VERSION | NEED_REPLY_FLAG,
        payload: encodeU64(1n),
      }),
      /flags 0xd/,
    ],
    [u64(R.GET_PROTOCOL_FEATURES, 1n), /GET_PROTOCOL_FEATURES/],
    [encodeReply(R.GET_FEATURES, new Uint8Array(4)), /4 bytes, expected 8/],
  ];
  for (const [reply, pattern] of cases) {
    const backend = new ScriptedBackend();
    try {
      backend.reply(reply);
      assert.throws(
        () => backend.frontend.getFeatures(),
        (e) =>
          e instanceof VhostUserFrontendError && e.request === "GET_FEATURES" &&
          pattern.test(e.message),
      );
    } finally {
      backend.close();
    }
  }
});

Deno.test("a missing reply times out naming the request; a hang-up is reported", () => {
  const backend = new ScriptedBackend({ timeoutMs: 50 });
  try {
    const started = performance.now();
    assert.throws(() => backend.frontend.getQueueNum(), /GET_QUEUE_NUM: no reply.*50 ms/);
    assert.ok(performance.now() - started >= 45);
  } finally {
    backend.close();
  }
  const gone = new ScriptedBackend();
  close(gone.fd);
  try {
    assert.throws(() => gone.frontend.getStatus(), /GET_STATUS: /);
  } finally {
    gone.frontend.close();
  }
});

Deno.test("NEED_REPLY: a non-zero ack is an error; policy 'all' and per-call overrides", () => {
  const backend = new ScriptedBackend({ replyAck: "all" });
  try {
    negotiate(backend, bit(P.REPLY_ACK));
    backend.reply(ack(R.SET_VRING_NUM, 1n));
    assert.throws(() => backend.frontend.setVringNum(0, 64), /SET_VRING_NUM: .*failure \(1\)/);
    backend.frontend.setOwner({ needReply: false });
    backend.reply(ack(R.SET_OWNER));
    backend.frontend.setOwner();
    const sent = backend.received();
    assert.deepEqual(sent.map((m) => [m.decoded.message.kind, m.decoded.needReply]), [
      ["SET_VRING_NUM", true],
      ["SET_OWNER", false],
      ["SET_OWNER", true],
    ]);
  } finally {
    backend.close();
  }
});

Deno.test("NEED_REPLY policy 'qemu-7.2': SET_CONFIG acked; SET_VRING_ENABLE neither acked nor followed by a barrier", () => {
  const backend = new ScriptedBackend({ replyAck: "qemu-7.2" });
  try {
    negotiate(backend, bit(P.REPLY_ACK));
    backend.frontend.setVringEnable(0, true);
    backend.reply(ack(R.SET_CONFIG));
    backend.frontend.setConfig(0, new Uint8Array([1]));
    const sent = backend.received();
    assert.deepEqual(sent.map((m) => [m.decoded.message.kind, m.decoded.needReply]), [
      ["SET_VRING_ENABLE", false],
      ["SET_CONFIG", true],
    ]);
  } finally {
    backend.close();
  }
});

Deno.test("vring fds: an eventfd or NOFD (bit 8)", () => {
  const backend = new ScriptedBackend();
  try {
    backend.frontend.setVringCall(3, null);
    backend.frontend.setVringKick(1, backend.frontend.kickFd(1));
    const sent = backend.received();
    assert.deepEqual(sent[0].decoded.message, { kind: "SET_VRING_CALL", index: 3, fd: null });
    assert.equal(sent[1].fds.length, 1);
    assert.deepEqual(sent[1].decoded.message, {
      kind: "SET_VRING_KICK",
      index: 1,
      fd: sent[1].fds[0],
    });
    sent.forEach((m) => m.fds.forEach(close));
  } finally {
    backend.close();
  }
});

Deno.test("GET_CONFIG checks the echoed offset and size; an empty reply is an error", () => {
  const backend = new ScriptedBackend();
  try {
    const data = new Uint8Array([3, 0, 0, 0, 0, 0, 0, 0]);
    backend.reply(encodeReply(R.GET_CONFIG, encodeConfig({ offset: 0, size: 8, flags: 0, data })));
    assert.deepEqual([...backend.frontend.getConfig(0, 8)], [...data]);
    backend.reply(encodeReply(R.GET_CONFIG, new Uint8Array(0)));
    assert.throws(() => backend.frontend.getConfig(0, 8), /empty reply/);
    backend.reply(
      encodeReply(
        R.GET_CONFIG,
        encodeConfig({ offset: 4, size: 4, flags: 0, data: data.slice(4) }),
      ),
    );
    assert.throws(() => backend.frontend.getConfig(0, 4), /offset 4/);
    const sent = backend.received();
    const first = sent[0].decoded.message;
    assert.ok(first.kind === "GET_CONFIG");
    assert.deepEqual([first.config.offset, first.config.size, first.config.flags], [0, 8, 0]);
    backend.frontend.setConfig(2, new Uint8Array([9]), { flags: 1 });
    const set = backend.received()[0].decoded.message;
    assert.ok(set.kind === "SET_CONFIG");
    assert.deepEqual([set.config.offset, set.config.flags, [...set.config.data]], [2, 1, [9]]);
  } finally {
    backend.close();
  }
});

Deno.test("back-end channel: CONFIG_CHANGE_MSG is read and answered with flags 0x5", () => {
  const backend = new ScriptedBackend();
  try {
    backend.frontend.setBackendReqFd();
    const [sent] = backend.received();
    assert.equal(sent.fds.length, 1);
    const channel = sent.fds[0];
    assert.equal(backend.frontend.readBackendRequest(10), null);
    const request = encodeMessage(BackendRequest.CONFIG_CHANGE_MSG, {
      flags: VERSION | NEED_REPLY_FLAG,
    });
    sendWithFds(channel, request);
    const got = backend.frontend.readBackendRequest(1000);
    assert.ok(got);
    assert.equal(got.request, BackendRequest.CONFIG_CHANGE_MSG);
    assert.equal(got.flags & NEED_REPLY_FLAG, NEED_REPLY_FLAG);
    backend.frontend.replyBackendRequest(got);
    const reply = new Uint8Array(20);
    assert.equal(receiveWithFds(channel, reply)?.length, 20);
    const view = new DataView(reply.buffer);
    assert.deepEqual([view.getUint32(0, true), view.getUint32(4, true), view.getUint32(8, true)], [
      BackendRequest.CONFIG_CHANGE_MSG,
      0x5,
      8,
    ]);
    assert.equal(view.getBigUint64(12, true), 0n);
    close(channel);
    assert.throws(() => backend.frontend.readBackendRequest(1000), /closed/);
  } finally {
    backend.close();
  }
});

Deno.test("waitForCall blocks until the call eventfd fires, then drains it", () => {
  const backend = new ScriptedBackend();
  try {
    const started = performance.now();
    assert.equal(backend.frontend.waitForCall(0, 20), false);
    assert.ok(performance.now() - started >= 15);
    signalEventFd(backend.frontend.callFd(0));
    signalEventFd(backend.frontend.callFd(0));
    assert.equal(backend.frontend.waitForCall(0, 1000), true);
    assert.equal(backend.frontend.waitForCall(0, 0), false);
    signalEventFd(backend.frontend.errFd(0));
    assert.equal(backend.frontend.takeError(0), true);
    assert.equal(backend.frontend.takeError(0), false);
  } finally {
    backend.close();
  }
});

Deno.test("raw messages go out as given; a closed back-end is seen as a hang-up", () => {
  const backend = new ScriptedBackend();
  try {
    backend.frontend.sendRaw(new Uint8Array([0xff, 0xff, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]));
    const raw = new Uint8Array(12);
    assert.equal(receiveWithFds(backend.fd, raw)?.length, 12);
    assert.equal(new DataView(raw.buffer).getUint32(4, true), 9);
    backend.reply(encodeMessage(77, { flags: 0x5, payload: new Uint8Array([1, 2]) }));
    const reply = backend.frontend.readRawReply();
    assert.deepEqual(reply, { request: 77, flags: 5, size: 2, payload: bytesOf(1, 2), fds: [] });
    assert.equal(backend.frontend.waitForHangUp(10), false);
    close(backend.fd);
    assert.equal(backend.frontend.waitForHangUp(1000), true);
    assert.equal(backend.frontend.readRawReply(), null);
  } finally {
    backend.frontend.close();
  }
});

function bytesOf(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}
