/*
 * The floor for the core benchmark: an eventfd round trip between two
 * processes, the same two wake-ups a vhost-user request at queue depth 1
 * costs (kick, then call), with no ring work at all.
 * Usage: eventfd_pingpong ROUNDS [PARENT_CPU CHILD_CPU]
 *   -> prints "rounds seconds" on stdout. With CPUs given, each process is
 *   pinned, as the benchmark pins the front-end and the daemon.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void must(int ok, const char *what) {
  if (!ok) {
    perror(what);
    exit(1);
  }
}

static void pin(const char *cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(atoi(cpu), &set);
  must(sched_setaffinity(0, sizeof(set), &set) == 0, "sched_setaffinity");
}

int main(int argc, char **argv) {
  long rounds = argc > 1 ? atol(argv[1]) : 100000;
  int pinned = argc > 3;
  int kick = eventfd(0, 0), call = eventfd(0, 0);
  must(kick >= 0 && call >= 0, "eventfd");
  uint64_t value = 1;
  pid_t child = fork();
  must(child >= 0, "fork");
  if (child == 0) {
    if (pinned) pin(argv[3]);
    for (long i = 0; i < rounds; i++) {
      must(read(kick, &value, 8) == 8, "read kick");
      must(write(call, &value, 8) == 8, "write call");
    }
    _exit(0);
  }
  if (pinned) pin(argv[2]);
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (long i = 0; i < rounds; i++) {
    must(write(kick, &value, 8) == 8, "write kick");
    must(read(call, &value, 8) == 8, "read call");
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  waitpid(child, NULL, 0);
  printf("%ld %.9f\n", rounds, (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
  return 0;
}
