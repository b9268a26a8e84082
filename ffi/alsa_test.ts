import assert from "node:assert/strict";
import { AlsaError, AlsaPcm, SND_PCM_FORMAT_S16_LE, SND_PCM_STREAM_PLAYBACK } from "./alsa.ts";

const OPTIONS = {
  stream: SND_PCM_STREAM_PLAYBACK,
  format: SND_PCM_FORMAT_S16_LE,
  channels: 2,
  rate: 48000,
  latencyMicros: 50_000,
};

Deno.test("alsa: the null PCM opens non-blocking, reports descriptors, takes frames", () => {
  const pcm = AlsaPcm.open("null", OPTIONS);
  try {
    const descriptors = pcm.pollDescriptors();
    assert.ok(descriptors.length >= 1);
    assert.ok(descriptors.every((d) => d.fd >= 0));
    assert.ok(pcm.avail() > 0);
    assert.equal(pcm.write(new Uint8Array(4 * 480), 480), 480);
    pcm.drain();
  } finally {
    pcm.close();
  }
});

Deno.test("alsa: an unknown PCM is an error naming the call, the PCM and alsa-lib's reason", () => {
  assert.throws(
    () => AlsaPcm.open("no_such_pcm_here", OPTIONS),
    (error: unknown) =>
      error instanceof AlsaError && error.call === "snd_pcm_open" &&
      /no_such_pcm_here/.test(error.message) && error.code < 0,
  );
});
