/**
 * The virtio SCSI transport (VIRTIO 1.2 §5.6, device ID 8): queue layout,
 * config space, the request and response of the request queues (§5.6.6.1)
 * and of the control queue (§5.6.6.2), and LUN addressing. Requests are
 * decoded here, once, into typed values.
 *
 * @module
 */

/** §5.6.2: queue 0 is the control queue, 1 the event queue, 2… the request queues. */
export const CONTROLQ = 0;
/** The event queue. */
export const EVENTQ = 1;
/** The first request queue. */
export const REQUESTQ_BASE = 2;

/** §5.6.3 feature bits: requests with both data-in and data-out. */
export const VIRTIO_SCSI_F_INOUT = 0;
/** Hot-plug events on the event queue. */
export const VIRTIO_SCSI_F_HOTPLUG = 1;
/** LUN parameter change events on the event queue. */
export const VIRTIO_SCSI_F_CHANGE = 2;

/** §5.6.4: the CDB and sense sizes the driver sees (and Linux writes back unchanged). */
export const VIRTIO_SCSI_CDB_SIZE = 32;
/** Sense bytes in every response. */
export const VIRTIO_SCSI_SENSE_SIZE = 96;

/** §5.6.6.1 response codes. */
export const VirtioScsiResponse = {
  OK: 0,
  OVERRUN: 1,
  ABORTED: 2,
  BAD_TARGET: 3,
  RESET: 4,
  BUSY: 5,
  TRANSPORT_FAILURE: 6,
  TARGET_FAILURE: 7,
  NEXUS_FAILURE: 8,
  FAILURE: 9,
  // §5.6.6.2: task management function responses.
  FUNCTION_SUCCEEDED: 10,
  FUNCTION_REJECTED: 11,
  INCORRECT_LUN: 12,
} as const;

/** §5.6.6.2: VIRTIO_SCSI_S_FUNCTION_COMPLETE shares the value of OK. */
export const VIRTIO_SCSI_S_FUNCTION_COMPLETE = 0;

/** §5.6.6.2 control request types. */
export const VIRTIO_SCSI_T_TMF = 0;
/** Asynchronous notification query. */
export const VIRTIO_SCSI_T_AN_QUERY = 1;
/** Asynchronous notification subscription. */
export const VIRTIO_SCSI_T_AN_SUBSCRIBE = 2;

/** §5.6.6.2 task management function subtypes. */
export const TmfSubtype = {
  ABORT_TASK: 0,
  ABORT_TASK_SET: 1,
  CLEAR_ACA: 2,
  CLEAR_TASK_SET: 3,
  I_T_NEXUS_RESET: 4,
  LOGICAL_UNIT_RESET: 5,
  QUERY_TASK: 6,
  QUERY_TASK_SET: 7,
} as const;

/** Bytes of `virtio_scsi_req_cmd` before the data-out buffer (lun, id, task_attr, prio, crn, cdb). */
export const REQUEST_HEADER_SIZE: number = 8 + 8 + 3 + VIRTIO_SCSI_CDB_SIZE;
/** Bytes of `virtio_scsi_resp_cmd` before the data-in buffer. */
export const RESPONSE_HEADER_SIZE: number = 4 + 4 + 2 + 1 + 1 + VIRTIO_SCSI_SENSE_SIZE;

/** Largest LUN the config space advertises (§5.6.4 `max_lun`), as QEMU. */
export const MAX_LUN = 16383;
/** Largest target (§5.6.4 `max_target`): only target 0 has LUNs. */
export const MAX_TARGET = 255;

/**
 * Where a request's 8-byte LUN field points (§5.6.6.1: byte 0 is 1, byte 1
 * the target, bytes 2-3 a single-level LUN in flat or peripheral
 * addressing, bytes 4-7 zero).
 */
export type LunAddress =
  | { readonly kind: "lun"; readonly target: number; readonly lun: number }
  | { readonly kind: "invalid" };

/** Decodes the LUN field. */
export function decodeLun(bytes: Uint8Array): LunAddress {
  if (bytes[0] !== 1) return { kind: "invalid" };
  for (let i = 4; i < 8; i++) if (bytes[i] !== 0) return { kind: "invalid" };
  const method = bytes[2] >> 6;
  // 00b: peripheral device addressing (bus 0); 01b: flat space addressing.
  if (method === 0 && bytes[2] !== 0) return { kind: "invalid" };
  if (method > 1) return { kind: "invalid" };
  return { kind: "lun", target: bytes[1], lun: ((bytes[2] & 0x3f) << 8) | bytes[3] };
}

/** A decoded `virtio_scsi_req_cmd` header. */
export interface CommandRequest {
  /** Target and LUN. */
  readonly address: LunAddress;
  /** The driver's tag, matched by ABORT_TASK and QUERY_TASK. */
  readonly id: bigint;
  /** The CDB: a view of the header passed in (decode it before that is reused). */
  readonly cdb: Uint8Array;
}

/** Decodes the first {@link REQUEST_HEADER_SIZE} bytes of a request (a copy out of guest memory). */
export function decodeCommandRequest(header: Uint8Array): CommandRequest {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  return {
    address: decodeLun(header.subarray(0, 8)),
    id: view.getBigUint64(8, true),
    cdb: header.subarray(19, 19 + VIRTIO_SCSI_CDB_SIZE),
  };
}

/** What goes into `virtio_scsi_resp_cmd`. */
export interface CommandResponse {
  /** §5.6.6.1 response code. */
  readonly response: number;
  /** SCSI status (SAM-5). */
  readonly status: number;
  /** Sense data (truncated to 96 bytes). */
  readonly sense?: Uint8Array;
  /** Bytes of the data buffer not transferred. */
  readonly residual: number;
}

/**
 * Encodes a response header ({@link RESPONSE_HEADER_SIZE} bytes) into `out`
 * (a new array if not given; a reused one is overwritten whole).
 */
export function encodeCommandResponse(
  response: CommandResponse,
  out: Uint8Array = new Uint8Array(RESPONSE_HEADER_SIZE),
): Uint8Array {
  const sense = response.sense?.subarray(0, VIRTIO_SCSI_SENSE_SIZE);
  const senseLength = sense?.length ?? 0;
  const residual = response.residual >>> 0;
  // Little-endian sense_len and residual, byte by byte: no DataView per response.
  out[0] = senseLength;
  out[1] = out[2] = out[3] = 0;
  out[4] = residual & 0xff;
  out[5] = (residual >>> 8) & 0xff;
  out[6] = (residual >>> 16) & 0xff;
  out[7] = residual >>> 24;
  // status_qualifier stays 0.
  out[8] = out[9] = 0;
  out[10] = response.status;
  out[11] = response.response;
  if (sense) out.set(sense, 12);
  out.fill(0, 12 + senseLength, RESPONSE_HEADER_SIZE);
  return out.subarray(0, RESPONSE_HEADER_SIZE);
}

/** A decoded control queue request (§5.6.6.2). */
export type ControlRequest =
  | {
    readonly kind: "tmf";
    readonly subtype: number;
    readonly address: LunAddress;
    readonly id: bigint;
  }
  | {
    readonly kind: "an";
    readonly type: number;
    readonly address: LunAddress;
    readonly eventRequested: number;
  }
  | { readonly kind: "unknown"; readonly type: number };

/** `virtio_scsi_ctrl_tmf`'s device-readable part: type, subtype, lun, id. */
export const TMF_REQUEST_SIZE: number = 4 + 4 + 8 + 8;
/** `virtio_scsi_ctrl_an`'s device-readable part: type, lun, event_requested. */
export const AN_REQUEST_SIZE: number = 4 + 8 + 4;
/** `virtio_scsi_ctrl_tmf`'s device-writable part: response. */
export const TMF_RESPONSE_SIZE: number = 1;
/** `virtio_scsi_ctrl_an`'s device-writable part: event_actual, response. */
export const AN_RESPONSE_SIZE: number = 4 + 1;

/** Decodes a control request from its readable bytes; `null` if too short for its type. */
export function decodeControlRequest(bytes: Uint8Array): ControlRequest | null {
  if (bytes.length < 4) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = view.getUint32(0, true);
  if (type === VIRTIO_SCSI_T_TMF) {
    if (bytes.length < TMF_REQUEST_SIZE) return null;
    return {
      kind: "tmf",
      subtype: view.getUint32(4, true),
      address: decodeLun(bytes.subarray(8, 16)),
      id: view.getBigUint64(16, true),
    };
  }
  if (type === VIRTIO_SCSI_T_AN_QUERY || type === VIRTIO_SCSI_T_AN_SUBSCRIBE) {
    if (bytes.length < AN_REQUEST_SIZE) return null;
    return {
      kind: "an",
      type,
      address: decodeLun(bytes.subarray(4, 12)),
      eventRequested: view.getUint32(12, true),
    };
  }
  return { kind: "unknown", type };
}

/** §5.6.4 `virtio_scsi_config`, 36 bytes. */
export const CONFIG_SIZE: number = 36;

/** The config space for `numQueues` request queues, as QEMU's virtio-scsi fills it. */
export function configSpace(options: { numQueues: number; queueSize: number }): Uint8Array {
  const out = new Uint8Array(CONFIG_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, options.numQueues, true); // num_queues
  view.setUint32(4, options.queueSize - 2, true); // seg_max (room for the two headers)
  view.setUint32(8, 0xffff, true); // max_sectors
  view.setUint32(12, options.queueSize, true); // cmd_per_lun
  view.setUint32(16, 16, true); // event_info_size: sizeof(struct virtio_scsi_event), as QEMU
  view.setUint32(20, VIRTIO_SCSI_SENSE_SIZE, true); // sense_size
  view.setUint32(24, VIRTIO_SCSI_CDB_SIZE, true); // cdb_size
  view.setUint16(28, 0, true); // max_channel
  view.setUint16(30, MAX_TARGET, true); // max_target
  view.setUint32(32, MAX_LUN, true); // max_lun
  return out;
}

/** Offsets of the two writable config fields (§5.6.4). */
export const CONFIG_SENSE_SIZE_OFFSET = 20;
/** Offset of `cdb_size`. */
export const CONFIG_CDB_SIZE_OFFSET = 24;
