// The SCMI header and value codec.
import assert from "node:assert/strict";
import {
  decodeHeader,
  decodeRequest,
  encodeHeader,
  encodeResponse,
  MessageType,
  MessageWriter,
  ScmiStatus,
  statusReply,
  successReply,
} from "./message.ts";

Deno.test("header: fields in bits [7:0], [9:8], [17:10], [27:18]", () => {
  const header = { messageId: 0xab, messageType: 3, protocolId: 0xc1, token: 0x3ff };
  const word = encodeHeader(header);
  assert.equal(word, (0xab | (3 << 8) | (0xc1 << 10) | (0x3ff << 18)) >>> 0);
  assert.deepEqual(decodeHeader(word), header);
  // Reserved bits [31:28] are ignored on decode.
  assert.deepEqual(decodeHeader(word | 0xf0000000), header);
  assert.deepEqual(decodeHeader(0x000304ab), {
    messageId: 0xab,
    messageType: MessageType.COMMAND,
    protocolId: 0xc1,
    token: 0,
  });
});

Deno.test("decodeRequest: header and little-endian parameter words", () => {
  assert.equal(decodeRequest(new Uint8Array(3)), null);
  const bytes = new MessageWriter().u32(0x5806).u32(7).u32(0xffffffff).bytes(new Uint8Array([1]))
    .finish();
  const request = decodeRequest(bytes)!;
  assert.equal(request.headerWord, 0x5806);
  assert.deepEqual(request.parameters, [7, 0xffffffff]);
  assert.equal(request.payloadLength, 9);
  assert.equal(request.header.protocolId, 0x16);
});

Deno.test("MessageWriter: values, names cut to 15 characters and NUL-padded", () => {
  const bytes = new MessageWriter().i32(-2).i64(-1n).name("abcdefghijklmnopq").name("é").finish();
  assert.equal(bytes.length, 4 + 8 + 16 + 16);
  assert.deepEqual([...bytes.subarray(0, 4)], [0xfe, 0xff, 0xff, 0xff]);
  assert.deepEqual([...bytes.subarray(4, 12)], new Array(8).fill(0xff));
  assert.equal(new TextDecoder().decode(bytes.subarray(12, 27)), "abcdefghijklmno");
  assert.equal(bytes[27], 0);
  assert.equal(bytes[28], 0x3f, "non-ASCII becomes ?");
  const big = new MessageWriter();
  for (let i = 0; i < 100; i++) big.u32(i);
  assert.equal(big.length, 400);
});

Deno.test("encodeResponse: header echoed, status, values", () => {
  assert.deepEqual(
    [...encodeResponse(0x0f4240, statusReply(ScmiStatus.COMMS_ERROR))],
    [0x40, 0x42, 0x0f, 0x00, 0xf9, 0xff, 0xff, 0xff],
  );
  assert.deepEqual(
    [...encodeResponse(1, successReply(new Uint8Array([9])))],
    [1, 0, 0, 0, 0, 0, 0, 0, 9],
  );
});
