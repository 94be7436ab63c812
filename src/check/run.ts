/**
 * @module
 * One run of `idempotency-check`: the plan (which checks, how many requests at most), the preflight that makes sure
 * the checks can judge anything (the host answers, the credential is taken, executions can be seen), then every
 * check in order, each with its own tag and fresh keys.
 */
import { randomUUID } from 'node:crypto';
import type { Options } from './args.ts';
import { BASIC_CHECKS, type Check } from './checks.ts';
import { type Context, newKey, type Notes, skip, type Status, type Verdict } from './context.ts';
import { FAULT_CHECKS } from './faults.ts';
import { Bound, createSession, same, type Session, show } from './http.ts';
import { JUDGED_CHECKS } from './judged.ts';
import type { RecordingOrigin } from './origin.ts';

/** Every check, in the order it runs. */
const CHECKS: readonly Check[] = [...BASIC_CHECKS, ...FAULT_CHECKS, ...JUDGED_CHECKS];

/** The probes that tell whether executions can be seen (black-box), or the one write that finds the origin. */
const probes = (originMode: boolean): number => (originMode ? 1 : 3);

/** What a run will send: its checks and the most writes, reads and time it may take. */
export interface Plan {
  readonly writes: number;
  readonly reads: number;
  /** Retries of refusals that ask for one (counted in `writes`). */
  readonly retries: number;
}

/** The plan of a run with `options`: which checks run (origin mode adds the fault checks) and its bounds. */
export function plan(options: Options): Plan {
  const originMode = options.originPort !== null;
  const running = CHECKS.filter((check) => originMode || !check.originOnly);
  const retries = 2 * options.concurrency + 10;
  return {
    writes: probes(originMode) + running.reduce((sum, check) => sum + check.writes(options), 0) + retries,
    reads: running.reduce((sum, check) => sum + check.reads, 0),
    retries,
  };
}

/** The target cannot be checked (unreachable, refusing the credential, not forwarding to the origin): exit 2. */
export class Unusable extends Error {}

/** What a run found: each check's result, and the totals. */
export interface Report {
  readonly checks: readonly { readonly name: string; readonly status: Status; readonly detail: string }[];
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
}

const CONNECTION_CODES = /^(E[A-Z]+|UND_ERR_[A-Z_]+|ERR_TLS[A-Z_]*|[A-Z_]*CERT[A-Z_]*)$/;

/** Finds what would make every check meaningless; returns how executions are seen. */
async function preflight(send: Context['send'], options: Options, origin: RecordingOrigin | null): Promise<Context['visible']> {
  const where = `${options.method} ${options.url.href}`;
  const answers = await Promise.all(Array.from({ length: probes(origin !== null) }, () => send({ key: newKey() })));
  for (const answer of answers) {
    if (answer.status === 0) {
      const reason = answer.code !== null && CONNECTION_CODES.test(answer.code) ? answer.code : answer.error;
      throw new Unusable(`cannot reach ${options.url.host}: ${reason}`);
    }
    if (answer.status === 401 || answer.status === 403) {
      throw new Unusable(`${where} refused the credential (${show(answer)}): pass it with -H, e.g. -H 'Authorization: Bearer sk_test_...'`);
    }
    if (answer.status === 404 || answer.status === 405) throw new Unusable(`${where} answered ${show(answer)}: not a write this URL takes`);
    if (answer.status >= 500) throw new Unusable(`${where} answered ${show(answer)}: it fails before any check`);
    if (answer.status >= 400) {
      throw new Unusable(
        `${where} answered ${show(answer)} to a fresh key: the checks need a write that succeeds (pass a body it takes with -d)`,
      );
    }
  }
  if (origin !== null) {
    await origin.settled(10_000);
    if (!origin.executions().some((execution) => execution.tag?.endsWith(':preflight'))) {
      throw new Unusable(
        `${where} answered ${show(answers[0]!)}, but nothing reached the test origin on ${origin.url}: start the layer under test with its upstream there (this proxy: ORIGIN_URL=${origin.url})`,
      );
    }
    return { yes: true, how: 'counted by the test origin' };
  }
  const distinct = answers.filter((answer, i) => answers.findIndex((other) => same(other, answer)) === i).length;
  const got = `${answers.length} writes with different keys got ${distinct === answers.length ? 'different answers' : `${distinct} different answer(s)`}`;
  return distinct === answers.length ? { yes: true, how: got } : { yes: false, how: `${got}, so answers do not tell executions apart` };
}

/** Runs every check against `options.url`; `origin` is the recording origin in origin mode. */
export async function runChecks(
  options: Options,
  origin: RecordingOrigin | null,
  planned: Plan,
  deadline: number,
): Promise<{ report: Report; sent: Session['sent'] }> {
  const session = createSession(options, { ...planned, deadline }, origin !== null);
  const run = randomUUID().slice(0, 8);
  const send =
    (name: string): Context['send'] =>
    (request) =>
      session.send(`${run}:${name}`, request);
  const visible = await preflight(send('preflight'), options, origin);
  const notes: Notes = { refusals: [] };
  const results: Report['checks'][number][] = [];
  let stopped: string | null = null;
  for (const check of CHECKS) {
    let verdict: Verdict;
    if (check.originOnly && origin === null) {
      verdict = skip('origin mode only (--origin-port): needs a test origin that answers with faults and counts executions');
    } else if (stopped !== null) {
      verdict = skip(`not run: ${stopped}`);
    } else {
      const tag = `${run}:${check.name}`;
      const executions =
        origin === null
          ? null
          : async (method?: string): Promise<number> => {
              await origin.settled(10_000);
              return origin.executions().filter((e) => e.tag === tag && (method === undefined || e.method === method)).length;
            };
      try {
        verdict = await check.run({ options, send: send(check.name), executions, visible, notes });
      } catch (error) {
        if (error instanceof Bound) stopped = error.message;
        verdict = skip(error instanceof Bound ? `stopped: ${stopped}` : `the check could not run: ${(error as Error).message}`);
      }
    }
    results.push({ name: check.name, ...verdict });
  }
  const count = (status: Status) => results.filter((result) => result.status === status).length;
  return { report: { checks: results, passed: count('pass'), failed: count('fail'), skipped: count('skip') }, sent: session.sent };
}
