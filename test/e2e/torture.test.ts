/**
 * Issue #30: the short fixed-seed fault-schedule run. The proxy as users run it (its `wrangler deploy --dry-run`
 * bundle on the bare workerd runtime, SQLite Durable Objects on local disk) in front of the recording origin
 * (`src/check/origin.ts`), under the seeded workload of `scripts/torture/` (8 clients, keys shared by 3 credentials,
 * 2-3 bodies per key, the three on_unknown policies and a 2 s TTL, origin behaviours drawn per request) and its faults
 * (SIGKILL of the runtime and restart on the same storage, client disconnects, admin purges, expiry). The checker reads
 * the whole history and checks the contract's invariants (docs/guarantees.md, "Random fault schedules").
 *
 * The seed is a constant: it changes only when this file is edited, so a failure here replays with the command it
 * prints (`npm run torture -- --seed ...`). The schedule is fixed by it; the operating system's interleaving is not.
 */
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alarmLine, summarize, summaryLines, violationLines } from '../../scripts/torture/report.ts';
import { runTorture } from '../../scripts/torture/run.ts';

const SEED = 30;
const REQUESTS = 500;
const KILL_EVERY = 100;

describe('a seeded fault-schedule run (issue #30)', () => {
  it(`seed ${SEED}: ${REQUESTS} requests under SIGKILLs, client disconnects, admin purges and expiry break no invariant of the contract`, async () => {
    const result = await runTorture({ seed: SEED, requests: REQUESTS, killEvery: KILL_EVERY });
    const summary = summarize(result.events, result.check);
    const report = [
      ...result.check.violations.slice(0, 3).flatMap((v) => violationLines(result.events, v)),
      ...summaryLines(summary, result.check, result.seconds, result.file),
      alarmLine(result.alarms),
      ...(result.check.violations.length > 0 ? ['the runtime said:', result.output.slice(-4000)] : []),
    ].join('\n');
    console.log(report);
    expect(result.check.violations, report).toEqual([]);
    // The schedule ran as drawn: every request was sent, and the SIGKILLs it drew (by request count) all happened.
    expect(summary.requests).toBe(REQUESTS);
    expect(summary.faults.kills).toBeGreaterThanOrEqual(Math.floor(REQUESTS / (KILL_EVERY * 1.5)));
    expect(summary.executions).toBeGreaterThan(0);
    // The expiry alarm runs on bare workerd: what expired once the workload had ended was deleted.
    expect(result.alarms.objects).toBeGreaterThan(0);
    expect(result.alarms.left, report).toBe(0);
    rmSync(result.file);
  }, 300_000);
});
