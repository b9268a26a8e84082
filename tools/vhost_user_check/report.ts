/**
 * The report: a table for people, JSON for CI, and the exit status.
 *
 * @module
 */

import type { CheckResult } from "./conformance.ts";
import type { FailureKind, FuzzSummary } from "./fuzz.ts";

/** Everything one run found. */
export interface Report {
  /** The socket or command checked. */
  readonly target: string;
  /** The `--device`, or null. */
  readonly device: string | null;
  /** Conformance checks, in order (empty if skipped). */
  readonly conformance: readonly CheckResult[];
  /** The fuzz run, or null. */
  readonly fuzz: FuzzSummary | null;
  /** A `--replay` result, or null. */
  readonly replay: {
    readonly file: string;
    readonly failure: FailureKind | null;
    readonly detail: string;
  } | null;
}

/** Whether the run found a violation, crash or hang (exit status 1). */
export function failed(report: Report): boolean {
  return report.conformance.some((c) => c.verdict === "fail") ||
    (report.fuzz?.findings.length ?? 0) > 0 || (report.replay?.failure ?? null) !== null;
}

function table(rows: readonly string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i])).join("  ").trimEnd()
  );
}

function kib(value: number | null): string {
  return value === null ? "n/a" : `${value} KiB`;
}

/** The human report: a table per part and a verdict line. */
export function renderText(report: Report): string {
  const lines = [
    `vhost-user-check: ${report.target}${report.device ? ` (--device ${report.device})` : ""}`,
    "",
  ];
  if (report.conformance.length > 0) {
    lines.push("Conformance");
    lines.push(
      ...table([
        ["scenario", "check", "verdict", "detail"],
        ...report.conformance.map((
          c,
        ) => [
          c.scenario,
          c.check,
          c.verdict.toUpperCase(),
          c.detail.replace(/\s+/g, " ").slice(0, 160),
        ]),
      ]).map((l) => `  ${l}`),
    );
    lines.push("");
  }
  const f = report.fuzz;
  if (f) {
    lines.push("Fuzzing");
    lines.push(
      ...table([
        ["seed", String(f.seed)],
        ["messages", `${f.messages} (+ ${f.ringOps} ring writes and kicks)`],
        ["bursts", `${f.bursts} (${f.dropped} ended by the back-end closing the connection)`],
        ["time", `${f.seconds.toFixed(1)} s, ${Math.round(f.rate)} messages/s`],
        ["back-end fds", `${f.fds.before ?? "n/a"} → ${f.fds.after ?? "n/a"}`],
        ["back-end RSS", `${kib(f.rssKiB.before)} → ${kib(f.rssKiB.after)}`],
        ["failures", String(f.findings.length)],
      ]).map((l) => `  ${l}`),
    );
    for (const finding of f.findings) {
      lines.push(
        `  ${finding.kind.toUpperCase()} in burst ${finding.burst}: ${
          finding.detail.replace(/\s+/g, " ").slice(0, 300)
        }`,
      );
      if (finding.reproducer) {
        lines.push(
          `    reproducer (${finding.ops} operations): ${finding.reproducer}; replay with --replay ${finding.reproducer}`,
        );
      }
    }
    lines.push("");
  }
  if (report.replay) {
    lines.push(
      `Replay of ${report.replay.file}: ${
        report.replay.failure
          ? `${report.replay.failure.toUpperCase()}: ${report.replay.detail}`
          : "the back-end took it and served a clean front-end"
      }`,
      "",
    );
  }
  const fails = report.conformance.filter((c) => c.verdict === "fail").length;
  const warns = report.conformance.filter((c) => c.verdict === "warn").length;
  lines.push(
    failed(report)
      ? `FAILED (${fails} conformance failures, ${f?.findings.length ?? 0} fuzz failures${
        report.replay?.failure ? ", replay failed" : ""
      })`
      : `OK (${warns} warnings)`,
  );
  return lines.join("\n");
}

/** The JSON report (`--json`). */
export function renderJson(report: Report): string {
  return JSON.stringify({ ...report, ok: !failed(report) }, null, 2);
}
