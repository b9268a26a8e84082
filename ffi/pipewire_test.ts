import assert from "node:assert/strict";
import { audioFormatPod, buffersPod, SPA_AUDIO_FORMAT_S16_LE } from "./pipewire.ts";

Deno.test("pipewire: the EnumFormat pod is laid out as spa_format_audio_raw_build makes it", () => {
  const pod = audioFormatPod({
    format: SPA_AUDIO_FORMAT_S16_LE,
    rate: 48000,
    channels: 2,
    positions: [3, 4],
  });
  const words = Array.from(new Uint32Array(pod.buffer));
  assert.deepEqual(words, [
    // struct spa_pod: body size, SPA_TYPE_Object; body: SPA_TYPE_OBJECT_Format, SPA_PARAM_EnumFormat
    pod.length - 8,
    15,
    0x40003,
    3,
    // mediaType = Id audio, mediaSubtype = Id raw (key, flags, size, type, value, padding)
    1,
    0,
    4,
    3,
    1,
    0,
    2,
    0,
    4,
    3,
    1,
    0,
    // format = Id S16_LE, rate = Int 48000, channels = Int 2
    0x10001,
    0,
    4,
    3,
    0x103,
    0,
    0x10003,
    0,
    4,
    4,
    48000,
    0,
    0x10004,
    0,
    4,
    4,
    2,
    0,
    // position = Array of Id [FL, FR]: child size 4, child type Id
    0x10005,
    0,
    16,
    13,
    4,
    3,
    3,
    4,
  ]);
  assert.equal(pod.length % 8, 0);
});

Deno.test("pipewire: the Buffers pod asks for a buffer count only", () => {
  const pod = buffersPod(16);
  assert.deepEqual(Array.from(new Uint32Array(pod.buffer)), [
    // struct spa_pod; body: SPA_TYPE_OBJECT_ParamBuffers, SPA_PARAM_Buffers
    pod.length - 8,
    15,
    0x40004,
    5,
    // buffers = Int 16 (key, flags, size, type, value, padding)
    1,
    0,
    4,
    4,
    16,
    0,
  ]);
});
