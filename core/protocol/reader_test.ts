import assert from "node:assert/strict";
import { close, createEventFd, sendWithFds, setNonBlocking, socketPair } from "../../ffi/mod.ts";
import { FrontendRequest as R, HEADER_SIZE } from "./constants.ts";
import { encodeHeader, encodeMessage, encodeU64, ProtocolError } from "./message.ts";
import { END_OF_STREAM, MessageReader } from "./reader.ts";

Deno.test("messages are reassembled from pieces, with fds from any piece", () => {
  const [a, b] = socketPair();
  setNonBlocking(b, true);
  const reader = new MessageReader(b);
  const message = encodeMessage(R.SET_VRING_CALL, { payload: encodeU64(1n) });
  const fd = createEventFd();
  assert.equal(reader.next(), null);
  sendWithFds(a, message.subarray(0, 5), { fds: [fd] });
  assert.equal(reader.next(), null);
  sendWithFds(a, message.subarray(5, HEADER_SIZE + 3));
  assert.equal(reader.next(), null);
  sendWithFds(a, message.subarray(HEADER_SIZE + 3));
  const got = reader.next();
  assert.ok(got && got !== END_OF_STREAM);
  assert.equal(got.header.request, R.SET_VRING_CALL);
  assert.deepEqual([...got.payload], [...encodeU64(1n)]);
  assert.equal(got.fds.length, 1);
  close(got.fds[0]);
  close(fd);
  close(a);
  assert.equal(reader.next(), END_OF_STREAM);
  close(b);
});

Deno.test("two messages in one read come out one at a time", () => {
  const [a, b] = socketPair();
  setNonBlocking(b, true);
  const reader = new MessageReader(b);
  const one = encodeMessage(R.GET_FEATURES, {});
  const two = encodeMessage(R.SET_OWNER, {});
  const both = new Uint8Array(one.length + two.length);
  both.set(one);
  both.set(two, one.length);
  sendWithFds(a, both);
  const first = reader.next();
  const second = reader.next();
  assert.ok(first && first !== END_OF_STREAM && second && second !== END_OF_STREAM);
  assert.equal(first.header.request, R.GET_FEATURES);
  assert.equal(second.header.request, R.SET_OWNER);
  assert.equal(reader.next(), null);
  close(a);
  close(b);
});

Deno.test("a bad header is a ProtocolError; discard closes a partial message's fds", () => {
  const [a, b] = socketPair();
  setNonBlocking(b, true);
  const reader = new MessageReader(b);
  const fd = createEventFd();
  sendWithFds(a, encodeHeader({ request: 5, flags: 1, size: 40 }), { fds: [fd] });
  assert.equal(reader.next(), null);
  reader.discard();
  sendWithFds(a, new Uint8Array(40));
  close(fd);
  const [c, d] = socketPair();
  setNonBlocking(d, true);
  sendWithFds(c, encodeHeader({ request: 1, flags: 3, size: 0 }));
  assert.throws(() => new MessageReader(d).next(), ProtocolError);
  for (const x of [a, b, c, d]) close(x);
});
