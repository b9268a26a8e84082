// Pure modules of the sound device: wire format, PCM rules, WAV files, CLI.
import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../../core/cli.ts";
import { SOUND_COMMAND, soundConfig } from "./config.ts";
import {
  DEFAULT_CAPABILITIES,
  PCM_RATES_OFFERED,
  resolveParams,
  SAMPLE_FORMATS,
  transition,
} from "./pcm.ts";
import {
  decodeControlRequest,
  encodeChmapInfo,
  encodePcmInfo,
  encodePcmStatus,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_NOT_SUPP,
} from "./spec.ts";
import { encodeWavHeader, parseWav, WAV_HEADER_SIZE, WavError } from "./wav.ts";

Deno.test("spec: structures have the spec's sizes; requests decode once, short ones are BAD_MSG", () => {
  assert.equal(
    encodePcmInfo({
      hdaFnNid: 0,
      features: 0,
      formats: 0n,
      rates: 0n,
      direction: 0,
      channelsMin: 1,
      channelsMax: 2,
    }).length,
    32,
  );
  assert.equal(encodeChmapInfo({ hdaFnNid: 0, direction: 1, positions: [3, 4] }).length, 24);
  assert.deepEqual([...encodePcmStatus(0x8000, 2 ** 40)], [0, 0x80, 0, 0, 255, 255, 255, 255]);
  assert.deepEqual(decodeControlRequest(new Uint8Array(3)).kind, "bad");
  const prepare = new Uint8Array([2, 1, 0, 0, 1, 0, 0, 0]);
  assert.deepEqual(decodeControlRequest(prepare), {
    kind: "pcm",
    code: VIRTIO_SND_R_PCM_PREPARE,
    streamId: 1,
  });
  const short = decodeControlRequest(prepare.subarray(0, 6));
  assert.equal(short.kind === "bad" && short.status, VIRTIO_SND_S_BAD_MSG);
  const unknown = decodeControlRequest(new Uint8Array([0, 3, 0, 0]));
  assert.equal(unknown.kind === "bad" && unknown.status, VIRTIO_SND_S_NOT_SUPP);
});

Deno.test("pcm: the lifecycle table of §5.14.6.6.1", () => {
  const commands = [
    VIRTIO_SND_R_PCM_SET_PARAMS,
    VIRTIO_SND_R_PCM_PREPARE,
    VIRTIO_SND_R_PCM_START,
    VIRTIO_SND_R_PCM_STOP,
    VIRTIO_SND_R_PCM_RELEASE,
  ];
  const table = (["set-parameters", "prepare", "start", "stop", "release"] as const).map((s) =>
    commands.map((c) => transition(s, c) ?? "-")
  );
  assert.deepEqual(table, [
    ["set-parameters", "prepare", "-", "-", "-"],
    ["set-parameters", "prepare", "start", "-", "release"],
    ["-", "-", "-", "stop", "-"],
    ["-", "-", "start", "-", "release"],
    ["set-parameters", "prepare", "-", "-", "-"],
  ]);
  assert.equal(transition("start", 0x9999), null);
});

Deno.test("pcm: SET_PARAMS is checked against the offer", () => {
  const base = {
    streamId: 0,
    bufferBytes: 8,
    periodBytes: 4,
    features: 0,
    channels: 2,
    format: 5,
    rate: 7,
  };
  const ok = resolveParams(base, DEFAULT_CAPABILITIES);
  assert.ok(!("status" in ok));
  assert.equal(ok.rate, 48000);
  assert.deepEqual(PCM_RATES_OFFERED, [
    8000,
    11025,
    16000,
    22050,
    32000,
    44100,
    48000,
    12000,
    24000,
  ]);
  const status = (p: Partial<typeof base>) => {
    const r = resolveParams({ ...base, ...p }, DEFAULT_CAPABILITIES);
    return "status" in r ? r.status : "ok";
  };
  assert.equal(status({ periodBytes: 3, bufferBytes: 9 }), VIRTIO_SND_S_BAD_MSG);
  assert.equal(status({ features: 1 << 2 }), VIRTIO_SND_S_NOT_SUPP);
  assert.equal(status({ rate: 0 }), VIRTIO_SND_S_NOT_SUPP);
  assert.equal(status({ rate: 255 }), VIRTIO_SND_S_NOT_SUPP);
  assert.equal(status({ format: 1 }), VIRTIO_SND_S_NOT_SUPP);
  assert.equal(status({ rate: 14, format: 4, channels: 1, periodBytes: 1, bufferBytes: 2 }), "ok");
});

Deno.test("wav: headers round-trip for every format; unusable files are named", () => {
  for (const format of SAMPLE_FORMATS) {
    const header = encodeWavHeader({ channels: 3, rate: 44100, format }, 1200);
    assert.equal(header.length, WAV_HEADER_SIZE);
    const file = new Uint8Array(WAV_HEADER_SIZE + 1200);
    file.set(header);
    const layout = parseWav(file, file.length);
    assert.deepEqual(layout, {
      channels: 3,
      rate: 44100,
      format,
      dataOffset: WAV_HEADER_SIZE,
      dataBytes: 1200,
    });
  }
  // A plain 16-byte PCM fmt chunk, data clamped to the file.
  const plain = new Uint8Array(44 + 10);
  const v = new DataView(plain.buffer);
  plain.set(new TextEncoder().encode("RIFF\0\0\0\0WAVEfmt "));
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, 1, true);
  v.setUint32(24, 8000, true);
  v.setUint16(34, 16, true);
  plain.set(new TextEncoder().encode("data"), 36);
  v.setUint32(40, 1000, true);
  assert.equal(parseWav(plain, plain.length).dataBytes, 10);
  v.setUint16(34, 24, true);
  assert.throws(() => parseWav(plain, plain.length), WavError);
  v.setUint16(20, 3, true);
  assert.throws(() => parseWav(plain, plain.length), /not integer PCM/);
  assert.throws(() => parseWav(new Uint8Array(8), 8), /not a RIFF/);
});

Deno.test("config: upstream's flags, exactly one socket, file options only with --backend file", () => {
  const parse = (...args: string[]) => {
    const parsed = parseCommandLine(args, SOUND_COMMAND);
    if (typeof parsed === "string") throw new Error(parsed);
    return soundConfig(parsed);
  };
  const config = parse("--socket", "/tmp/s", "--backend", "null");
  assert.deepEqual(config.address, { path: "/tmp/s" });
  assert.equal(config.device, "default");
  assert.deepEqual(parse("--socket-fd", "3", "--backend", "alsa").address, { fd: 3 });
  assert.equal(parse("--socket", "s", "--backend", "file", "--input", "a.wav").input, "a.wav");
  const bad = [
    ["--backend", "null"],
    ["--socket", "s"],
    ["--socket", "s", "--socket-fd", "3", "--backend", "null"],
    ["--socket", "s", "--backend", "gstreamer"],
    ["--socket", "s", "--backend", "file"],
    ["--socket", "s", "--backend", "null", "--output", "o.wav"],
    ["--socket", "s", "--backend", "null", "--log-level", "loud"],
  ];
  for (const args of bad) assert.throws(() => parse(...args), UsageError, args.join(" "));
});
