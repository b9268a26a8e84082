/**
 * The raw libc symbol table. Only the wrappers in this folder call these
 * symbols: they check every result and turn failures into {@link SyscallError}.
 *
 * `ssize_t` results whose value is bounded by a buffer we allocate (< 2 GiB)
 * are declared `i32`: the x86-64 and aarch64 ABIs return them in a 64-bit
 * register whose low half is the same number, and an `i32` result avoids a
 * BigInt per call on the hot path.
 *
 * @module
 */

/** The symbol table: one entry per libc function, its C prototype above it. */
export const SYMBOLS = {
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
  // int open(const char *pathname, int flags, ... /* mode_t mode */);
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count);
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count);
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // ssize_t readv(int fd, const struct iovec *iov, int iovcnt);
  readv: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  // ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
  writev: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  // ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset);
  preadv: { parameters: ["i32", "buffer", "i32", "i64"], result: "isize" },
  // The same, run on a helper thread (measured against io_uring by bench:scsi).
  preadv_nonblocking: {
    name: "preadv",
    parameters: ["i32", "buffer", "i32", "i64"],
    result: "isize",
    nonblocking: true,
  },
  // ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags);
  preadv2: { parameters: ["i32", "buffer", "i32", "i64", "i32"], result: "isize" },
  // ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset);
  pwritev: { parameters: ["i32", "buffer", "i32", "i64"], result: "isize" },
  // int fstat(int fd, struct stat *statbuf);
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  // int fstatfs(int fd, struct statfs *buf);
  fstatfs: { parameters: ["i32", "buffer"], result: "i32" },
  // int fcntl(int fd, int cmd, ... /* int arg */);
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, ... /* void *arg */);
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // The same with an integer argument (I2C_SLAVE takes the address itself).
  ioctl_value: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  // int socket(int domain, int type, int protocol);
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int socketpair(int domain, int type, int protocol, int sv[2]);
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int bind(int sockfd, const struct sockaddr *addr, socklen_t addrlen);
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int listen(int sockfd, int backlog);
  listen: { parameters: ["i32", "i32"], result: "i32" },
  // int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  // int connect(int sockfd, const struct sockaddr *addr, socklen_t addrlen);
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int shutdown(int sockfd, int how);
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  // int setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen);
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen);
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // ssize_t sendmsg(int sockfd, const struct msghdr *msg, int flags);
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // ssize_t send(int sockfd, const void *buf, size_t len, int flags);
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  // The same on a helper thread, for a send that must wait (AF_VSOCK SOCK_SEQPACKET messages).
  send_nonblocking: {
    name: "send",
    parameters: ["i32", "buffer", "usize", "i32"],
    result: "isize",
    nonblocking: true,
  },
  // ssize_t recv(int sockfd, void *buf, size_t len, int flags);
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  // ssize_t recvmsg(int sockfd, struct msghdr *msg, int flags);
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
  mmap: {
    parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"],
    result: "pointer",
  },
  // int munmap(void *addr, size_t length);
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // int memfd_create(const char *name, unsigned int flags);
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  // int ftruncate(int fd, off_t length);
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  // int eventfd(unsigned int initval, int flags);
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // int epoll_create1(int flags);
  epoll_create1: { parameters: ["i32"], result: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  // The same, run on a helper thread so Deno's own loop keeps turning meanwhile.
  epoll_wait_nonblocking: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // int timerfd_create(int clockid, int flags);
  timerfd_create: { parameters: ["i32", "i32"], result: "i32" },
  // int timerfd_settime(int fd, int flags, const struct itimerspec *new, struct itimerspec *old);
  timerfd_settime: {
    parameters: ["i32", "i32", "buffer", "pointer"],
    result: "i32",
  },
  // int sched_yield(void);
  sched_yield: { parameters: [], result: "i32" },
  // int fdatasync(int fd);
  fdatasync: { parameters: ["i32"], result: "i32" },
  // int fallocate(int fd, int mode, off_t offset, off_t len);
  fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  // io_uring has no libc wrapper: long syscall(long number, ...), one
  // entry per argument list (the numbers are the same on x86-64 and aarch64).
  // int io_uring_setup(u32 entries, struct io_uring_params *p);
  io_uring_setup: { name: "syscall", parameters: ["i64", "u32", "buffer"], result: "i32" },
  // int io_uring_enter(int fd, u32 to_submit, u32 min_complete, u32 flags, sigset_t *sig, size_t sz);
  io_uring_enter: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "u32", "u32", "pointer", "usize"],
    result: "i32",
  },
  // int io_uring_register(int fd, unsigned opcode, void *arg, unsigned nr_args);
  io_uring_register: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "buffer", "u32"],
    result: "i32",
  },
  // long sysconf(int name);
  sysconf: { parameters: ["i32"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded libc symbols. Callers outside `ffi/` use the wrappers instead. */
export const libc: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] =
  Deno.dlopen("libc.so.6", SYMBOLS).symbols;
