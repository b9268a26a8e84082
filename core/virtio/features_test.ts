import assert from "node:assert/strict";
import {
  VIRTIO_DEVICE_FEATURES,
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "./features.ts";

Deno.test("VIRTIO_DEVICE_FEATURES is VERSION_1, NOTIFY_ON_EMPTY, INDIRECT_DESC and EVENT_IDX", () => {
  const bits = [
    VIRTIO_F_VERSION_1,
    VIRTIO_F_NOTIFY_ON_EMPTY,
    VIRTIO_RING_F_INDIRECT_DESC,
    VIRTIO_RING_F_EVENT_IDX,
  ];
  assert.equal(VIRTIO_DEVICE_FEATURES, bits.reduce((all, n) => all | (1n << BigInt(n)), 0n));
});
