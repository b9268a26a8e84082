/*
 * The floor for the core benchmark: an eventfd round trip between two
 * processes, the same two wake-ups a vhost-user request at queue depth 1
 * costs (kick, then call), with no ring work at all.
 * Usage: eventfd_pingpong ROUNDS [PARENT_CPU CHILD_CPU]
 *   -> prints "rounds seconds p50_us p99_us" on stdout. With CPUs given, each
 *   process is pinned, as the benchmark pins the front-end and the daemon.
 *   The percentiles let the benchmark compare medians with medians: on a
 *   shared machine the mean carries other tenants' preemptions.
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

static double micros(struct timespec a, struct timespec b) {
  return (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

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
  double *latency = malloc(sizeof(double) * rounds);
  must(latency != NULL, "malloc");
  struct timespec start, end, before, after;
  clock_gettime(CLOCK_MONOTONIC, &start);
  after = start;
  for (long i = 0; i < rounds; i++) {
    before = after;
    must(write(kick, &value, 8) == 8, "write kick");
    must(read(call, &value, 8) == 8, "read call");
    clock_gettime(CLOCK_MONOTONIC, &after);
    latency[i] = micros(before, after);
  }
  end = after;
  waitpid(child, NULL, 0);
  qsort(latency, rounds, sizeof(double), compare);
  printf("%ld %.9f %.3f %.3f\n", rounds, micros(start, end) / 1e6, latency[rounds / 2],
         latency[rounds * 99 / 100]);
  free(latency);
  return 0;
}
