/*
 * An AF_VSOCK SOCK_SEQPACKET peer for the vsock e2e test, built static on
 * the host and run in the guest (socat has no vsock SOCK_SEQPACKET).
 *
 *   vsock_seqpeer send CID PORT   connects (retrying for a minute while
 *                                 nobody listens), sends one message of each
 *                                 size below (pattern seed i + 1, MSG_EOR on
 *                                 odd i), then receives as many and checks
 *                                 them against pattern seed 100 + i
 *   vsock_seqpeer answer PORT     the other side of send: accepts one
 *                                 connection, checks send's messages, answers
 *   vsock_seqpeer echo PORT       accepts one connection and sends every
 *                                 message back until end of file
 *
 * Lines "@@RESULT key value" report to the test. The pattern is the
 * xorshift of devices/vsock/testing/guest_stream.ts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static const size_t SIZES[] = {1, 2, 100, 4095, 4096, 4097, 12345, 65536};
#define COUNT (sizeof(SIZES) / sizeof(SIZES[0]))
#define MAX_MESSAGE (128 * 1024)

static void pattern(unsigned char *out, size_t length, uint32_t seed) {
  uint32_t x = seed ? seed : 1;
  for (size_t i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
}

static int fail(const char *what) {
  printf("@@RESULT seq_error %s:%d\n", what, errno);
  return 1;
}

static unsigned char out[MAX_MESSAGE], in[MAX_MESSAGE + 1], want[MAX_MESSAGE];

/* Receives COUNT messages and checks them against pattern seed `seed + i`. */
static int check_messages(int fd, const char *key, uint32_t seed) {
  int good = 0;
  for (size_t i = 0; i < COUNT; i++) {
    ssize_t n = recv(fd, in, sizeof in, 0);
    if (n < 0) return fail("recv");
    pattern(want, SIZES[i], seed + i);
    int ok = (size_t)n == SIZES[i] && memcmp(in, want, n) == 0;
    good += ok;
    printf("@@RESULT %s_%zu %s %zd\n", key, i, ok ? "ok" : "bad", n);
  }
  printf("@@RESULT %s_good %d\n", key, good);
  return 0;
}

/* Sends COUNT messages of pattern seed `seed + i`, MSG_EOR on odd i. */
static int send_messages(int fd, uint32_t seed) {
  for (size_t i = 0; i < COUNT; i++) {
    pattern(out, SIZES[i], seed + i);
    ssize_t n = send(fd, out, SIZES[i], i % 2 ? MSG_EOR : 0);
    if (n != (ssize_t)SIZES[i]) return fail("send");
  }
  return 0;
}

static int do_send(unsigned cid, unsigned port) {
  int fd = -1;
  for (int attempt = 0; fd < 0; attempt++) {
    fd = socket(AF_VSOCK, SOCK_SEQPACKET, 0);
    if (fd < 0) return fail("socket");
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) break;
    /* The peer may still be booting: try again for a minute. */
    if (attempt == 120) return fail("connect");
    close(fd);
    fd = -1;
    usleep(500 * 1000);
  }
  if (send_messages(fd, 1) || check_messages(fd, "seq_in", 100)) return 1;
  close(fd);
  return 0;
}

/* Listens on `port` and accepts one connection; -1 on failure (reported: fail() is 1). */
static int accept_one(unsigned port) {
  int listener = socket(AF_VSOCK, SOCK_SEQPACKET, 0);
  if (listener < 0) return -fail("socket");
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) return -fail("bind");
  if (listen(listener, 1) < 0) return -fail("listen");
  printf("@@LISTENING_SEQ %u\n", port);
  fflush(stdout);
  int fd = accept(listener, NULL, NULL);
  if (fd < 0) return -fail("accept");
  close(listener);
  return fd;
}

static int do_answer(unsigned port) {
  int fd = accept_one(port);
  if (fd < 0) return 1;
  if (check_messages(fd, "seq_answer", 1) || send_messages(fd, 100)) return 1;
  /* Until the sender has read the answers and closed. */
  while (recv(fd, in, sizeof in, 0) > 0) {
  }
  close(fd);
  return 0;
}

static int do_echo(unsigned port) {
  static unsigned char buffer[MAX_MESSAGE];
  int fd = accept_one(port);
  if (fd < 0) return 1;
  int count = 0;
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0) return fail("echo recv");
    if (n == 0) break;
    if (send(fd, buffer, n, 0) != n) return fail("echo send");
    count++;
  }
  printf("@@RESULT seq_echoed %d\n", count);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 4 && strcmp(argv[1], "send") == 0) {
    return do_send(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
  }
  if (argc == 3 && strcmp(argv[1], "echo") == 0) return do_echo(strtoul(argv[2], NULL, 0));
  if (argc == 3 && strcmp(argv[1], "answer") == 0) return do_answer(strtoul(argv[2], NULL, 0));
  fprintf(stderr, "usage: vsock_seqpeer send CID PORT | answer PORT | echo PORT\n");
  return 2;
}
