/**
 * @module
 * How a run is shown: the warning before it starts, the table a person reads at a glance (check, result, evidence)
 * or the JSON a script reads, and the summary line.
 */
import type { Options } from './args.ts';
import type { Plan, Report } from './run.ts';

/** Said before the first request: what will be sent where, at most, and for how long. */
export function warning(options: Options, planned: Plan, origin: string | null): string {
  const reads = planned.reads === 0 ? '' : ` and ${planned.reads} GET requests`;
  return [
    `idempotency-check: ${options.method} ${options.url.href}${origin === null ? '' : ` (origin mode: test origin ${origin})`}`,
    `Sends real writes: at most ${planned.writes} ${options.method} requests${reads}, within ${options.maxTimeMs / 1000} s.`,
    'Every write may run: point it at a test or staging endpoint, never at production.',
  ].join('\n');
}

/** The result column: a failure stands out. */
const RESULT = { pass: 'pass', fail: 'FAIL', skip: 'skip' } as const;

/** The results as a table a person reads at a glance: check, result, evidence. */
export function table(report: Report): string {
  const width = Math.max('check'.length, ...report.checks.map((check) => check.name.length));
  const rows = report.checks.map((check) => `${check.name.padEnd(width)}  ${RESULT[check.status]}    ${check.detail}`);
  return [`${'check'.padEnd(width)}  result  evidence`, ...rows].join('\n');
}

/** The `--json` output: exactly `{ checks: [{ name, status, detail }], passed, failed, skipped }`. */
export function json(report: Report): string {
  const checks = report.checks.map(({ name, status, detail }) => ({ name, status, detail }));
  return JSON.stringify({ checks, passed: report.passed, failed: report.failed, skipped: report.skipped }, null, 2);
}

/** One line: how many checks passed, failed and were skipped, what was sent, and how long it took. */
export function summary(report: Report, sent: { writes: number; reads: number }, ms: number): string {
  return (
    `${report.checks.length} checks: ${report.passed} passed, ${report.failed} failed, ${report.skipped} skipped ` +
    `(${sent.writes} writes and ${sent.reads} reads sent in ${(ms / 1000).toFixed(1)} s)`
  );
}
