/**
 * PCM streams as the device offers them (VIRTIO 1.2 §5.14.6.6): formats,
 * rates and channel counts, the parameters a driver selects, and the
 * command lifecycle every stream follows.
 *
 * @module
 */

import {
  PCM_RATES,
  type SetParams,
  type Status,
  VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_SHMEM_GUEST,
  VIRTIO_SND_PCM_F_SHMEM_HOST,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_U8,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_NOT_SUPP,
} from "./spec.ts";

/** A sample format the device can carry: its virtio code and sizes. */
export interface SampleFormat {
  /** VIRTIO_SND_PCM_FMT_*. */
  readonly code: number;
  /** Short name, e.g. `S16`. */
  readonly name: string;
  /** Bytes per sample in memory. */
  readonly bytes: number;
  /** Significant bits. */
  readonly bits: number;
  /** Unsigned (U8). */
  readonly unsigned: boolean;
}

/** Upstream's formats: U8, S16, S24 (24 in 32 bits), S32; all little-endian. */
export const SAMPLE_FORMATS: readonly SampleFormat[] = [
  { code: VIRTIO_SND_PCM_FMT_U8, name: "U8", bytes: 1, bits: 8, unsigned: true },
  { code: VIRTIO_SND_PCM_FMT_S16, name: "S16", bytes: 2, bits: 16, unsigned: false },
  { code: VIRTIO_SND_PCM_FMT_S24, name: "S24", bytes: 4, bits: 24, unsigned: false },
  { code: VIRTIO_SND_PCM_FMT_S32, name: "S32", bytes: 4, bits: 32, unsigned: false },
];

/**
 * Upstream's rates (8000 … 48000) plus 12000 and 24000, which upstream
 * defines but leaves out of its offer: indices into {@link PCM_RATES}.
 */
export const OFFERED_RATE_INDICES: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 14, 15];

/** The offered rates in Hz. */
export const PCM_RATES_OFFERED: readonly number[] = OFFERED_RATE_INDICES.map((i) => PCM_RATES[i]);

/** The VIRTIO_SND_PCM_RATE_* index of `hz`, or -1 if the spec has none. */
export function rateIndexOf(hz: number): number {
  return PCM_RATES.indexOf(hz);
}

/** Upstream's channel range. */
export const CHANNELS_MIN = 1;
/** Upstream's channel range. */
export const CHANNELS_MAX = 6;

/**
 * Stream features offered: xrun notifications, and elapsed-period
 * notifications (which the spec ties to the shared-memory transport; they
 * are sent only to a driver that selects them).
 */
export const OFFERED_FEATURES: number = (1 << VIRTIO_SND_PCM_F_EVT_XRUNS) |
  (1 << VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS);

/** What a stream can be set to: the device's offer, possibly narrowed (an input file's format). */
export interface StreamCapabilities {
  /** Formats by virtio code. */
  readonly formats: readonly number[];
  /** Rates by VIRTIO_SND_PCM_RATE_* index. */
  readonly rateIndices: readonly number[];
  /** Fewest channels. */
  readonly channelsMin: number;
  /** Most channels. */
  readonly channelsMax: number;
}

/** Everything upstream offers, plus the two forgotten rates. */
export const DEFAULT_CAPABILITIES: StreamCapabilities = {
  formats: SAMPLE_FORMATS.map((f) => f.code),
  rateIndices: OFFERED_RATE_INDICES,
  channelsMin: CHANNELS_MIN,
  channelsMax: CHANNELS_MAX,
};

/** Parameters a driver set on a stream, resolved. */
export interface PcmParams {
  /** Channels per frame. */
  readonly channels: number;
  /** The sample format. */
  readonly format: SampleFormat;
  /** Frames per second. */
  readonly rate: number;
  /** The driver's buffer. */
  readonly bufferBytes: number;
  /** The driver's period. */
  readonly periodBytes: number;
  /** Selected VIRTIO_SND_PCM_F_* bits. */
  readonly features: number;
}

/** Bytes per frame. */
export function frameBytes(params: PcmParams): number {
  return params.channels * params.format.bytes;
}

/** Bytes per second of audio. */
export function bytesPerSecond(params: PcmParams): number {
  return params.rate * frameBytes(params);
}

/** Parameters until the driver sets its own (upstream's defaults: 48 kHz stereo S16). */
export const DEFAULT_PARAMS: PcmParams = {
  channels: 2,
  format: SAMPLE_FORMATS[1],
  rate: 48000,
  bufferBytes: 8192,
  periodBytes: 4096,
  features: 0,
};

/** The sample format with virtio code `code`, if the device carries it. */
export function sampleFormat(code: number): SampleFormat | undefined {
  return SAMPLE_FORMATS.find((f) => f.code === code);
}

/**
 * Checks SET_PARAMS against what the stream offers (§5.14.6.6.3): sizes
 * that break the driver's own rules are BAD_MSG, choices the stream does
 * not offer NOT_SUPP.
 */
export function resolveParams(
  request: SetParams,
  capabilities: StreamCapabilities,
): PcmParams | { status: Status; reason: string } {
  const { bufferBytes, periodBytes, features, channels } = request;
  if (periodBytes === 0 || bufferBytes === 0 || bufferBytes % periodBytes !== 0) {
    return {
      status: VIRTIO_SND_S_BAD_MSG,
      reason: `buffer of ${bufferBytes} bytes is not a whole number of ${periodBytes}-byte periods`,
    };
  }
  if (features & ~OFFERED_FEATURES) {
    const shmem = (1 << VIRTIO_SND_PCM_F_SHMEM_HOST) | (1 << VIRTIO_SND_PCM_F_SHMEM_GUEST);
    return {
      status: VIRTIO_SND_S_NOT_SUPP,
      reason: `features 0x${features.toString(16)} not offered${
        features & shmem ? " (shared memory is a placeholder)" : ""
      }`,
    };
  }
  const format = capabilities.formats.includes(request.format)
    ? sampleFormat(request.format)
    : undefined;
  if (!format) {
    return { status: VIRTIO_SND_S_NOT_SUPP, reason: `format ${request.format} not offered` };
  }
  if (!capabilities.rateIndices.includes(request.rate)) {
    return { status: VIRTIO_SND_S_NOT_SUPP, reason: `rate index ${request.rate} not offered` };
  }
  if (channels < capabilities.channelsMin || channels > capabilities.channelsMax) {
    return {
      status: VIRTIO_SND_S_NOT_SUPP,
      reason:
        `${channels} channels outside ${capabilities.channelsMin}..${capabilities.channelsMax}`,
    };
  }
  const params = {
    channels,
    format,
    rate: PCM_RATES[request.rate],
    bufferBytes,
    periodBytes,
    features,
  };
  if (periodBytes % frameBytes(params) !== 0) {
    return {
      status: VIRTIO_SND_S_BAD_MSG,
      reason: `period of ${periodBytes} bytes is not a whole number of ${
        frameBytes(params)
      }-byte frames`,
    };
  }
  return params;
}

/** §5.14.6.6.1: the states of the PCM command lifecycle, named by the command that entered them. */
export type PcmState = "set-parameters" | "prepare" | "start" | "stop" | "release";

/** The states each command may be sent from (§5.14.6.6.1, "possible valid transitions"). */
const ALLOWED_FROM: ReadonlyMap<number, readonly PcmState[]> = new Map([
  [VIRTIO_SND_R_PCM_SET_PARAMS, ["set-parameters", "prepare", "release"]],
  [VIRTIO_SND_R_PCM_PREPARE, ["set-parameters", "prepare", "release"]],
  [VIRTIO_SND_R_PCM_START, ["prepare", "stop"]],
  [VIRTIO_SND_R_PCM_STOP, ["start"]],
  [VIRTIO_SND_R_PCM_RELEASE, ["prepare", "stop"]],
]);

/** The state each command leads to. */
const TARGET: ReadonlyMap<number, PcmState> = new Map([
  [VIRTIO_SND_R_PCM_SET_PARAMS, "set-parameters"],
  [VIRTIO_SND_R_PCM_PREPARE, "prepare"],
  [VIRTIO_SND_R_PCM_START, "start"],
  [VIRTIO_SND_R_PCM_STOP, "stop"],
  [VIRTIO_SND_R_PCM_RELEASE, "release"],
]);

/**
 * The state `command` leads to from `state`, or `null` if the lifecycle
 * does not allow it there.
 */
export function transition(state: PcmState, command: number): PcmState | null {
  const allowed = ALLOWED_FROM.get(command);
  if (!allowed || !allowed.includes(state)) return null;
  return TARGET.get(command) ?? null;
}

/** A command's name, for log lines. */
export function commandName(command: number): string {
  switch (command) {
    case VIRTIO_SND_R_PCM_SET_PARAMS:
      return "SET_PARAMS";
    case VIRTIO_SND_R_PCM_PREPARE:
      return "PREPARE";
    case VIRTIO_SND_R_PCM_START:
      return "START";
    case VIRTIO_SND_R_PCM_STOP:
      return "STOP";
    case VIRTIO_SND_R_PCM_RELEASE:
      return "RELEASE";
    default:
      return `0x${command.toString(16)}`;
  }
}
