/**
 * The connections a VM's guest holds with sibling guests. The daemon only
 * relays sibling packets, so without this a guest whose front-end goes away
 * would leave its siblings' ends open for ever: Linux's vsock has no
 * keepalive. When the front-end leaves, each flow's peer gets the RST the
 * vanished guest can no longer send (VIRTIO 1.2 §5.10.6.4: an RST ends a
 * connection).
 *
 * @module
 */

import {
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  type VsockHeader,
} from "./packet.ts";

/** An RST from `(srcCid, srcPort)` to `(dstCid, dstPort)`. */
function reset(
  from: { cid: number; port: number },
  to: { cid: number; port: number; type: number },
): VsockHeader {
  return {
    srcCid: from.cid,
    srcPort: from.port,
    dstCid: to.cid,
    dstPort: to.port,
    len: 0,
    type: to.type,
    op: VIRTIO_VSOCK_OP_RST,
    flags: 0,
    bufAlloc: 0,
    fwdCnt: 0,
  };
}

/** The RST that answers `header`: the same flow, from its receiver back to its sender. */
export function resetFor(header: VsockHeader): VsockHeader {
  return reset({ cid: header.dstCid, port: header.dstPort }, {
    cid: header.srcCid,
    port: header.srcPort,
    type: header.type,
  });
}

/** One VM's live connections with sibling guests, keyed by (peer CID, ports). */
export class SiblingFlows {
  /** Per flow, the RST the VM's guest would send to end it. */
  readonly #flows = new Map<string, VsockHeader>();

  /** Open flows. */
  get size(): number {
    return this.#flows.size;
  }

  /** The VM's guest sent `header` to a sibling, which took it. */
  sent(header: VsockHeader): void {
    this.#track(
      header.op,
      `${header.dstCid}:${header.srcPort}:${header.dstPort}`,
      () =>
        reset({ cid: header.srcCid, port: header.srcPort }, {
          cid: header.dstCid,
          port: header.dstPort,
          type: header.type,
        }),
    );
  }

  /** A sibling's packet `header` reached the VM's guest. */
  received(header: VsockHeader): void {
    this.#track(
      header.op,
      `${header.srcCid}:${header.dstPort}:${header.srcPort}`,
      () => resetFor(header),
    );
  }

  /** The RSTs the VM's vanished guest owes its peers, one per flow; forgets them all. */
  takeResets(): VsockHeader[] {
    const resets = [...this.#flows.values()];
    this.#flows.clear();
    return resets;
  }

  /** REQUEST and RESPONSE open a flow, RST closes it; other packets leave it as it is. */
  #track(op: number, key: string, ownReset: () => VsockHeader): void {
    if (op === VIRTIO_VSOCK_OP_RST) this.#flows.delete(key);
    else if (op === VIRTIO_VSOCK_OP_REQUEST || op === VIRTIO_VSOCK_OP_RESPONSE) {
      this.#flows.set(key, ownReset());
    }
  }
}
