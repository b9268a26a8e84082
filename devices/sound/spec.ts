/**
 * The virtio sound device's wire format (VIRTIO 1.2 §5.14): request codes,
 * status codes, PCM formats, rates, features and the layouts of the
 * structures the driver and device exchange, decoded once at the edge into
 * typed values.
 *
 * @module
 */

/** §5.14.1: device ID. */
export const VIRTIO_ID_SOUND = 25;

/** §5.14.2: the virtqueues. */
export const CONTROLQ = 0;
/** §5.14.2: device-to-driver notifications. */
export const EVENTQ = 1;
/** §5.14.2: PCM frames of output streams. */
export const TXQ = 2;
/** §5.14.2: PCM frames of input streams. */
export const RXQ = 3;

/** §5.14.6: control request types, event types and status codes. */
export const VIRTIO_SND_R_JACK_INFO = 1;
/** §5.14.6.4.2 */
export const VIRTIO_SND_R_JACK_REMAP = 2;
/** §5.14.6.6.2 */
export const VIRTIO_SND_R_PCM_INFO = 0x0100;
/** §5.14.6.6.3 */
export const VIRTIO_SND_R_PCM_SET_PARAMS = 0x0101;
/** §5.14.6.6.4 */
export const VIRTIO_SND_R_PCM_PREPARE = 0x0102;
/** §5.14.6.6.5 */
export const VIRTIO_SND_R_PCM_RELEASE = 0x0103;
/** §5.14.6.6.6 */
export const VIRTIO_SND_R_PCM_START = 0x0104;
/** §5.14.6.6.7 */
export const VIRTIO_SND_R_PCM_STOP = 0x0105;
/** §5.14.6.9.1 */
export const VIRTIO_SND_R_CHMAP_INFO = 0x0200;
/** §5.14.6.7: a hardware period elapsed. */
export const VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED = 0x1100;
/** §5.14.6.7: an output underflow or input overflow. */
export const VIRTIO_SND_EVT_PCM_XRUN = 0x1101;
/** §5.14.6: success. */
export const VIRTIO_SND_S_OK = 0x8000;
/** §5.14.6: a malformed message or invalid parameters. */
export const VIRTIO_SND_S_BAD_MSG = 0x8001;
/** §5.14.6: operation or parameters not supported. */
export const VIRTIO_SND_S_NOT_SUPP = 0x8002;
/** §5.14.6: an I/O error. */
export const VIRTIO_SND_S_IO_ERR = 0x8003;

/** A status code of §5.14.6. */
export type Status =
  | typeof VIRTIO_SND_S_OK
  | typeof VIRTIO_SND_S_BAD_MSG
  | typeof VIRTIO_SND_S_NOT_SUPP
  | typeof VIRTIO_SND_S_IO_ERR;

/** §5.14.6: data flow directions. */
export const VIRTIO_SND_D_OUTPUT = 0;
/** §5.14.6: data flow directions. */
export const VIRTIO_SND_D_INPUT = 1;

/** §5.14.6.6.2: PCM stream feature bits. */
export const VIRTIO_SND_PCM_F_SHMEM_HOST = 0;
/** §5.14.6.6.2 */
export const VIRTIO_SND_PCM_F_SHMEM_GUEST = 1;
/** §5.14.6.6.2 */
export const VIRTIO_SND_PCM_F_MSG_POLLING = 2;
/** §5.14.6.6.2 */
export const VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS = 3;
/** §5.14.6.6.2 */
export const VIRTIO_SND_PCM_F_EVT_XRUNS = 4;

/** §5.14.6.6.2: the sample formats this device offers (upstream's four). */
export const VIRTIO_SND_PCM_FMT_U8 = 4;
/** §5.14.6.6.2 */
export const VIRTIO_SND_PCM_FMT_S16 = 5;
/** §5.14.6.6.2: 24 bits in 32. */
export const VIRTIO_SND_PCM_FMT_S24 = 15;
/** §5.14.6.6.2 */
export const VIRTIO_SND_PCM_FMT_S32 = 17;

/** §5.14.6.6.2: frame rates by their VIRTIO_SND_PCM_RATE_* index. */
export const PCM_RATES: readonly number[] = [
  5512,
  8000,
  11025,
  16000,
  22050,
  32000,
  44100,
  48000,
  64000,
  88200,
  96000,
  176400,
  192000,
  384000,
  12000,
  24000,
];

/** §5.14.6.9.1: channel positions used by the channel maps. */
export const VIRTIO_SND_CHMAP_FL = 3;
/** §5.14.6.9.1 */
export const VIRTIO_SND_CHMAP_FR = 4;
/** §5.14.6.9.1: the most positions a channel map holds. */
export const VIRTIO_SND_CHMAP_MAX_SIZE = 18;

/** Bytes of `struct virtio_snd_config` (jacks, streams, chmaps, controls). */
export const CONFIG_SIZE = 16;
/** Bytes of `struct virtio_snd_hdr`. */
export const HDR_SIZE = 4;
/** Bytes of `struct virtio_snd_query_info`. */
export const QUERY_INFO_SIZE = 16;
/** Bytes of `struct virtio_snd_pcm_hdr` and `virtio_snd_jack_hdr`. */
export const PCM_HDR_SIZE = 8;
/** Bytes of `struct virtio_snd_pcm_set_params`. */
export const SET_PARAMS_SIZE = 24;
/** Bytes of `struct virtio_snd_jack_remap`. */
export const JACK_REMAP_SIZE = 16;
/** Bytes of `struct virtio_snd_jack_info`. */
export const JACK_INFO_SIZE = 24;
/** Bytes of `struct virtio_snd_pcm_info`. */
export const PCM_INFO_SIZE = 32;
/** Bytes of `struct virtio_snd_chmap_info`. */
export const CHMAP_INFO_SIZE = 24;
/** Bytes of `struct virtio_snd_pcm_xfer`. */
export const XFER_SIZE = 4;
/** Bytes of `struct virtio_snd_pcm_status`. */
export const PCM_STATUS_SIZE = 8;
/** Bytes of `struct virtio_snd_event`. */
export const EVENT_SIZE = 8;

/** `struct virtio_snd_config`, device-read-only. */
export interface SoundConfig {
  /** Jacks. */
  readonly jacks: number;
  /** PCM streams. */
  readonly streams: number;
  /** Channel maps. */
  readonly chmaps: number;
}

/** Encodes the config space (the `controls` field stays 0: VIRTIO_SND_F_CTLS is not offered). */
export function encodeConfig(config: SoundConfig): Uint8Array {
  const out = new Uint8Array(CONFIG_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, config.jacks, true);
  view.setUint32(4, config.streams, true);
  view.setUint32(8, config.chmaps, true);
  return out;
}

/** `struct virtio_snd_query_info` (§5.14.6.1). */
export interface QueryInfo {
  /** First item. */
  readonly startId: number;
  /** Items asked for. */
  readonly count: number;
  /** Bytes per item the driver expects. */
  readonly size: number;
}

/** `struct virtio_snd_pcm_set_params` (§5.14.6.6.3), without its header. */
export interface SetParams {
  /** The stream. */
  readonly streamId: number;
  /** Driver's hardware buffer. */
  readonly bufferBytes: number;
  /** Driver's period. */
  readonly periodBytes: number;
  /** Selected VIRTIO_SND_PCM_F_* bits. */
  readonly features: number;
  /** Channel count. */
  readonly channels: number;
  /** VIRTIO_SND_PCM_FMT_*. */
  readonly format: number;
  /** VIRTIO_SND_PCM_RATE_* index. */
  readonly rate: number;
}

/** A control request, decoded. */
export type ControlRequest =
  | { readonly kind: "query"; readonly code: number; readonly query: QueryInfo }
  | { readonly kind: "jack-remap"; readonly jackId: number }
  | { readonly kind: "set-params"; readonly params: SetParams }
  | { readonly kind: "pcm"; readonly code: number; readonly streamId: number }
  | { readonly kind: "bad"; readonly status: Status; readonly reason: string };

const PCM_LIFECYCLE: ReadonlySet<number> = new Set([
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
]);

/** Decodes a control request's device-readable bytes (§5.14.6). */
export function decodeControlRequest(bytes: Uint8Array): ControlRequest {
  if (bytes.length < HDR_SIZE) {
    return { kind: "bad", status: VIRTIO_SND_S_BAD_MSG, reason: `${bytes.length}-byte header` };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const code = view.getUint32(0, true);
  const short = (size: number): ControlRequest => ({
    kind: "bad",
    status: VIRTIO_SND_S_BAD_MSG,
    reason: `request 0x${code.toString(16)} of ${bytes.length} bytes, ${size} needed`,
  });
  switch (code) {
    case VIRTIO_SND_R_JACK_INFO:
    case VIRTIO_SND_R_PCM_INFO:
    case VIRTIO_SND_R_CHMAP_INFO:
      if (bytes.length < QUERY_INFO_SIZE) return short(QUERY_INFO_SIZE);
      return {
        kind: "query",
        code,
        query: {
          startId: view.getUint32(4, true),
          count: view.getUint32(8, true),
          size: view.getUint32(12, true),
        },
      };
    case VIRTIO_SND_R_JACK_REMAP:
      if (bytes.length < JACK_REMAP_SIZE) return short(JACK_REMAP_SIZE);
      return { kind: "jack-remap", jackId: view.getUint32(4, true) };
    case VIRTIO_SND_R_PCM_SET_PARAMS:
      if (bytes.length < SET_PARAMS_SIZE) return short(SET_PARAMS_SIZE);
      return {
        kind: "set-params",
        params: {
          streamId: view.getUint32(4, true),
          bufferBytes: view.getUint32(8, true),
          periodBytes: view.getUint32(12, true),
          features: view.getUint32(16, true),
          channels: view.getUint8(20),
          format: view.getUint8(21),
          rate: view.getUint8(22),
        },
      };
    default:
      if (!PCM_LIFECYCLE.has(code)) {
        return {
          kind: "bad",
          status: VIRTIO_SND_S_NOT_SUPP,
          reason: `unknown request code 0x${code.toString(16)}`,
        };
      }
      if (bytes.length < PCM_HDR_SIZE) return short(PCM_HDR_SIZE);
      return { kind: "pcm", code, streamId: view.getUint32(4, true) };
  }
}

/** `struct virtio_snd_pcm_info` (§5.14.6.6.2). */
export interface PcmInfo {
  /** Function group node. */
  readonly hdaFnNid: number;
  /** VIRTIO_SND_PCM_F_* bits offered. */
  readonly features: number;
  /** 1 << VIRTIO_SND_PCM_FMT_* bits. */
  readonly formats: bigint;
  /** 1 << VIRTIO_SND_PCM_RATE_* bits. */
  readonly rates: bigint;
  /** VIRTIO_SND_D_*. */
  readonly direction: number;
  /** Fewest channels. */
  readonly channelsMin: number;
  /** Most channels. */
  readonly channelsMax: number;
}

/** Encodes one `struct virtio_snd_pcm_info` (padding zero, §5.14.6.6.2.1). */
export function encodePcmInfo(info: PcmInfo): Uint8Array {
  const out = new Uint8Array(PCM_INFO_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, info.hdaFnNid, true);
  view.setUint32(4, info.features, true);
  view.setBigUint64(8, info.formats, true);
  view.setBigUint64(16, info.rates, true);
  view.setUint8(24, info.direction);
  view.setUint8(25, info.channelsMin);
  view.setUint8(26, info.channelsMax);
  return out;
}

/** `struct virtio_snd_chmap_info` (§5.14.6.9.1). */
export interface ChmapInfo {
  /** Function group node. */
  readonly hdaFnNid: number;
  /** VIRTIO_SND_D_*. */
  readonly direction: number;
  /** VIRTIO_SND_CHMAP_* positions, at most {@link VIRTIO_SND_CHMAP_MAX_SIZE}. */
  readonly positions: readonly number[];
}

/** Encodes one `struct virtio_snd_chmap_info`. */
export function encodeChmapInfo(info: ChmapInfo): Uint8Array {
  const out = new Uint8Array(CHMAP_INFO_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, info.hdaFnNid, true);
  view.setUint8(4, info.direction);
  view.setUint8(5, info.positions.length);
  out.set(info.positions.slice(0, VIRTIO_SND_CHMAP_MAX_SIZE), 6);
  return out;
}

/** Encodes `struct virtio_snd_pcm_status` (§5.14.6.8). */
export function encodePcmStatus(status: Status, latencyBytes: number): Uint8Array {
  const out = new Uint8Array(PCM_STATUS_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, status, true);
  view.setUint32(4, Math.min(Math.max(0, Math.floor(latencyBytes)), 0xffff_ffff), true);
  return out;
}

/** Encodes `struct virtio_snd_event` (§5.14.6). */
export function encodeEvent(code: number, data: number): Uint8Array {
  const out = new Uint8Array(EVENT_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, code, true);
  view.setUint32(4, data, true);
  return out;
}

/** Encodes a bare `struct virtio_snd_hdr` carrying a status. */
export function encodeStatus(status: Status): Uint8Array {
  const out = new Uint8Array(HDR_SIZE);
  new DataView(out.buffer).setUint32(0, status, true);
  return out;
}

/** A name for a status code, for log lines. */
export function statusName(status: number): string {
  switch (status) {
    case VIRTIO_SND_S_OK:
      return "OK";
    case VIRTIO_SND_S_BAD_MSG:
      return "BAD_MSG";
    case VIRTIO_SND_S_NOT_SUPP:
      return "NOT_SUPP";
    case VIRTIO_SND_S_IO_ERR:
      return "IO_ERR";
    default:
      return `0x${status.toString(16)}`;
  }
}
