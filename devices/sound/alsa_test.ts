// The alsa back-end through the real libasound.so.2: alsa-lib's `file` PCM
// (over its `null` PCM) records what the guest plays and plays what the
// guest records, configured by an asoundrc the test writes ($XDG_CONFIG_HOME/alsa/asoundrc).
// A pollable PCM, and one lost mid-stream, are tested in pipewire_test.ts: PipeWire's ALSA
// plugin, whose server that test stops and starts again.
import assert from "node:assert/strict";
import { setParamsRequest, SoundDriver, startSoundDaemon, statusOf, u32s } from "./testing.ts";

const OK = 0x8000;
const PERIOD = 4800; // 25 ms of 48 kHz stereo S16
const PARAMS = { bufferBytes: PERIOD * 4, periodBytes: PERIOD, channels: 2, format: 5, rate: 7 };

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 13 + seed * 101 + (i >> 9)) & 0xff);
}

Deno.test("sound alsa: the guest's samples reach an alsa-lib file PCM; capture reads one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sound-alsa-" });
  const captured = pattern(PERIOD * 8, 3);
  await Deno.writeFile(`${dir}/in.raw`, captured);
  // alsa.conf reads $XDG_CONFIG_HOME/alsa/asoundrc (HOME stays: Deno keeps its cache there).
  await Deno.mkdir(`${dir}/alsa`);
  await Deno.writeTextFile(
    `${dir}/alsa/asoundrc`,
    `# The file plugin also writes what it captures to \`file\`: each direction gets its own.
pcm.vhost_test {
  type asym
  playback.pcm {
    type file
    slave.pcm "null"
    file "${dir}/out.raw"
    format "raw"
  }
  capture.pcm {
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "${dir}/in.raw"
    format "raw"
  }
}
`,
  );
  const daemon = await startSoundDaemon(["--backend", "alsa", "--device", "vhost_test"], {
    dir,
    env: { XDG_CONFIG_HOME: dir },
  });
  const sent = Array.from({ length: 16 }, (_, i) => pattern(PERIOD, i));
  try {
    const driver = await SoundDriver.connect(daemon.socket);
    try {
      const pcm = (code: number, stream: number) => statusOf(driver.control(u32s(code, stream)));
      // Playback: 16 periods (400 ms).
      assert.equal(statusOf(driver.control(setParamsRequest(0, PARAMS))), OK);
      assert.equal(pcm(0x102, 0), OK);
      for (const data of sent) {
        driver.submit(2, { readable: [u32s(0), data], writable: [8], indirect: true });
      }
      const started = performance.now();
      assert.equal(pcm(0x104, 0), OK);
      const played = driver.collect(2, sent.length, 10_000);
      assert.equal(played.length, sent.length);
      assert.ok(played.every((u) => statusOf(u.data) === OK));
      const elapsed = performance.now() - started;
      assert.ok(elapsed > 300, `400 ms of audio returned in ${elapsed.toFixed(0)} ms`);
      assert.equal(pcm(0x105, 0), OK);
      assert.equal(pcm(0x103, 0), OK);

      // Capture: the file PCM's infile, through the guest's rx buffers.
      assert.equal(statusOf(driver.control(setParamsRequest(1, PARAMS))), OK);
      assert.equal(pcm(0x102, 1), OK);
      for (let i = 0; i < 4; i++) {
        driver.submit(3, { readable: [u32s(1)], writable: [PERIOD + 8], indirect: true });
      }
      assert.equal(pcm(0x104, 1), OK);
      const got = driver.collect(3, 4, 10_000);
      assert.equal(got.length, 4);
      const recorded = new Uint8Array(4 * PERIOD);
      got.forEach((u, i) => recorded.set(u.data.subarray(0, PERIOD), i * PERIOD));
      assertSameBytes(recorded, captured.subarray(0, 4 * PERIOD), "captured");
      assert.equal(pcm(0x105, 1), OK);
      assert.equal(pcm(0x103, 1), OK);
    } finally {
      driver.close();
    }
    await daemon.waitForLog("waiting for a front-end");
    const out = await Deno.readFile(`${dir}/out.raw`);
    const expected = new Uint8Array(sent.length * PERIOD);
    sent.forEach((data, i) => expected.set(data, i * PERIOD));
    assertSameBytes(out.subarray(0, expected.length), expected, "played");
  } catch (error) {
    console.error(daemon.log);
    throw error;
  } finally {
    const status = await daemon.stop();
    assert.equal(status.code, 0, daemon.log);
  }
});

/** Compares without a byte-by-byte diff (slow for large arrays); names the first difference. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const at = actual.findIndex((b, i) => b !== expected[i]);
  assert.equal(at, -1, `${what}: first difference at byte ${at}`);
}
