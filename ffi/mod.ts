/**
 * Typed libc bindings. Each wrapper checks its result and throws a
 * {@link SyscallError} naming the call and errno. Nothing here knows of
 * vhost-user or virtio.
 *
 * @module
 */

export * from "./errno.ts";
export * from "./fd.ts";
export * from "./iovec.ts";
export * from "./eventfd.ts";
export * from "./epoll.ts";
export * from "./timerfd.ts";
export * from "./memory.ts";
export * from "./socket.ts";
export * from "./message.ts";
export * from "./vsock.ts";
export * from "./sched.ts";
export * from "./i2c_dev.ts";
export { addressOf, stableBuffer } from "./structs.ts";
export * from "./io_uring.ts";
