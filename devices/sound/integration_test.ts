// The real vhost-device-sound process driven by the TypeScript vhost-user
// front-end (frontend/): real socket, memfd guest RAM and eventfds.
import assert from "node:assert/strict";
import { encodeWavHeader, parseWav } from "./wav.ts";
import { SAMPLE_FORMATS } from "./pcm.ts";
import {
  setParamsRequest,
  type SoundDaemonProcess,
  SoundDriver,
  startSoundDaemon,
  statusOf,
  u32s,
} from "./testing.ts";

const OK = 0x8000;
const BAD_MSG = 0x8001;
const NOT_SUPP = 0x8002;
const IO_ERR = 0x8003;
const PCM_INFO = 0x100;
const SET_PARAMS = 0x101;
const PREPARE = 0x102;
const RELEASE = 0x103;
const START = 0x104;
const STOP = 0x105;
const S16 = 5;
const RATE_48000 = 7;
const TXQ = 2;
const RXQ = 3;
const EVENTQ = 1;
/** 25 ms of 48 kHz stereo S16. */
const PERIOD = 4800;
const STEREO_48K = {
  bufferBytes: PERIOD * 4,
  periodBytes: PERIOD,
  channels: 2,
  format: S16,
  rate: RATE_48000,
};

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 7 + (i >> 8)) & 0xff);
}

function pcm(driver: SoundDriver, code: number, streamId = 0): number {
  return statusOf(driver.control(u32s(code, streamId)));
}

async function withDaemon(
  args: string[],
  body: (daemon: SoundDaemonProcess) => Promise<void>,
  options: { dir?: string } = {},
): Promise<void> {
  const daemon = await startSoundDaemon(args, options);
  try {
    await body(daemon);
  } finally {
    const status = await daemon.stop();
    assert.equal(status.code, 0, daemon.log);
  }
}

Deno.test("sound: config space, item information, and every malformed control request refused", async () => {
  await withDaemon(["--backend", "null"], async (daemon) => {
    const driver = await SoundDriver.connect(daemon.socket);
    try {
      // §5.14.4: jacks 0, streams 2, chmaps 2 (one per direction), controls 0.
      const config = driver.frontend.getConfig(0, 16);
      assert.deepEqual(config, u32s(0, 2, 2, 0));

      // PCM_INFO: stream 0 output, stream 1 input; U8/S16/S24/S32; upstream's
      // rates plus 12000 and 24000; 1-6 channels; xrun and period events.
      const info = driver.control(u32s(PCM_INFO, 0, 2, 32), 4 + 64);
      assert.equal(statusOf(info), OK);
      const view = new DataView(info.buffer, info.byteOffset);
      for (const [i, direction] of [[0, 0], [1, 1]]) {
        const at = 4 + i * 32;
        assert.equal(view.getUint32(at + 4, true), (1 << 4) | (1 << 3), "features");
        assert.equal(
          view.getBigUint64(at + 8, true),
          (1n << 4n) | (1n << 5n) | (1n << 15n) | (1n << 17n),
        );
        assert.equal(view.getBigUint64(at + 16, true), 0b1100_0000_1111_1110n);
        assert.deepEqual([...info.subarray(at + 24, at + 32)], [direction, 1, 6, 0, 0, 0, 0, 0]);
      }
      // A larger item size is zero-padded, a smaller one truncated (§5.14.6.1).
      const padded = driver.control(u32s(PCM_INFO, 1, 1, 40), 44);
      assert.equal(statusOf(padded), OK);
      assert.deepEqual([...padded.subarray(36, 44)], [0, 0, 0, 0, 0, 0, 0, 0]);
      const chmaps = driver.control(u32s(0x200, 0, 2, 24), 52);
      assert.equal(statusOf(chmaps), OK);
      assert.deepEqual([...chmaps.subarray(8, 12)], [0, 2, 3, 4]); // output, FL FR
      assert.deepEqual([...chmaps.subarray(32, 36)], [1, 2, 3, 4]); // input, FL FR
      assert.equal(statusOf(driver.control(u32s(1, 0, 0, 24))), OK); // no jacks, none asked

      const refused: [Uint8Array, number, number, string][] = [
        [u32s(1, 0, 1, 24), 28, BAD_MSG, "JACK_INFO of a jack that does not exist"],
        [u32s(2, 0, 0, 0), 4, BAD_MSG, "JACK_REMAP of a jack that does not exist"],
        [u32s(PCM_INFO, 1, 2, 32), 68, BAD_MSG, "PCM_INFO past the last stream"],
        [u32s(PCM_INFO, 0xffff_ffff, 2, 32), 68, BAD_MSG, "start id wraps"],
        [u32s(PCM_INFO, 0, 1, 0xffff_ffff), 36, BAD_MSG, "hostile item size"],
        [u32s(PCM_INFO, 0, 2, 32), 36, BAD_MSG, "response too small for the items"],
        [u32s(PCM_INFO, 0, 1), 36, BAD_MSG, "short query"],
        [new Uint8Array([1, 1]), 4, BAD_MSG, "short header"],
        [u32s(0x300, 0, 1, 32), 4, NOT_SUPP, "control elements are not offered"],
        [u32s(0xdead), 4, NOT_SUPP, "unknown code"],
        [u32s(PREPARE), 4, BAD_MSG, "PCM request without a stream id"],
        [u32s(PREPARE, 2), 4, BAD_MSG, "stream id out of range"],
        [u32s(START, 0xffff_ffff), 4, BAD_MSG, "stream id out of range"],
        [setParamsRequest(7, STEREO_48K), 4, BAD_MSG, "SET_PARAMS stream id out of range"],
        [setParamsRequest(0, { ...STEREO_48K, format: 6 }), 4, NOT_SUPP, "U16 not offered"],
        [setParamsRequest(0, { ...STEREO_48K, format: 200 }), 4, NOT_SUPP, "undefined format"],
        [setParamsRequest(0, { ...STEREO_48K, rate: 10 }), 4, NOT_SUPP, "96 kHz not offered"],
        [setParamsRequest(0, { ...STEREO_48K, channels: 0 }), 4, NOT_SUPP, "0 channels"],
        [setParamsRequest(0, { ...STEREO_48K, channels: 7 }), 4, NOT_SUPP, "7 channels"],
        [setParamsRequest(0, { ...STEREO_48K, features: 1 }), 4, NOT_SUPP, "SHMEM_HOST"],
        [setParamsRequest(0, { ...STEREO_48K, periodBytes: 0 }), 4, BAD_MSG, "period 0"],
        [
          setParamsRequest(0, { ...STEREO_48K, bufferBytes: PERIOD * 4 + 1 }),
          4,
          BAD_MSG,
          "buffer not a whole number of periods",
        ],
        [
          setParamsRequest(0, { ...STEREO_48K, periodBytes: 4798, bufferBytes: 4798 * 2 }),
          4,
          BAD_MSG,
          "period not a whole number of frames",
        ],
        [setParamsRequest(0, STEREO_48K).subarray(0, 20), 4, BAD_MSG, "short SET_PARAMS"],
      ];
      for (const [request, size, status, why] of refused) {
        assert.equal(statusOf(driver.control(request, size)), status, why);
      }
      // 12 kHz and 24 kHz, defined by the spec but left out upstream, are accepted.
      for (const rate of [14, 15]) {
        assert.equal(statusOf(driver.control(setParamsRequest(0, { ...STEREO_48K, rate }))), OK);
      }
      // No room for a status: nothing written, and the device keeps serving.
      driver.submit(0, { readable: [u32s(PREPARE, 0)], writable: [] });
      assert.equal(driver.collect(0, 1)[0].length, 0);
      driver.submit(0, { readable: [u32s(PREPARE, 0)], writable: [2] });
      assert.equal(driver.collect(0, 1)[0].length, 0);
      assert.equal(pcm(driver, PREPARE), OK);
    } finally {
      driver.close();
    }
    await daemon.waitForLog("stream 2: there are 2");
  });
});

Deno.test("sound: the PCM lifecycle allows exactly the spec's transitions (§5.14.6.6.1)", async () => {
  await withDaemon(["--backend", "null"], async (daemon) => {
    const driver = await SoundDriver.connect(daemon.socket);
    try {
      type State = "set-parameters" | "prepare" | "start" | "stop" | "release";
      const paths: Record<State, number[]> = {
        "set-parameters": [],
        prepare: [PREPARE],
        start: [PREPARE, START],
        stop: [PREPARE, START, STOP],
        release: [PREPARE, RELEASE],
      };
      const back: Record<State, number[]> = {
        "set-parameters": [],
        prepare: [],
        start: [STOP, RELEASE],
        stop: [RELEASE],
        release: [],
      };
      const allowed: Record<State, number[]> = {
        "set-parameters": [SET_PARAMS, PREPARE],
        prepare: [SET_PARAMS, PREPARE, START, RELEASE],
        start: [STOP],
        stop: [START, RELEASE],
        release: [SET_PARAMS, PREPARE],
      };
      const after: Record<number, State> = {
        [SET_PARAMS]: "set-parameters",
        [PREPARE]: "prepare",
        [START]: "start",
        [STOP]: "stop",
        [RELEASE]: "release",
      };
      const send = (code: number, streamId: number): number =>
        code === SET_PARAMS
          ? statusOf(driver.control(setParamsRequest(streamId, STEREO_48K)))
          : pcm(driver, code, streamId);
      let checked = 0;
      for (const streamId of [0, 1]) {
        for (const state of Object.keys(paths) as State[]) {
          for (const code of [SET_PARAMS, PREPARE, START, STOP, RELEASE]) {
            // From a known start: parameters set.
            assert.equal(send(SET_PARAMS, streamId), OK);
            for (const step of paths[state]) assert.equal(send(step, streamId), OK);
            const ok = allowed[state].includes(code);
            assert.equal(
              send(code, streamId),
              ok ? OK : BAD_MSG,
              `stream ${streamId}: 0x${code.toString(16)} in ${state}`,
            );
            const now = ok ? after[code] : state;
            for (const step of back[now]) assert.equal(send(step, streamId), OK);
            checked++;
          }
        }
      }
      assert.equal(checked, 50);
    } finally {
      driver.close();
    }
    await daemon.waitForLog("(§5.14.6.6.1)");
  });
});

Deno.test("sound: tx messages — refused when malformed, paced at the stream rate, recorded sample-exact, returned on RELEASE", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sound-" });
  await withDaemon(["--backend", "file", "--output", "{dir}/out.wav"], async (daemon) => {
    const driver = await SoundDriver.connect(daemon.socket);
    try {
      // Malformed messages get a status at once; the stream is not yet prepared.
      const xfer = (streamId: number, data: Uint8Array) => ({
        readable: [u32s(streamId), data],
        writable: [8],
        indirect: true,
      });
      driver.submit(TXQ, xfer(0, new Uint8Array(16)));
      let [used] = driver.collect(TXQ, 1);
      assert.equal(statusOf(used.data), IO_ERR, "not prepared");
      assert.equal(statusOf(driver.control(setParamsRequest(0, STEREO_48K))), OK);
      assert.equal(pcm(driver, PREPARE), OK);
      driver.submit(TXQ, xfer(1, new Uint8Array(16)));
      [used] = driver.collect(TXQ, 1);
      assert.equal(statusOf(used.data), BAD_MSG, "stream 1 is an input");
      driver.submit(TXQ, xfer(99, new Uint8Array(16)));
      [used] = driver.collect(TXQ, 1);
      assert.equal(statusOf(used.data), BAD_MSG, "no stream 99");
      driver.submit(TXQ, { readable: [new Uint8Array(2)], writable: [8] });
      [used] = driver.collect(TXQ, 1);
      assert.equal(statusOf(used.data), BAD_MSG, "short header");
      driver.submit(TXQ, { readable: [u32s(0), new Uint8Array(4)], writable: [4] });
      [used] = driver.collect(TXQ, 1);
      assert.equal(used.length, 0, "no room for the status");

      // One second of audio, pre-buffered in PREPARE, then started.
      const periods = 40;
      const sent: Uint8Array[] = [];
      for (let i = 0; i < periods; i++) {
        sent.push(pattern(PERIOD, i));
        driver.submit(TXQ, xfer(0, sent[i]));
      }
      assert.equal(driver.queues[TXQ].takeUsed().length, 0, "nothing played before START");
      const started = performance.now();
      assert.equal(pcm(driver, START), OK);
      const played = driver.collect(TXQ, periods, 10_000);
      const elapsed = performance.now() - started;
      assert.equal(played.length, periods);
      for (const u of played) {
        assert.equal(u.length, 8);
        assert.equal(statusOf(u.data), OK);
      }
      // latency_bytes: what was still queued behind each message.
      const latency = (u: { data: Uint8Array }) =>
        new DataView(u.data.buffer, u.data.byteOffset).getUint32(4, true);
      assert.equal(latency(played[0]), (periods - 1) * PERIOD);
      assert.equal(latency(played[periods - 1]), 0);
      // A second of audio takes a second (wide margin for a loaded machine).
      assert.ok(elapsed > 900 && elapsed < 2500, `1 s of audio took ${elapsed.toFixed(0)} ms`);

      // Queued while stopped: held, then returned by RELEASE before its own reply.
      assert.equal(pcm(driver, STOP), OK);
      driver.submit(TXQ, xfer(0, pattern(PERIOD, 99)), xfer(0, pattern(PERIOD, 100)));
      assert.equal(driver.queues[TXQ].takeUsed().length, 0);
      assert.equal(pcm(driver, RELEASE), OK);
      const released = driver.queues[TXQ].takeUsed();
      assert.equal(released.length, 2, "RELEASE completes pending messages first");

      const wav = await Deno.readFile(`${daemon.dir}/out.wav`);
      const layout = parseWav(wav, wav.length);
      assert.equal(layout.rate, 48000);
      assert.equal(layout.channels, 2);
      assert.equal(layout.format, SAMPLE_FORMATS[1]);
      assert.equal(layout.dataBytes, periods * PERIOD);
      const expected = new Uint8Array(periods * PERIOD);
      sent.forEach((s, i) => expected.set(s, i * PERIOD));
      assertSameBytes(wav.subarray(layout.dataOffset), expected, "the WAV file's audio");
    } finally {
      driver.close();
    }
  }, { dir });
});

Deno.test("sound: rx messages carry the --input file sample-exact, at the stream rate, then silence", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sound-" });
  const frames = 4800 * 3; // 300 ms of stereo 48 kHz S16
  const audio = pattern(frames * 4, 5);
  const format = { channels: 2, rate: 48000, format: SAMPLE_FORMATS[1] };
  const file = new Uint8Array(68 + audio.length);
  file.set(encodeWavHeader(format, audio.length));
  file.set(audio, 68);
  await Deno.writeFile(`${dir}/in.wav`, file);
  await withDaemon(["--backend", "file", "--input", "{dir}/in.wav"], async (daemon) => {
    const driver = await SoundDriver.connect(daemon.socket);
    try {
      // The input stream offers exactly the file's format.
      const info = driver.control(u32s(PCM_INFO, 1, 1, 32), 36);
      const view = new DataView(info.buffer, info.byteOffset);
      assert.equal(view.getBigUint64(12, true), 1n << 5n);
      assert.equal(view.getBigUint64(20, true), 1n << 7n);
      assert.deepEqual([...info.subarray(29, 31)], [2, 2]);
      assert.equal(
        statusOf(driver.control(setParamsRequest(1, { ...STEREO_48K, channels: 1 }))),
        NOT_SUPP,
      );
      assert.equal(statusOf(driver.control(setParamsRequest(1, STEREO_48K))), OK);
      assert.equal(pcm(driver, PREPARE, 1), OK);
      const buffers = 16; // 400 ms: the file, then 100 ms of silence
      const rx = { readable: [u32s(1)], writable: [PERIOD + 8], indirect: true };
      for (let i = 0; i < buffers; i++) driver.submit(RXQ, rx);
      const started = performance.now();
      assert.equal(pcm(driver, START, 1), OK);
      const got = driver.collect(RXQ, buffers, 10_000);
      const elapsed = performance.now() - started;
      assert.equal(got.length, buffers);
      assert.ok(elapsed > 350 && elapsed < 1500, `400 ms of capture took ${elapsed.toFixed(0)} ms`);
      const captured = new Uint8Array(buffers * PERIOD);
      got.forEach((u, i) => {
        assert.equal(u.length, PERIOD + 8, "frames plus status");
        assert.equal(statusOf(u.data.subarray(PERIOD)), OK);
        captured.set(u.data.subarray(0, PERIOD), i * PERIOD);
      });
      assertSameBytes(captured.subarray(0, audio.length), audio, "the captured audio");
      assert.ok(captured.subarray(audio.length).every((b) => b === 0), "silence after the end");
      assert.equal(pcm(driver, STOP, 1), OK);
      assert.equal(pcm(driver, RELEASE, 1), OK);
      // A hostile rx message: readable bytes beyond the header.
      driver.submit(RXQ, { readable: [u32s(1), new Uint8Array(4)], writable: [8] });
      const [bad] = driver.collect(RXQ, 1);
      assert.equal(bad.length, 8);
      assert.equal(statusOf(bad.data), BAD_MSG);
    } finally {
      driver.close();
    }
  }, { dir });
});

Deno.test("sound: the event queue carries PCM_XRUN and PCM_PERIOD_ELAPSED when selected; a reconnect serves afresh", async () => {
  await withDaemon(["--backend", "null"], async (daemon) => {
    let driver = await SoundDriver.connect(daemon.socket);
    try {
      for (let i = 0; i < 8; i++) driver.submit(EVENTQ, { readable: [], writable: [8] });
      // EVT_XRUNS | EVT_SHMEM_PERIODS; 4 periods of audio, then nothing.
      const params = setParamsRequest(0, { ...STEREO_48K, features: (1 << 4) | (1 << 3) });
      assert.equal(statusOf(driver.control(params)), OK);
      assert.equal(pcm(driver, PREPARE), OK);
      for (let i = 0; i < 4; i++) {
        driver.submit(TXQ, {
          readable: [u32s(0), pattern(PERIOD, i)],
          writable: [8],
          indirect: true,
        });
      }
      assert.equal(pcm(driver, START), OK);
      assert.equal(driver.collect(TXQ, 4).length, 4);
      const events = driver.collect(EVENTQ, 5, 5000);
      const decoded = events.map((e) => [...u32sOf(e.data)]);
      assert.deepEqual(decoded, [
        [0x1100, 0],
        [0x1100, 0],
        [0x1100, 0],
        [0x1100, 0],
        [0x1101, 0],
      ]);
      assert.equal(pcm(driver, STOP), OK);
      assert.equal(pcm(driver, RELEASE), OK);
      // Disconnect mid-stream: the daemon serves the next front-end.
      assert.equal(pcm(driver, PREPARE), OK);
      driver.submit(TXQ, {
        readable: [u32s(0), pattern(PERIOD, 1)],
        writable: [8],
        indirect: true,
      });
      assert.equal(pcm(driver, START), OK);
      driver.close();
      driver = await SoundDriver.connect(daemon.socket);
      assert.equal(pcm(driver, START), BAD_MSG, "a new connection starts unprepared");
      assert.equal(pcm(driver, PREPARE), OK);
    } finally {
      driver.close();
    }
  });
});

/** Compares byte arrays without assert's diff (slow for large arrays); names the first difference. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const at = actual.findIndex((b, i) => b !== expected[i]);
  assert.equal(at, -1, `${what}: first difference at byte ${at}`);
}

function u32sOf(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.slice(0, 8).buffer);
}

Deno.test("sound: a new memory table while periods are in flight: they complete into the guest's buffers", async () => {
  await withDaemon(["--backend", "null"], async (daemon) => {
    const driver = await SoundDriver.connect(daemon.socket);
    try {
      const xfer = (data: Uint8Array) => ({ readable: [u32s(0), data], writable: [8] });
      assert.equal(statusOf(driver.control(setParamsRequest(0, STEREO_48K))), OK);
      assert.equal(pcm(driver, PREPARE), OK);
      for (let i = 0; i < 8; i++) driver.submit(TXQ, xfer(pattern(PERIOD, i)));
      assert.equal(pcm(driver, START), OK);
      assert.equal(driver.collect(TXQ, 1).length, 1);
      // QEMU sends a whole table again when guest memory changes; the periods
      // the device is pacing still point into the mappings of the old one.
      driver.frontend.setMemTable(driver.memory.regions());
      const rest = driver.collect(TXQ, 7, 10_000);
      assert.equal(rest.length, 7, "every period came back");
      for (const u of rest) assert.equal(statusOf(u.data), OK);
      assert.equal(pcm(driver, STOP), OK);
    } finally {
      driver.close();
    }
  });
});
