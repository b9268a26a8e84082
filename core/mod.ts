/**
 * The vhost-user core every device reuses: the daemon and its event loop,
 * the protocol state machine, guest memory, split virtqueues, CLI and logging.
 * Nothing here knows of any particular device.
 *
 * @module
 */

export * from "./cli.ts";
export * from "./daemon.ts";
export type { DeviceContext, VirtioDevice } from "./device.ts";
export * from "./deferred_pass.ts";
export * from "./event_loop.ts";
export * from "./log.ts";
export * from "./memory/guest_memory.ts";
export { bit, ProtocolFeature } from "./protocol/constants.ts";
export type { MemoryRegionDescriptor } from "./protocol/message.ts";
export * from "./virtio/descriptor_chain.ts";
export * from "./virtio/features.ts";
export * from "./virtio/split_queue.ts";
