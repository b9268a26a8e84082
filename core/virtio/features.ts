/**
 * Virtio feature bits and split-ring flags, named as the VIRTIO 1.2 spec
 * names them (§6 "Reserved Feature Bits", §2.7 "Split Virtqueues").
 *
 * @module
 */

/** Notify even when the available ring is empty (legacy). */
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
/** Any descriptor layout (legacy). */
export const VIRTIO_F_ANY_LAYOUT = 27;
/** Indirect descriptor tables (§2.7.5.3). */
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
/** `used_event` / `avail_event` notification suppression (§2.7.10). */
export const VIRTIO_RING_F_EVENT_IDX = 29;
/** A VIRTIO 1.x device: little-endian rings, no legacy layout. */
export const VIRTIO_F_VERSION_1 = 32;
/** Addresses are IOVAs behind an IOMMU (never offered here). */
export const VIRTIO_F_ACCESS_PLATFORM = 33;
/** Packed virtqueues (never offered here). */
export const VIRTIO_F_RING_PACKED = 34;

/**
 * The transport features a device here offers unless it says otherwise
 * (rust-vmm's devices offer the same four): VIRTIO 1.x, NOTIFY_ON_EMPTY,
 * indirect descriptors and event-index suppression, all served by the core's
 * split queue.
 */
export const VIRTIO_DEVICE_FEATURES: bigint = (1n << BigInt(VIRTIO_F_VERSION_1)) |
  (1n << BigInt(VIRTIO_F_NOTIFY_ON_EMPTY)) | (1n << BigInt(VIRTIO_RING_F_INDIRECT_DESC)) |
  (1n << BigInt(VIRTIO_RING_F_EVENT_IDX));

/** §2.7.5: the buffer continues via `next`. */
export const VIRTQ_DESC_F_NEXT = 1;
/** §2.7.5: the buffer is device write-only (otherwise device read-only). */
export const VIRTQ_DESC_F_WRITE = 2;
/** §2.7.5.3: the buffer holds an indirect descriptor table. */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** §2.7.6: the driver asks for no used-buffer notification. */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** §2.7.8: the device asks for no available-buffer notification. */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Largest split queue size (§2.7: a power of 2 up to 32768). */
export const MAX_QUEUE_SIZE = 32768;
