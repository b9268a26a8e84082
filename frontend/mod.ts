/**
 * A vhost-user front-end: guest RAM ({@link DriverMemory}), split
 * virtqueues driven as a Linux guest drives them ({@link DriverQueue}), and
 * the protocol side QEMU plays ({@link VhostUserFrontend}). Nothing here knows
 * any particular device, so it can drive (and check) any back-end: the tests,
 * the benchmarks and vhost-user-check (tools/vhost_user_check) use it.
 *
 * @example
 * ```ts
 * import { DriverMemory, DriverQueue, VhostUserFrontend } from "./mod.ts";
 *
 * const memory = new DriverMemory({ size: 4 << 20 });
 * const queue = new DriverQueue(memory, { size: 256, eventIdx: true });
 * const frontend = await VhostUserFrontend.connect("/tmp/echo.sock");
 * const { features } = frontend.init();
 * frontend.start({ memory, queues: [queue], features });
 * queue.add({ readable: [new Uint8Array([1, 2, 3])], writable: [3] });
 * queue.publish();
 * if (queue.needsKick()) frontend.kick(0);
 * frontend.waitForCall(0, 1000);
 * const [used] = queue.takeUsed();
 * console.log(used.length, used.data);
 * frontend.stop();
 * frontend.close();
 * memory.close();
 * ```
 *
 * @module
 */

export * from "./driver_memory.ts";
export * from "./driver_queue.ts";
export * from "./frontend.ts";
export type { MemoryRegionDescriptor } from "../core/protocol/message.ts";
