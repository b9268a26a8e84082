/*
 * The host side of the vsock host-only benchmark, and both ends of its
 * floor: plain blocking AF_UNIX stream I/O with no runtime in the way.
 *
 *   unix_peer sink PATH BYTES            listen on PATH, accept one, read
 *                                        BYTES; prints seconds from the
 *                                        first byte to the last
 *   unix_peer source PATH BYTES CHUNK [PORT]
 *                                        connect to PATH (then, with PORT,
 *                                        the hybrid vsock "CONNECT PORT\n"
 *                                        and its "OK" line), write BYTES in
 *                                        CHUNK-byte writes, close
 *   unix_peer connects PATH COUNT [PORT] COUNT times: connect (and the
 *                                        handshake), close; prints seconds
 *   unix_peer accepts PATH COUNT         listen, accept and close COUNT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void must(int ok, const char *what) {
  if (!ok) {
    perror(what);
    exit(1);
  }
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static struct sockaddr_un address(const char *path) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
  return a;
}

static int listen_on(const char *path) {
  struct sockaddr_un a = address(path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  must(fd >= 0, "socket");
  unlink(path);
  must(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
  must(listen(fd, 128) == 0, "listen");
  return fd;
}

/* Connects, and with a port does the hybrid vsock handshake. */
static int connect_to(const char *path, const char *port) {
  struct sockaddr_un a = address(path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  must(fd >= 0, "socket");
  must(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
  if (port) {
    char line[64];
    int n = snprintf(line, sizeof(line), "CONNECT %s\n", port);
    must(write(fd, line, n) == n, "write CONNECT");
    /* "OK <port>\n", read a byte at a time so no payload is swallowed. */
    int got = 0;
    char c = 0;
    while (c != '\n') {
      must(read(fd, &c, 1) == 1, "read OK");
      line[got < 63 ? got++ : got] = c;
    }
    must(strncmp(line, "OK ", 3) == 0, "handshake refused");
  }
  return fd;
}

int main(int argc, char **argv) {
  must(argc >= 4, "usage");
  const char *mode = argv[1], *path = argv[2];
  long count = atol(argv[3]);
  if (strcmp(mode, "sink") == 0) {
    int listener = listen_on(path);
    printf("listening\n");
    fflush(stdout);
    int fd = accept(listener, NULL, NULL);
    must(fd >= 0, "accept");
    static char buffer[256 * 1024];
    long got = 0;
    double start = 0;
    while (got < count) {
      ssize_t n = read(fd, buffer, sizeof(buffer));
      must(n > 0, "read");
      if (got == 0) start = now();
      got += n;
    }
    printf("%.9f\n", now() - start);
  } else if (strcmp(mode, "source") == 0) {
    must(argc >= 5, "usage");
    long chunk = atol(argv[4]);
    int fd = connect_to(path, argc > 5 ? argv[5] : NULL);
    char *buffer = calloc(1, chunk);
    for (long sent = 0; sent < count;) {
      long want = count - sent < chunk ? count - sent : chunk;
      ssize_t n = write(fd, buffer, want);
      must(n > 0, "write");
      sent += n;
    }
    close(fd);
  } else if (strcmp(mode, "connects") == 0) {
    double start = now();
    for (long i = 0; i < count; i++) close(connect_to(path, argc > 4 ? argv[4] : NULL));
    printf("%.9f\n", now() - start);
  } else if (strcmp(mode, "accepts") == 0) {
    int listener = listen_on(path);
    printf("listening\n");
    fflush(stdout);
    for (long i = 0; i < count; i++) {
      int fd = accept(listener, NULL, NULL);
      must(fd >= 0, "accept");
      close(fd);
    }
  } else {
    must(0, "unknown mode");
  }
  return 0;
}
