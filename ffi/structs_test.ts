import assert from "node:assert/strict";
import {
  CMSGHDR_SIZE,
  cmsgSpace,
  EPOLL_EVENT_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  IOVEC_SIZE,
  ITIMERSPEC_SIZE,
  MSGHDR,
  MSGHDR_SIZE,
  setAddress,
  SOCKADDR_UN_SIZE,
  STAT_SIZE,
  STAT_SIZE_OFFSET,
} from "./structs.ts";

const PROBE = `
#include <stddef.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\\n",
    sizeof(struct iovec), sizeof(struct msghdr), offsetof(struct msghdr, msg_iov),
    offsetof(struct msghdr, msg_iovlen), offsetof(struct msghdr, msg_control),
    offsetof(struct msghdr, msg_controllen), offsetof(struct msghdr, msg_flags),
    sizeof(struct cmsghdr), (size_t)CMSG_SPACE(4 * 32), sizeof(struct epoll_event),
    offsetof(struct epoll_event, data), sizeof(struct sockaddr_un),
    sizeof(struct itimerspec), offsetof(struct stat, st_size), sizeof(struct stat),
    offsetof(struct msghdr, msg_namelen));
  return 0;
}`;

Deno.test("struct layouts match the C compiler's", async (t) => {
  const expected = [
    IOVEC_SIZE,
    MSGHDR_SIZE,
    MSGHDR.iov,
    MSGHDR.iovlen,
    MSGHDR.control,
    MSGHDR.controllen,
    MSGHDR.flags,
    CMSGHDR_SIZE,
    cmsgSpace(4 * 32),
    EPOLL_EVENT_SIZE,
    EPOLL_EVENT_DATA_OFFSET,
    SOCKADDR_UN_SIZE,
    ITIMERSPEC_SIZE,
    STAT_SIZE_OFFSET,
  ];
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/probe.c`, PROBE);
    const cc = await new Deno.Command("cc", {
      args: ["-o", `${dir}/probe`, `${dir}/probe.c`],
      stderr: "piped",
    }).output().catch(() => null);
    if (!cc?.success) {
      await t.step({ name: "no C compiler here: checked constants only", fn: () => {} });
      assert.equal(MSGHDR_SIZE, 56);
      return;
    }
    const out = await new Deno.Command(`${dir}/probe`).output();
    const actual = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
    assert.deepEqual(actual.slice(0, 14), expected);
    assert.ok(STAT_SIZE >= actual[14], "stat buffer holds struct stat");
    assert.equal(actual[15], MSGHDR.namelen);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("epoll_event is packed on x86-64 only", () => {
  assert.equal(EPOLL_EVENT_SIZE, Deno.build.arch === "x86_64" ? 12 : 16);
});

Deno.test("64-bit addresses round-trip through numbers", () => {
  const view = new DataView(new ArrayBuffer(8));
  for (const value of [0, 1, 2 ** 32 - 1, 2 ** 32, 0x7fff_1234_5678, 2 ** 53 - 1]) {
    setAddress(view, { offset: 0, value });
    assert.equal(view.getBigUint64(0, true), BigInt(value));
  }
});
