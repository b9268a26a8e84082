import assert from "node:assert/strict";
import { close, EAGAIN, read, SyscallError, write } from "./mod.ts";
import { acceptUnix, listenUnix } from "./socket.ts";
import { connectUnixNonBlocking, shutdownWrite } from "./stream_socket.ts";

Deno.test("connectUnixNonBlocking: connects, half-closes, and fails fast", () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/s`;
  const listener = listenUnix(path, 1);
  try {
    const client = connectUnixNonBlocking(path);
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
        queued.push(connectUnixNonBlocking(path));
      } catch (e) {
        error = e;
      }
    }
    assert.ok(error instanceof SyscallError && error.errno === EAGAIN, `got ${error}`);
    queued.forEach(close);

    assert.throws(() => connectUnixNonBlocking(`${dir}/absent`), SyscallError);
  } finally {
    close(listener);
    Deno.removeSync(dir, { recursive: true });
  }
});
