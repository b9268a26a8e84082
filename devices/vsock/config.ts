/**
 * The VMs to serve, from the command line as rust-vmm's vhost-device-vsock
 * takes it: single-VM flags, repeated `--vm key=val,…`, or a YAML file
 * (`--config`). Keys are accepted in snake_case and kebab-case everywhere
 * (rust-vmm's YAML parser takes snake_case only, though its README shows
 * kebab-case).
 *
 * @module
 */

import { parse as parseYaml } from "yaml";
import { type OptionSpec, type ParsedOptions, UsageError } from "../../core/cli.ts";

/** Default guest CID. */
export const DEFAULT_GUEST_CID = 3;
/**
 * Default per-connection host buffer (and advertised `buf_alloc`): 256 KiB,
 * Linux's own `VIRTIO_VSOCK_DEFAULT_BUF_SIZE`. rust-vmm defaults to 64 KiB,
 * which lets a guest have one 64 KiB packet in flight and then wait a
 * credit round trip; the buffer is allocated only while the host falls behind.
 */
export const DEFAULT_TX_BUFFER_SIZE = 256 * 1024;
/** Default largest queue size. */
export const DEFAULT_QUEUE_SIZE = 1024;
/** Default sibling group. */
export const DEFAULT_GROUP = "default";
/** Highest valid guest CID: `VMADDR_CID_ANY` (2^32 - 1) is reserved. */
export const MAX_GUEST_CID = 0xfffffffe;

/** Where a VM's host-side connections go. */
export type HostBackendConfig =
  /** Hybrid vsock over Unix sockets at `udsPath` and `<udsPath>_<port>`. */
  | { readonly kind: "unix"; readonly udsPath: string }
  /** AF_VSOCK: guest → host goes to `(forwardCid, port)`; host → guest from listeners on `forwardListen`. */
  | {
    readonly kind: "vsock";
    readonly forwardCid: number;
    readonly forwardListen: readonly number[];
    /** SOCK_SEQPACKET listeners for host → guest SEQPACKET connections (a vsock port holds one type). */
    readonly forwardListenSeqpacket: readonly number[];
  };

/** One VM. */
export interface VmConfig {
  /** The guest's CID. */
  readonly guestCid: number;
  /** The vhost-user socket QEMU connects to (used as given, no suffix). */
  readonly socket: string;
  /** The host side. */
  readonly backend: HostBackendConfig;
  /** Per-connection host buffer, advertised as `buf_alloc`. */
  readonly txBufferSize: number;
  /** Largest virtqueue size. */
  readonly queueSize: number;
  /** Sibling groups. */
  readonly groups: readonly string[];
  /**
   * Offer VIRTIO_VSOCK_F_SEQPACKET (our extension: rust-vmm's daemon has no
   * SOCK_SEQPACKET). Off by default, so the guest sees what upstream offers.
   */
  readonly seqpacket: boolean;
}

/** The device's own command-line options. */
export const VSOCK_OPTIONS: readonly OptionSpec[] = [
  {
    long: "guest-cid",
    kind: "value",
    valueName: "GUEST_CID",
    help: `Context identifier of the guest [default: ${DEFAULT_GUEST_CID}]`,
  },
  {
    long: "socket",
    kind: "value",
    valueName: "SOCKET",
    help: "vhost-user Unix socket QEMU connects to (used as given)",
  },
  {
    long: "uds-path",
    kind: "value",
    valueName: "UDS_PATH",
    help:
      "Host Unix socket for hybrid vsock: host programs connect here; guest port P reaches <UDS_PATH>_P",
  },
  {
    long: "forward-cid",
    kind: "value",
    valueName: "FORWARD_CID",
    help: "AF_VSOCK backend: forward guest connections to this CID (e.g. 1, the local host)",
  },
  {
    long: "forward-listen",
    kind: "value",
    valueName: "PORTS",
    help: "AF_VSOCK backend: host ports to listen on for connections to the guest, p1+p2+…",
  },
  {
    long: "forward-listen-seqpacket",
    kind: "value",
    valueName: "PORTS",
    help: "AF_VSOCK backend with --seqpacket: host ports to listen on with SOCK_SEQPACKET, p1+p2+…",
  },
  {
    long: "tx-buffer-size",
    kind: "value",
    valueName: "BYTES",
    help:
      `Per-connection host buffer, advertised to the guest as buf_alloc [default: ${DEFAULT_TX_BUFFER_SIZE}]`,
  },
  {
    long: "queue-size",
    kind: "value",
    valueName: "SIZE",
    help: `Largest virtqueue size [default: ${DEFAULT_QUEUE_SIZE}]`,
  },
  {
    long: "groups",
    kind: "value",
    valueName: "GROUPS",
    help:
      `Sibling groups, g1+g2+…: VMs sharing a group reach each other by CID [default: ${DEFAULT_GROUP}]`,
  },
  {
    long: "seqpacket",
    kind: "flag",
    help: "Offer SOCK_SEQPACKET connections (VIRTIO_VSOCK_F_SEQPACKET); host programs use " +
      "<UDS_PATH>_seqpacket and SOCK_SEQPACKET listeners at <UDS_PATH>_P [default: off]",
  },
  {
    long: "vm",
    kind: "value",
    multiple: true,
    valueName: "VM",
    help: "One VM: guest-cid=,socket=,uds-path=|forward-cid=[,forward-listen=][,tx-buffer-size=]" +
      "[,queue-size=][,groups=][,seqpacket=on|off][,forward-listen-seqpacket=]; repeatable",
  },
  {
    long: "config",
    kind: "value",
    valueName: "FILE",
    help: "YAML file: `vms:` list of maps with the --vm keys",
  },
];

const SINGLE_VM_FLAGS = [
  "guest-cid",
  "socket",
  "uds-path",
  "forward-cid",
  "forward-listen",
  "forward-listen-seqpacket",
  "tx-buffer-size",
  "queue-size",
  "groups",
  "seqpacket",
] as const;

const KEYS = new Set([
  "guest_cid",
  "socket",
  "uds_path",
  "forward_cid",
  "forward_listen",
  "forward_listen_seqpacket",
  "tx_buffer_size",
  "queue_size",
  "groups",
  "seqpacket",
]);

/** A value as a VM source gives it: text from the command line, or YAML scalars and lists. */
export type RawValue = string | number | readonly (string | number)[];

function text(value: RawValue, key: string, where: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  throw new UsageError(`${where}: ${key} must be a single value`);
}

function integer(
  value: RawValue,
  options: { key: string; where: string; min: number; max: number },
): number {
  const raw = text(value, options.key, options.where).trim();
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : /^0x[0-9a-f]+$/i.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < options.min || n > options.max) {
    throw new UsageError(
      `${options.where}: invalid ${options.key} '${raw}': expected an integer in ` +
        `${options.min}..${options.max}`,
    );
  }
  return n;
}

function boolean(value: RawValue, key: string, where: string): boolean {
  const raw = text(value, key, where).trim().toLowerCase();
  if (["on", "true", "yes", "1"].includes(raw)) return true;
  if (["off", "false", "no", "0"].includes(raw)) return false;
  throw new UsageError(`${where}: invalid ${key} '${raw}': expected on or off`);
}

function list(value: RawValue, key: string, where: string): string[] {
  const items = Array.isArray(value)
    ? value.map((v) => String(v))
    : text(value as string | number, key, where).split("+");
  const trimmed = items.map((s) => s.trim());
  if (trimmed.some((s) => s === "")) throw new UsageError(`${where}: ${key} has an empty entry`);
  return trimmed;
}

/**
 * Builds one VM from `key → value` pairs (snake_case or kebab-case keys).
 * Throws {@link UsageError} naming `where` for unknown keys and bad values.
 */
export function buildVmConfig(
  entries: Iterable<readonly [string, RawValue]>,
  where: string,
): VmConfig {
  const values = new Map<string, RawValue>();
  for (const [rawKey, value] of entries) {
    const key = rawKey.trim().replaceAll("-", "_");
    if (!KEYS.has(key)) throw new UsageError(`${where}: unknown key '${rawKey}'`);
    if (values.has(key)) throw new UsageError(`${where}: key '${rawKey}' given twice`);
    values.set(key, value);
  }
  const get = (key: string): RawValue | undefined => values.get(key);
  const socket = get("socket");
  if (socket === undefined || text(socket, "socket", where) === "") {
    throw new UsageError(`${where}: socket is required`);
  }
  const udsPath = get("uds_path");
  const forwardCid = get("forward_cid");
  const forwardListen = get("forward_listen");
  const forwardListenSeqpacket = get("forward_listen_seqpacket");
  const ports = (value: RawValue | undefined, key: string): number[] =>
    value === undefined ? [] : list(value, key, where)
      .map((port) => integer(port, { key: `${key} port`, where, min: 0, max: 0xffffffff }));
  let backend: HostBackendConfig;
  if (udsPath !== undefined) {
    if (
      forwardCid !== undefined || forwardListen !== undefined ||
      forwardListenSeqpacket !== undefined
    ) {
      throw new UsageError(`${where}: uds-path cannot be used with forward-cid or forward-listen`);
    }
    const path = text(udsPath, "uds_path", where);
    if (path === "") throw new UsageError(`${where}: uds-path is empty`);
    backend = { kind: "unix", udsPath: path };
  } else if (forwardCid !== undefined) {
    backend = {
      kind: "vsock",
      forwardCid: integer(forwardCid, { key: "forward_cid", where, min: 0, max: 0xffffffff }),
      forwardListen: ports(forwardListen, "forward_listen"),
      forwardListenSeqpacket: ports(forwardListenSeqpacket, "forward_listen_seqpacket"),
    };
  } else {
    throw new UsageError(`${where}: one of uds-path or forward-cid is required`);
  }
  const guestCid = get("guest_cid");
  const txBufferSize = get("tx_buffer_size");
  const queueSize = get("queue_size");
  const groups = get("groups");
  const seqpacket = get("seqpacket");
  const config: VmConfig = {
    guestCid: guestCid === undefined
      ? DEFAULT_GUEST_CID
      : integer(guestCid, { key: "guest_cid", where, min: 3, max: MAX_GUEST_CID }),
    socket: text(socket, "socket", where),
    backend,
    txBufferSize: txBufferSize === undefined
      ? DEFAULT_TX_BUFFER_SIZE
      : integer(txBufferSize, { key: "tx_buffer_size", where, min: 1, max: 0x7fffffff }),
    queueSize: queueSize === undefined
      ? DEFAULT_QUEUE_SIZE
      : integer(queueSize, { key: "queue_size", where, min: 1, max: 32768 }),
    groups: groups === undefined ? [DEFAULT_GROUP] : list(groups, "groups", where),
    seqpacket: seqpacket === undefined ? false : boolean(seqpacket, "seqpacket", where),
  };
  if (
    config.backend.kind === "vsock" && config.backend.forwardListenSeqpacket.length > 0 &&
    !config.seqpacket
  ) {
    throw new UsageError(`${where}: forward-listen-seqpacket needs seqpacket`);
  }
  if ((config.queueSize & (config.queueSize - 1)) !== 0) {
    throw new UsageError(`${where}: queue_size ${config.queueSize} is not a power of 2`);
  }
  return config;
}

/** Parses a `--vm` value: `key=val,key=val,…` (`+` separates list items). */
export function parseVmOption(value: string, where = "--vm"): VmConfig {
  const entries: [string, string][] = [];
  for (const part of value.split(",")) {
    if (part.trim() === "") continue;
    const eq = part.indexOf("=");
    if (eq < 0) throw new UsageError(`${where}: '${part}' is not key=value`);
    entries.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  return buildVmConfig(entries, where);
}

/** Parses a YAML config: a top-level `vms:` list of maps with the `--vm` keys. */
export function parseYamlConfig(source: string, where = "--config"): VmConfig[] {
  let document: unknown;
  try {
    document = parseYaml(source);
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new UsageError(`${where}: not valid YAML: ${message}`);
  }
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new UsageError(`${where}: expected a map with a 'vms' list`);
  }
  const top = document as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (key !== "vms") throw new UsageError(`${where}: unknown top-level key '${key}'`);
  }
  const vms = top.vms;
  if (!Array.isArray(vms) || vms.length === 0) {
    throw new UsageError(`${where}: 'vms' must be a non-empty list`);
  }
  return vms.map((vm, i) => {
    const at = `${where}: vms[${i}]`;
    if (vm === null || typeof vm !== "object" || Array.isArray(vm)) {
      throw new UsageError(`${at}: expected a map`);
    }
    const entries: [string, RawValue][] = [];
    for (const [key, value] of Object.entries(vm as Record<string, unknown>)) {
      entries.push([key, yamlValue(value, { key, where: at })]);
    }
    return buildVmConfig(entries, at);
  });
}

function yamlValue(value: unknown, options: { key: string; where: string }): RawValue {
  if (typeof value === "string" || typeof value === "number") return value;
  if (typeof value === "boolean") return value ? "on" : "off";
  if (Array.isArray(value) && value.every((v) => typeof v === "string" || typeof v === "number")) {
    return value as (string | number)[];
  }
  throw new UsageError(`${options.where}: ${options.key} has an unsupported value`);
}

/** Rejects VMs that would share a CID, a vhost-user socket or a host socket path. */
export function checkDistinct(vms: readonly VmConfig[]): void {
  const seen = { cid: new Set<number>(), socket: new Set<string>(), uds: new Set<string>() };
  for (const vm of vms) {
    if (seen.cid.has(vm.guestCid)) {
      throw new UsageError(`guest CID ${vm.guestCid} is used by more than one VM`);
    }
    seen.cid.add(vm.guestCid);
    if (seen.socket.has(vm.socket)) {
      throw new UsageError(`socket ${vm.socket} is used by more than one VM`);
    }
    seen.socket.add(vm.socket);
    if (vm.backend.kind === "unix") {
      if (seen.uds.has(vm.backend.udsPath)) {
        throw new UsageError(`uds-path ${vm.backend.udsPath} is used by more than one VM`);
      }
      seen.uds.add(vm.backend.udsPath);
    }
  }
}

/**
 * The VMs the command line asks for: `--config`, else `--vm`s, else the
 * single-VM flags. `readFile` reads the YAML file (replaceable in tests).
 */
export function vmConfigsFrom(
  options: ParsedOptions,
  io: { readFile: (path: string) => string } = { readFile: Deno.readTextFileSync },
): VmConfig[] {
  const given = SINGLE_VM_FLAGS.filter((flag) => options[flag] !== undefined);
  const config = options.config;
  const vm = options.vm;
  const vmList = Array.isArray(vm) ? vm : typeof vm === "string" ? [vm] : [];
  let vms: VmConfig[];
  if (typeof config === "string") {
    if (vmList.length > 0) throw new UsageError("--config cannot be used with --vm");
    if (given.length > 0) throw new UsageError(`--config cannot be used with --${given[0]}`);
    let source: string;
    try {
      source = io.readFile(config);
    } catch (error) {
      throw new UsageError(
        `--config: cannot read ${config}: ${error instanceof Error ? error.message : error}`,
      );
    }
    vms = parseYamlConfig(source, `--config ${config}`);
  } else if (vmList.length > 0) {
    if (given.length > 0) throw new UsageError(`--vm cannot be used with --${given[0]}`);
    vms = vmList.map((value, i) => parseVmOption(value, `--vm #${i + 1}`));
  } else if (given.length > 0) {
    const entries: [string, string][] = given.map((flag) => [flag, String(options[flag])]);
    vms = [buildVmConfig(entries, "arguments")];
  } else {
    throw new UsageError("no VM given: use --socket with --uds-path, --vm or --config");
  }
  checkDistinct(vms);
  return vms;
}
