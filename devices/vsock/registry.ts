/**
 * Sibling VMs: every VM of the process registers its CID and groups here;
 * a guest packet for another CID reaches that VM only if the two share a
 * group (rust-vmm's `--groups`).
 *
 * @module
 */

import type { VsockHeader } from "./packet.ts";

/** A guest packet travelling between sibling VMs: a private copy. */
export interface SiblingPacket {
  /** The header, as the sending guest wrote it. */
  readonly header: VsockHeader;
  /** The payload (empty unless RW). */
  readonly payload: Uint8Array;
}

/** A VM that can receive sibling packets. */
export interface VsockPeer {
  /** The VM's guest CID. */
  readonly cid: number;
  /** The groups it belongs to. */
  readonly groups: ReadonlySet<string>;
  /** Queues `packet` for the guest's rx queue; false if it was dropped. */
  deliver(packet: SiblingPacket): boolean;
}

/** Why {@link CidRegistry.route} did not deliver. */
export type RouteOutcome = "delivered" | "unknown-cid" | "no-shared-group" | "dropped";

/** The process-wide CID map. */
export class CidRegistry {
  readonly #peers = new Map<number, VsockPeer>();

  /** Registers `peer`; throws if its CID is taken. */
  add(peer: VsockPeer): void {
    if (this.#peers.has(peer.cid)) throw new Error(`guest CID ${peer.cid} is already in use`);
    this.#peers.set(peer.cid, peer);
  }

  /** Forgets the VM with `cid`. */
  remove(cid: number): void {
    this.#peers.delete(cid);
  }

  /** Hands `packet` from `from` to the VM its header names, if they share a group. */
  route(from: VsockPeer, packet: SiblingPacket): RouteOutcome {
    const to = this.#peers.get(packet.header.dstCid);
    if (!to || to === from) return "unknown-cid";
    if (!sharesGroup(from.groups, to.groups)) return "no-shared-group";
    return to.deliver(packet) ? "delivered" : "dropped";
  }
}

/** Whether the two group sets intersect. */
export function sharesGroup(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  for (const group of a) if (b.has(group)) return true;
  return false;
}
