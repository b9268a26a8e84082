/**
 * The vhost-user message codec: pure functions between bytes and typed
 * values. Decoding happens once, here; the state machine trusts the result.
 * Layouts follow docs/interop/vhost-user.rst "Message types" (little-endian).
 *
 * @module
 */

import {
  FrontendRequest as R,
  HEADER_SIZE,
  MAX_CONFIG_SIZE,
  MAX_MEM_TABLE_REGIONS,
  MAX_PAYLOAD_SIZE,
  NEED_REPLY_FLAG,
  REPLY_FLAG,
  requestName,
  VERSION,
  VERSION_MASK,
  VRING_IDX_MASK,
  VRING_NOFD_MASK,
} from "./constants.ts";

/** A decoded message header. */
export interface Header {
  /** The request code. */
  readonly request: number;
  /** Raw flags (version, REPLY, NEED_REPLY). */
  readonly flags: number;
  /** Payload length in bytes. */
  readonly size: number;
}

/** A memory region as the front-end describes it ("Memory region description"). */
export interface MemoryRegionDescriptor {
  /** Guest physical address of the region's first byte. */
  readonly guestPhysAddr: number;
  /** Length in bytes. */
  readonly memorySize: number;
  /** The front-end's own virtual address of the region (ring addresses use these). */
  readonly userspaceAddr: number;
  /** Offset of the region within the attached fd. */
  readonly mmapOffset: number;
}

/** Ring addresses from SET_VRING_ADDR, in front-end virtual addresses. */
export interface VringAddresses {
  /** Queue index. */
  readonly index: number;
  /** `VHOST_VRING_F_LOG` in bit 0. */
  readonly flags: number;
  /** Descriptor table. */
  readonly descUser: number;
  /** Used ring. */
  readonly usedUser: number;
  /** Available ring. */
  readonly availUser: number;
  /** Guest address of the used ring for dirty logging. */
  readonly logGuest: number;
}

/** A config-space access (GET_CONFIG / SET_CONFIG). */
export interface ConfigAccess {
  /** Byte offset into the device config space. */
  readonly offset: number;
  /** Bytes to read or write. */
  readonly size: number;
  /** 0: front-end write; 1: live migration. */
  readonly flags: number;
  /** The bytes written (SET_CONFIG) or the request's placeholder (GET_CONFIG). */
  readonly data: Uint8Array;
}

/** A front-end message decoded into what the state machine acts on. */
export type FrontendMessage =
  | { readonly kind: "GET_FEATURES" }
  | { readonly kind: "SET_FEATURES"; readonly features: bigint }
  | { readonly kind: "SET_OWNER" }
  | { readonly kind: "RESET_OWNER" }
  | {
    readonly kind: "SET_MEM_TABLE";
    readonly regions: readonly MemoryRegionDescriptor[];
    readonly fds: readonly number[];
  }
  | { readonly kind: "SET_LOG_BASE" }
  | { readonly kind: "SET_LOG_FD" }
  | { readonly kind: "SET_VRING_NUM"; readonly index: number; readonly num: number }
  | { readonly kind: "SET_VRING_ADDR"; readonly addresses: VringAddresses }
  | { readonly kind: "SET_VRING_BASE"; readonly index: number; readonly num: number }
  | { readonly kind: "GET_VRING_BASE"; readonly index: number }
  | {
    readonly kind: "SET_VRING_KICK" | "SET_VRING_CALL" | "SET_VRING_ERR";
    readonly index: number;
    readonly fd: number | null;
  }
  | { readonly kind: "GET_PROTOCOL_FEATURES" }
  | { readonly kind: "SET_PROTOCOL_FEATURES"; readonly features: bigint }
  | { readonly kind: "GET_QUEUE_NUM" }
  | { readonly kind: "SET_VRING_ENABLE"; readonly index: number; readonly enable: boolean }
  | { readonly kind: "SET_BACKEND_REQ_FD"; readonly fd: number }
  | { readonly kind: "GET_CONFIG" | "SET_CONFIG"; readonly config: ConfigAccess }
  | { readonly kind: "RESET_DEVICE" }
  | { readonly kind: "GET_MAX_MEM_SLOTS" }
  | { readonly kind: "ADD_MEM_REG"; readonly region: MemoryRegionDescriptor; readonly fd: number }
  | { readonly kind: "REM_MEM_REG"; readonly region: MemoryRegionDescriptor }
  | { readonly kind: "SET_STATUS"; readonly status: number }
  | { readonly kind: "GET_STATUS" }
  | { readonly kind: "GET_INFLIGHT_FD" }
  | { readonly kind: "UNSUPPORTED"; readonly name: string };

/** A decoded message with its header and the descriptors it owns. */
export interface Decoded {
  /** The header. */
  readonly header: Header;
  /** Whether the front-end set NEED_REPLY. */
  readonly needReply: boolean;
  /** The typed message. */
  readonly message: FrontendMessage;
}

/** A message the codec refuses, with the reason to log. */
export class ProtocolError extends Error {
  /** Describes a malformed message. */
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/**
 * Decodes a header. Throws {@link ProtocolError} for a wrong version,
 * reserved flag bits, or a payload larger than {@link MAX_PAYLOAD_SIZE}.
 */
export function decodeHeader(bytes: Uint8Array): Header {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const header = {
    request: view.getUint32(0, true),
    flags: view.getUint32(4, true),
    size: view.getUint32(8, true),
  };
  if ((header.flags & VERSION_MASK) !== VERSION) {
    throw new ProtocolError(
      `${requestName(header.request)}: unsupported version in flags 0x${header.flags.toString(16)}`,
    );
  }
  if ((header.flags & ~0xf) !== 0) {
    throw new ProtocolError(
      `${requestName(header.request)}: reserved flag bits set: 0x${header.flags.toString(16)}`,
    );
  }
  if (header.size > MAX_PAYLOAD_SIZE) {
    throw new ProtocolError(
      `${requestName(header.request)}: payload of ${header.size} bytes exceeds ${MAX_PAYLOAD_SIZE}`,
    );
  }
  return header;
}

/** Encodes a header. */
export function encodeHeader(header: Header): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, header.request, true);
  view.setUint32(4, header.flags, true);
  view.setUint32(8, header.size, true);
  return bytes;
}

/** A whole message: header followed by `payload`. */
export function encodeMessage(
  request: number,
  options: { flags?: number; payload?: Uint8Array },
): Uint8Array {
  const payload = options.payload ?? new Uint8Array(0);
  const bytes = new Uint8Array(HEADER_SIZE + payload.length);
  bytes.set(encodeHeader({ request, flags: options.flags ?? VERSION, size: payload.length }));
  bytes.set(payload, HEADER_SIZE);
  return bytes;
}

/** A reply to `request`: flags exactly REPLY|version, as QEMU demands. */
export function encodeReply(request: number, payload: Uint8Array): Uint8Array {
  return encodeMessage(request, { flags: REPLY_FLAG | VERSION, payload });
}

/** Encodes a u64 payload. */
export function encodeU64(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
  return bytes;
}

/** Encodes a vring state payload (`u32 index, u32 num`). */
export function encodeVringState(index: number, num: number): Uint8Array {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, index, true);
  view.setUint32(4, num, true);
  return bytes;
}

/** Encodes a vring address payload (note the order: desc, used, avail, log). */
export function encodeVringAddr(addresses: VringAddresses): Uint8Array {
  const bytes = new Uint8Array(40);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, addresses.index, true);
  view.setUint32(4, addresses.flags, true);
  view.setBigUint64(8, BigInt(addresses.descUser), true);
  view.setBigUint64(16, BigInt(addresses.usedUser), true);
  view.setBigUint64(24, BigInt(addresses.availUser), true);
  view.setBigUint64(32, BigInt(addresses.logGuest), true);
  return bytes;
}

function setRegion(view: DataView, offset: number, region: MemoryRegionDescriptor): void {
  view.setBigUint64(offset, BigInt(region.guestPhysAddr), true);
  view.setBigUint64(offset + 8, BigInt(region.memorySize), true);
  view.setBigUint64(offset + 16, BigInt(region.userspaceAddr), true);
  view.setBigUint64(offset + 24, BigInt(region.mmapOffset), true);
}

/** Encodes a SET_MEM_TABLE payload (`u32 nregions, u32 padding, regions`). */
export function encodeMemoryTable(regions: readonly MemoryRegionDescriptor[]): Uint8Array {
  const bytes = new Uint8Array(8 + 32 * regions.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, regions.length, true);
  regions.forEach((region, i) => setRegion(view, 8 + 32 * i, region));
  return bytes;
}

/** Encodes an ADD_MEM_REG / REM_MEM_REG payload (`u64 padding`, region). */
export function encodeSingleRegion(region: MemoryRegionDescriptor): Uint8Array {
  const bytes = new Uint8Array(40);
  setRegion(new DataView(bytes.buffer), 8, region);
  return bytes;
}

/** Encodes a config payload (`u32 offset, u32 size, u32 flags, data`). */
export function encodeConfig(access: ConfigAccess): Uint8Array {
  const bytes = new Uint8Array(12 + access.data.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, access.offset, true);
  view.setUint32(4, access.size, true);
  view.setUint32(8, access.flags, true);
  bytes.set(access.data, 12);
  return bytes;
}

/** Decodes a config payload. */
export function decodeConfig(payload: Uint8Array): ConfigAccess {
  if (payload.length < 12) {
    throw new ProtocolError(`config payload of ${payload.length} bytes is shorter than 12`);
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const access = {
    offset: view.getUint32(0, true),
    size: view.getUint32(4, true),
    flags: view.getUint32(8, true),
    data: payload.slice(12),
  };
  if (access.size > MAX_CONFIG_SIZE || access.data.length !== access.size) {
    throw new ProtocolError(
      `config size ${access.size} does not match its ${access.data.length} data bytes (max ${MAX_CONFIG_SIZE})`,
    );
  }
  return access;
}

/** Reads a u64 as a number, refusing values above 2^53 (no address or size is that large). */
function safeU64(view: DataView, offset: number, what: string): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ProtocolError(`${what} 0x${value.toString(16)} is out of range`);
  }
  return Number(value);
}

function decodeRegion(view: DataView, offset: number): MemoryRegionDescriptor {
  return {
    guestPhysAddr: safeU64(view, offset, "guest_phys_addr"),
    memorySize: safeU64(view, offset + 8, "memory_size"),
    userspaceAddr: safeU64(view, offset + 16, "userspace_addr"),
    mmapOffset: safeU64(view, offset + 24, "mmap_offset"),
  };
}

const EMPTY_PAYLOAD_REQUESTS: Record<number, FrontendMessage> = {
  [R.GET_FEATURES]: { kind: "GET_FEATURES" },
  [R.SET_OWNER]: { kind: "SET_OWNER" },
  [R.RESET_OWNER]: { kind: "RESET_OWNER" },
  [R.GET_PROTOCOL_FEATURES]: { kind: "GET_PROTOCOL_FEATURES" },
  [R.GET_QUEUE_NUM]: { kind: "GET_QUEUE_NUM" },
  [R.RESET_DEVICE]: { kind: "RESET_DEVICE" },
  [R.GET_MAX_MEM_SLOTS]: { kind: "GET_MAX_MEM_SLOTS" },
  [R.GET_STATUS]: { kind: "GET_STATUS" },
};

function expectSize(name: string, payload: Uint8Array, size: number): DataView {
  if (payload.length !== size) {
    throw new ProtocolError(`${name}: payload of ${payload.length} bytes, expected ${size}`);
  }
  return new DataView(payload.buffer, payload.byteOffset, payload.length);
}

function expectFds(name: string, fds: readonly number[], count: number): void {
  if (fds.length !== count) {
    throw new ProtocolError(`${name}: ${fds.length} file descriptors attached, expected ${count}`);
  }
}

/**
 * Decodes a front-end message. `fds` are the descriptors that arrived with
 * it; on success the message owns those it names (kick/call/err, region,
 * backend channel), and on a {@link ProtocolError} the caller closes them all.
 * Unknown or unsupported requests decode to `UNSUPPORTED`, provided they
 * carry no descriptors.
 */
export function decodeMessage(
  header: Header,
  options: { payload: Uint8Array; fds: readonly number[] },
): Decoded {
  const { payload, fds } = options;
  const name = requestName(header.request);
  const needReply = (header.flags & NEED_REPLY_FLAG) !== 0;
  const done = (message: FrontendMessage): Decoded => ({ header, needReply, message });

  const empty = EMPTY_PAYLOAD_REQUESTS[header.request];
  if (empty) {
    // Some front-ends pad requests that take no payload; ignore the bytes.
    expectFds(name, fds, 0);
    return done(empty);
  }
  switch (header.request) {
    case R.SET_FEATURES:
    case R.SET_PROTOCOL_FEATURES: {
      const view = expectSize(name, payload, 8);
      expectFds(name, fds, 0);
      const features = view.getBigUint64(0, true);
      return done({
        kind: header.request === R.SET_FEATURES ? "SET_FEATURES" : "SET_PROTOCOL_FEATURES",
        features,
      });
    }
    case R.SET_MEM_TABLE: {
      if (payload.length < 8) {
        throw new ProtocolError(`${name}: payload of ${payload.length} bytes is shorter than 8`);
      }
      const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
      const count = view.getUint32(0, true);
      if (count === 0 || count > MAX_MEM_TABLE_REGIONS) {
        throw new ProtocolError(`${name}: ${count} regions (1..${MAX_MEM_TABLE_REGIONS} allowed)`);
      }
      expectSize(name, payload, 8 + 32 * count);
      expectFds(name, fds, count);
      const regions = Array.from({ length: count }, (_, i) => decodeRegion(view, 8 + 32 * i));
      return done({ kind: "SET_MEM_TABLE", regions, fds: [...fds] });
    }
    case R.SET_VRING_NUM:
    case R.SET_VRING_BASE:
    case R.GET_VRING_BASE:
    case R.SET_VRING_ENABLE: {
      const view = expectSize(name, payload, 8);
      expectFds(name, fds, 0);
      const index = view.getUint32(0, true);
      const num = view.getUint32(4, true);
      if (header.request === R.GET_VRING_BASE) return done({ kind: "GET_VRING_BASE", index });
      if (header.request === R.SET_VRING_ENABLE) {
        return done({ kind: "SET_VRING_ENABLE", index, enable: num !== 0 });
      }
      return done({
        kind: header.request === R.SET_VRING_NUM ? "SET_VRING_NUM" : "SET_VRING_BASE",
        index,
        num,
      });
    }
    case R.SET_VRING_ADDR: {
      const view = expectSize(name, payload, 40);
      expectFds(name, fds, 0);
      return done({
        kind: "SET_VRING_ADDR",
        addresses: {
          index: view.getUint32(0, true),
          flags: view.getUint32(4, true),
          descUser: safeU64(view, 8, "descriptor table address"),
          usedUser: safeU64(view, 16, "used ring address"),
          availUser: safeU64(view, 24, "available ring address"),
          logGuest: Number(view.getBigUint64(32, true) & 0x1f_ffff_ffff_ffffn),
        },
      });
    }
    case R.SET_VRING_KICK:
    case R.SET_VRING_CALL:
    case R.SET_VRING_ERR: {
      const view = expectSize(name, payload, 8);
      const value = view.getUint32(0, true);
      const noFd = (value & VRING_NOFD_MASK) !== 0;
      expectFds(name, fds, noFd ? 0 : 1);
      const kind = header.request === R.SET_VRING_KICK
        ? "SET_VRING_KICK"
        : header.request === R.SET_VRING_CALL
        ? "SET_VRING_CALL"
        : "SET_VRING_ERR";
      return done({ kind, index: value & VRING_IDX_MASK, fd: noFd ? null : fds[0] });
    }
    case R.SET_BACKEND_REQ_FD: {
      expectFds(name, fds, 1);
      return done({ kind: "SET_BACKEND_REQ_FD", fd: fds[0] });
    }
    case R.GET_CONFIG:
    case R.SET_CONFIG: {
      expectFds(name, fds, 0);
      const config = decodeConfig(payload);
      return done({ kind: header.request === R.GET_CONFIG ? "GET_CONFIG" : "SET_CONFIG", config });
    }
    case R.ADD_MEM_REG:
    case R.REM_MEM_REG: {
      const view = expectSize(name, payload, 40);
      const region = decodeRegion(view, 8);
      if (header.request === R.REM_MEM_REG) {
        // The spec says REM_MEM_REG "SHOULD" carry no fd; the caller closes any that came.
        return done({ kind: "REM_MEM_REG", region });
      }
      expectFds(name, fds, 1);
      return done({ kind: "ADD_MEM_REG", region, fd: fds[0] });
    }
    case R.SET_STATUS: {
      const view = expectSize(name, payload, 8);
      expectFds(name, fds, 0);
      return done({ kind: "SET_STATUS", status: Number(view.getBigUint64(0, true) & 0xffn) });
    }
    case R.SET_LOG_BASE:
      return done({ kind: "SET_LOG_BASE" });
    case R.SET_LOG_FD:
      return done({ kind: "SET_LOG_FD" });
    case R.GET_INFLIGHT_FD:
      return done({ kind: "GET_INFLIGHT_FD" });
    default:
      return done({ kind: "UNSUPPORTED", name });
  }
}
