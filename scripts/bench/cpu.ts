/**
 * CPU time of a process, for the benchmarks: the sum over its threads of the
 * time they ran (`/proc/<pid>/task/<tid>/schedstat`, first field, in ns),
 * finer than the clock ticks of `/proc/<pid>/stat`.
 *
 * @module
 */

/** Seconds `pid` has run so far, all live threads together; NaN if it is gone. */
export function cpuSeconds(pid: number): number {
  let ns = 0;
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(
          Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0],
        );
      } catch {
        // The thread ended between the listing and the read.
      }
    }
  } catch {
    return NaN;
  }
  return ns / 1e9;
}
