/**
 * vhost-user protocol constants, named as QEMU's docs/interop/vhost-user.rst
 * names them.
 *
 * @module
 */

/** Front-end → back-end request codes ("Front-end message types"). */
export const FrontendRequest = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
  GET_SHARED_OBJECT: 41,
  SET_DEVICE_STATE_FD: 42,
  CHECK_DEVICE_STATE: 43,
} as const;

/** Back-end → front-end request codes ("Back-end message types"). */
export const BackendRequest = {
  IOTLB_MSG: 1,
  CONFIG_CHANGE_MSG: 2,
  VRING_HOST_NOTIFIER_MSG: 3,
} as const;

const REQUEST_NAMES = new Map<number, string>(
  Object.entries(FrontendRequest).map(([name, code]) => [code, name]),
);

/** The spec's name of a front-end request code, or `UNKNOWN(n)`. */
export function requestName(code: number): string {
  return REQUEST_NAMES.get(code) ?? `UNKNOWN(${code})`;
}

/** Header size: `u32 request, u32 flags, u32 size`. */
export const HEADER_SIZE = 12;
/** Largest payload accepted, as rust-vmm's `MAX_MSG_SIZE`. */
export const MAX_PAYLOAD_SIZE = 0x1000;

/** Header flag bits ("Header"): version 1 in bits 0-1. */
export const VERSION = 0x1;
/** Bits 0-1: the protocol version. */
export const VERSION_MASK = 0x3;
/** Set on replies. */
export const REPLY_FLAG = 0x4;
/** The front-end asks for a REPLY_ACK-style u64 reply. */
export const NEED_REPLY_FLAG = 0x8;

/** Protocol feature bits ("Protocol features"). Bits from 20 on are in flux and never offered. */
export const ProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  MTU: 4,
  BACKEND_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
  XEN_MMAP: 17,
  SHARED_OBJECT: 18,
  DEVICE_STATE: 19,
} as const;

/** `VHOST_USER_F_PROTOCOL_FEATURES`: virtio feature bit 30, set in GET_FEATURES. */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
/** `VHOST_F_LOG_ALL`: dirty logging, virtio feature bit 26 (never offered here). */
export const VHOST_F_LOG_ALL = 26;

/** Bits 0-7 of a SET_VRING_KICK/CALL/ERR payload: the queue index. */
export const VRING_IDX_MASK = 0xff;
/** Bit 8 of a SET_VRING_KICK/CALL/ERR payload: no fd is attached. */
export const VRING_NOFD_MASK = 0x100;

/** `VHOST_USER_MAX_CONFIG_SIZE` in QEMU: a config space is at most this large. */
export const MAX_CONFIG_SIZE = 256;

/** Slots answered to GET_MAX_MEM_SLOTS, as rust-vmm does (QEMU caps at 512). */
export const MAX_MEM_SLOTS = 509;
/** SET_MEM_TABLE carries at most this many regions (`VHOST_MEMORY_BASELINE_NREGIONS`). */
export const MAX_MEM_TABLE_REGIONS = 8;

/** Returns `1n << bit`: a feature bit as a mask. */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}
