// The real vhost-device-rng process driven by the TypeScript vhost-user
// front-end (frontend/): real socket, memfd guest RAM and eventfds.
import assert from "node:assert/strict";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import { VHOST_USER_F_PROTOCOL_FEATURES } from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import {
  type Chain,
  DriverMemory,
  DriverQueue,
  type UsedBuffer,
  VhostUserFrontend,
} from "../../frontend/mod.ts";
import { startRngDaemon } from "./testing.ts";

const FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_NOTIFY_ON_EMPTY) |
  bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX);
const PATTERN = Uint8Array.from({ length: 1 << 16 }, (_, i) => (i * 7 + 3) & 0xff);

async function patternFile(): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "rng-source-" });
  await Deno.writeFile(path, PATTERN);
  return path;
}

async function session(socket: string, options: { eventIdx?: boolean; size?: number } = {}) {
  const frontend = await VhostUserFrontend.connect(socket);
  const memory = new DriverMemory({ size: 4 << 20, split: { at: 2 << 20 } });
  const queue = new DriverQueue(memory, {
    size: options.size ?? 256,
    eventIdx: options.eventIdx ?? true,
  });
  const init = frontend.init();
  const features = options.eventIdx === false ? FEATURES & ~bit(VIRTIO_RING_F_EVENT_IDX) : FEATURES;
  frontend.start({ memory, queues: [queue], features });
  const submit = (...chains: Chain[]): void => {
    for (const chain of chains) queue.add(chain);
    queue.publish();
    if (queue.needsKick()) frontend.kick(0);
  };
  /** Waits until `count` chains came back. */
  const collect = (count: number, timeoutMs = 3000): UsedBuffer[] => {
    const out: UsedBuffer[] = [];
    const deadline = performance.now() + timeoutMs;
    while (out.length < count) {
      out.push(...queue.takeUsed());
      if (out.length >= count) break;
      const left = deadline - performance.now();
      if (left <= 0 || !frontend.waitForCall(0, left)) break;
    }
    return out;
  };
  return {
    frontend,
    init,
    submit,
    collect,
    close(): void {
      frontend.close();
      memory.close();
    },
  };
}

Deno.test("rng daemon: negotiates upstream's features (+ REPLY_ACK, CONFIGURE_MEM_SLOTS), fills requests from the source, survives reconnects", async () => {
  const source = await patternFile();
  await using daemon = await startRngDaemon(["-f", source]);
  const socket = `${daemon.socketPrefix}0`;
  try {
    const s = await session(socket);
    assert.equal(s.init.features, FEATURES | bit(VHOST_USER_F_PROTOCOL_FEATURES));
    assert.equal(
      s.init.protocolFeatures,
      bit(P.MQ) | bit(P.REPLY_ACK) | bit(P.CONFIGURE_MEM_SLOTS),
    );
    assert.equal(s.init.queueNum, 1);

    // Linux's request: one 64-byte writable buffer.
    s.submit({ readable: [], writable: [64] });
    let [used] = s.collect(1);
    assert.equal(used.length, 64);
    assert.deepEqual(used.data, PATTERN.subarray(0, 64));

    // Several writable buffers, directly and through an indirect table.
    s.submit(
      { readable: [], writable: [3, 5] },
      { readable: [], writable: [2, 2], indirect: true },
    );
    const two = s.collect(2);
    assert.deepEqual(two.map((u) => u.length), [8, 4]);
    assert.deepEqual(two[0].data, PATTERN.subarray(64, 72));
    assert.deepEqual(two[1].data, PATTERN.subarray(72, 76));

    // A readable buffer is malformed (§5.4.6.1): empty, logged, next request served.
    s.submit({ readable: [new Uint8Array(4)], writable: [4] }, { readable: [], writable: [4] });
    const mixed = s.collect(2);
    assert.deepEqual(mixed.map((u) => u.length), [0, 4]);
    assert.deepEqual(mixed[1].data, PATTERN.subarray(76, 80));
    await daemon.waitForLog("rejected request");

    // A big buffer, filled at once: what was read ahead, then one readv.
    s.submit({ readable: [], writable: [60000] });
    [used] = s.collect(1);
    assert.equal(used.length, 60000);
    assert.deepEqual(used.data, PATTERN.subarray(80, 60080));
    s.close();
    await daemon.waitForLog("waiting for a front-end");

    // A new front-end (no EVENT_IDX this time) finds the daemon serving.
    const again = await session(socket, { eventIdx: false });
    again.submit({ readable: [], writable: [16] });
    [used] = again.collect(1);
    assert.deepEqual(used.data, PATTERN.subarray(60080, 60096));
    again.close();
    await daemon.waitForLog("waiting for a front-end", { count: 2 });
    assert.ok(daemon.running);
  } catch (error) {
    console.error(daemon.log);
    throw error;
  } finally {
    await Deno.remove(source);
  }
});

Deno.test("rng daemon: the quota holds requests for the period without stalling the daemon", async () => {
  // A period long enough that a loaded machine's hiccups cannot blur "at once" and "next period".
  await using daemon = await startRngDaemon(["-m", "128", "-p", "1000"]);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    const started = performance.now();
    s.submit(...Array.from({ length: 4 }, () => ({ readable: [], writable: [64] })));
    const first = s.collect(2, 1000);
    assert.deepEqual(first.map((u) => u.length), [64, 64]);
    assert.ok(performance.now() - started < 600, "the first 128 bytes come at once");
    // While requests wait for quota the daemon still answers at once.
    const asked = performance.now();
    s.frontend.getFeatures();
    assert.ok(performance.now() - asked < 300, "GET_FEATURES answered during the wait");
    const rest = s.collect(2, 5000);
    const waited = performance.now() - started;
    assert.deepEqual(rest.map((u) => u.length), [64, 64]);
    assert.ok(waited >= 980, `the next period's bytes came after ${waited} ms`);
    assert.ok(waited < 3000, `the next period's bytes came only after ${waited} ms`);
  } catch (error) {
    console.error(daemon.log);
    throw error;
  } finally {
    s.close();
  }
});

Deno.test("rng daemon: a request larger than the remaining quota is partly filled", async () => {
  await using daemon = await startRngDaemon(["-m", "100", "-p", "60000"]);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    s.submit({ readable: [], writable: [64] }, { readable: [], writable: [64] });
    const used = s.collect(2, 1000);
    assert.deepEqual(used.map((u) => u.length), [64, 36]);
    s.submit({ readable: [], writable: [64] });
    assert.deepEqual(s.collect(1, 300), [], "nothing more in this period");
  } finally {
    s.close();
  }
});

Deno.test("rng daemon: a bad flag or source exits non-zero with one line, before listening", async () => {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./main.ts", import.meta.url).pathname, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  };
  const dir = await Deno.makeTempDir();
  try {
    const bad = await run("-s", `${dir}/s`, "-p", "70000");
    assert.equal(bad.code, 2);
    assert.equal(
      bad.stderr,
      "vhost-device-rng: error: invalid value '70000' for --period: must be at most 65536\n",
    );
    const missing = await run("-s", `${dir}/s`, "-f", `${dir}/nope`);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^vhost-device-rng: error: cannot read the rng source .*\n$/);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no socket was created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rng daemon: a full ring of 1000 requests is served in passes of 256, all of them", async () => {
  await using daemon = await startRngDaemon([]);
  const s = await session(`${daemon.socketPrefix}0`, { size: 1024 });
  s.submit(...Array.from({ length: 1000 }, () => ({ readable: [], writable: [16] })));
  const used = s.collect(1000);
  assert.equal(used.length, 1000);
  assert.ok(used.every((u) => u.length === 16));
  s.close();
});
