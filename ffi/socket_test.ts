import assert from "node:assert/strict";
import {
  acceptUnix,
  close,
  connectUnix,
  createEventFd,
  drainEventFd,
  EAGAIN,
  isOpen,
  listenUnix,
  MAX_FDS_PER_MESSAGE,
  peek,
  read,
  receiveWithFds,
  sendBufferSize,
  sendWithFds,
  setNonBlocking,
  setSendBuffer,
  shutdownSocket,
  shutdownWrite,
  signalEventFd,
  socketPair,
  SyscallError,
  write,
} from "./mod.ts";

Deno.test("descriptors pass over a socket pair with SCM_RIGHTS", () => {
  const [a, b] = socketPair();
  const event = createEventFd();
  try {
    assert.equal(sendWithFds(a, new Uint8Array([1, 2, 3]), { fds: [event] }), 3);
    const into = new Uint8Array(16);
    const got = receiveWithFds(b, into)!;
    assert.equal(got.length, 3);
    assert.deepEqual([...into.subarray(0, 3)], [1, 2, 3]);
    assert.equal(got.fds.length, 1);
    assert.notEqual(got.fds[0], event);
    signalEventFd(got.fds[0]);
    assert.equal(drainEventFd(event), 1);
    close(got.fds[0]);
  } finally {
    close(event);
    close(a);
    close(b);
  }
});

Deno.test("a non-blocking receive with nothing pending returns null; EOF returns 0", () => {
  const [a, b] = socketPair();
  setNonBlocking(b, true);
  assert.equal(receiveWithFds(b, new Uint8Array(4)), null);
  close(a);
  assert.equal(receiveWithFds(b, new Uint8Array(4))!.length, 0);
  close(b);
});

Deno.test("sending to a closed peer is EPIPE, not SIGPIPE", () => {
  const [a, b] = socketPair();
  close(b);
  assert.throws(
    () => sendWithFds(a, new Uint8Array(1)),
    (e) => e instanceof SyscallError && e.errno === 32,
  );
  close(a);
});

Deno.test("too many descriptors are refused before the call", () => {
  const [a, b] = socketPair();
  assert.throws(() =>
    sendWithFds(a, new Uint8Array(1), { fds: new Array(MAX_FDS_PER_MESSAGE + 1).fill(0) })
  );
  close(a);
  close(b);
});

Deno.test("listen, connect and accept on a path", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.sock`;
  const listener = listenUnix(path);
  try {
    assert.equal(acceptUnix(listener), null);
    const client = connectUnix(path);
    const server = acceptUnix(listener)!;
    assert.ok(server > 0);
    sendWithFds(client, new TextEncoder().encode("hi"));
    const into = new Uint8Array(2);
    assert.equal(receiveWithFds(server, into)!.length, 2);
    shutdownSocket(server);
    assert.equal(receiveWithFds(client, new Uint8Array(1))!.length, 0);
    close(client);
    close(server);
    assert.ok(!isOpen(server));
  } finally {
    close(listener);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connecting to a missing path names the path and errno", () => {
  assert.throws(
    () => connectUnix("/nonexistent/x.sock"),
    /connect\(\/nonexistent\/x.sock\) failed: ENOENT/,
  );
});

Deno.test("socket paths longer than sun_path are refused", () => {
  assert.throws(() => listenUnix("/tmp/" + "x".repeat(120)), /must be 1..107 bytes/);
});

Deno.test("a non-blocking connect connects, half-closes, and fails fast", () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/s`;
  const listener = listenUnix(path, 1);
  try {
    const client = connectUnix(path, { nonBlocking: true });
    const server = acceptUnix(listener)!;
    assert.equal(write(client, new Uint8Array([1, 2, 3])), 3);
    shutdownWrite(client);
    const buffer = new Uint8Array(8);
    assert.equal(read(server, buffer), 3);
    assert.equal(read(server, buffer), 0, "end of file after the half-close");
    // The other direction still works.
    assert.equal(write(server, new Uint8Array([9])), 1);
    assert.equal(read(client, buffer), 1);
    close(client);
    close(server);

    // A full backlog fails with EAGAIN instead of blocking.
    const queued: number[] = [];
    let error: unknown = null;
    for (let i = 0; i < 64 && error === null; i++) {
      try {
        queued.push(connectUnix(path, { nonBlocking: true }));
      } catch (e) {
        error = e;
      }
    }
    assert.ok(error instanceof SyscallError && error.errno === EAGAIN, `got ${error}`);
    queued.forEach(close);

    assert.throws(() => connectUnix(`${dir}/absent`, { nonBlocking: true }), SyscallError);
  } finally {
    close(listener);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a larger send buffer holds more unread bytes", () => {
  const filled = (grow: boolean): number => {
    const [a, b] = socketPair();
    try {
      setNonBlocking(a, true);
      if (grow) {
        const before = sendBufferSize(a);
        setSendBuffer(a, 1 << 20);
        assert.ok(sendBufferSize(a) > before);
      }
      const chunk = new Uint8Array(65536);
      let total = 0;
      for (let n = write(a, chunk); n !== null; n = write(a, chunk)) total += n;
      return total;
    } finally {
      close(a);
      close(b);
    }
  };
  assert.ok(filled(true) > filled(false));
  assert.throws(() => setSendBuffer(-1, 4096), SyscallError);
});

Deno.test("peek copies waiting bytes and leaves them to read", () => {
  const [a, b] = socketPair();
  try {
    setNonBlocking(b, true);
    const buffer = new Uint8Array(8);
    assert.equal(peek(b, buffer), null);
    write(a, new Uint8Array([1, 2, 3]));
    assert.equal(peek(b, buffer), 3);
    assert.deepEqual([...buffer.subarray(0, 3)], [1, 2, 3]);
    assert.equal(read(b, buffer), 3, "still there");
    shutdownWrite(a);
    assert.equal(peek(b, buffer), 0);
  } finally {
    close(a);
    close(b);
  }
});
