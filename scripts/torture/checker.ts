/**
 * @module
 * The checker of a fault-schedule run: pure, over the history alone. Each invariant is one of docs/contract.md,
 * stated over what the history shows (docs/guarantees.md, "Random fault schedules", lists them). It is sound: where
 * times leave an outcome open (a record's exact expiry, whether a killed attempt had stored its answer), it allows
 * every outcome the contract allows for some interleaving of the observed times, so it never accuses a correct proxy.
 */
import type { HistoryEvent, RequestEvent } from './history.ts';
import { type CheckResult, type Freed, INVARIANTS, type Invariant, type Violation } from './invariants.ts';
import { fingerprintOf, Model, type Pair, rel, SLACK_MS, type Source } from './model.ts';
import { checkPeriods } from './periods.ts';

export { type CheckResult, type Freed, INVARIANTS, type Invariant, type Violation } from './invariants.ts';
export { rel } from './model.ts';

/** Codes that say the request itself ran nothing at the origin. */
const NOTHING_RAN = new Set(['idempotency_key_reused', 'idempotency_key_in_progress', 'request_too_large', 'idempotency_outcome_unknown']);
const PROBLEM_TYPES = new Set(['application/problem+json', 'application/json']);

/** Checks a history; see {@link INVARIANTS}. */
export function check(events: readonly HistoryEvent[]): CheckResult {
  const model = new Model(events);
  const violations: Violation[] = [];
  const checked = Object.fromEntries(Object.keys(INVARIANTS).map((name) => [name, 0])) as Record<Invariant, number>;
  const fail = (invariant: Invariant, pair: { scope: string; key: string }, time: number, ids: string[], message: string) =>
    violations.push({ invariant, message, scope: pair.scope, key: pair.key, time, events: ids });
  const count = (invariant: Invariant) => checked[invariant]++;
  const periods: Record<Freed, number> = { status: 0, 'no-status': 0, cut: 0, kill: 0, purge: 0, expiry: 0, reconcile: 0 };

  const statuses = new Set(Object.values(model.run.problems));
  /**
   * A proxy's own answer: a problem document with a listed code and that code's status (only a listed status when the
   * client did not read the body whole).
   */
  function ownAnswer(
    answer: { id: string; status: number | null; code: string | null; contentType: string | null },
    pair: Pair,
    time: number,
  ) {
    if (answer.status === null) return;
    count('codes');
    const problem = PROBLEM_TYPES.has((answer.contentType ?? '').split(';')[0]!.trim());
    const listed = answer.code === null ? statuses.has(answer.status) : model.run.problems[answer.code] === answer.status;
    if (!problem || !listed)
      fail(
        'codes',
        pair,
        time,
        [answer.id],
        `${answer.id} answered ${answer.status} ${answer.code ?? answer.contentType ?? 'without a body type'}, which the contract does not list`,
      );
  }

  for (const r of model.requests) {
    if (r.status === null) continue;
    const pair = model.pairOf(r.scope, r.key);
    const at = r.headersAt ?? r.ended;
    const source = model.sourceOf(r);
    if (source === undefined) {
      if (r.execution !== null || r.reconciliation !== null) {
        count('scope');
        fail('scope', pair, at, [r.id], `${r.id} carries ${r.reconciliation ?? r.execution}, which the origin never produced`);
        continue;
      }
      ownAnswer(r, pair, at);
      answeredByProxy(r, pair, at);
      continue;
    }
    answeredFromSource(r, pair, at, source);
  }

  function answeredByProxy(r: RequestEvent, pair: Pair, at: number): void {
    if (r.code === null) return;
    if (NOTHING_RAN.has(r.code)) {
      count('refused');
      const ran = model.executionsOf(r.id);
      if (ran.length > 0)
        fail('refused', pair, at, [r.id, ...ran.map((e) => e.id)], `${r.id} was refused with ${r.code}, yet the origin ran it`);
    }
    if (r.code === 'idempotency_outcome_unknown') {
      count('refused');
      const policy = model.route(r.path).policy;
      if (policy !== 'hold') fail('refused', pair, at, [r.id], `${r.id} got idempotency_outcome_unknown under on_unknown = "${policy}"`);
    }
    if (r.code === 'idempotency_key_reused' || r.code === 'idempotency_key_in_progress') {
      count('conflict');
      const reused = r.code === 'idempotency_key_reused';
      const cause = pair.requests.find(
        (o) => o !== r && o.sent < r.ended + SLACK_MS && (fingerprintOf(o) !== fingerprintOf(r)) === reused && o.op === 'write',
      );
      if (cause === undefined)
        fail(
          'conflict',
          pair,
          at,
          [r.id],
          `${r.id} got ${r.code}, but no other request of this scope and key ${reused ? 'with another body' : 'of the same request'} was sent before it was answered`,
        );
    }
  }

  function answeredFromSource(r: RequestEvent, pair: Pair, at: number, source: Source): void {
    const id = model.sourceId(source);
    // codes: an origin answer arrives with the status its execution (or reconciliation) sent.
    count('codes');
    const status = 'execution' in source ? source.execution.status : source.reconciliation.status;
    if (r.status !== status) fail('codes', pair, at, [r.id, id], `${r.id} answered ${r.status}, but ${id} sent ${status}`);
    // scope: only this scope's and key's execution, of this very request (path and body).
    count('scope');
    if ('execution' in source) {
      const e = source.execution;
      if (e.credential !== r.scope || e.key !== r.key || e.path !== r.path || e.bodySha256 !== r.bodySha256)
        fail(
          'scope',
          pair,
          at,
          [r.id, e.id],
          `${r.id} (scope ${short(r.scope)}, key ${r.key}, ${r.path}) carries ${e.id}, run for scope ${short(e.credential)}, key ${e.key}, ${e.path}${e.bodySha256 === r.bodySha256 ? '' : ', another body'}`,
        );
    } else {
      const q = source.reconciliation;
      const described = q.execution === null ? undefined : model.executions.get(q.execution);
      if (
        q.credential !== r.scope ||
        q.key !== r.key ||
        (described !== undefined && (described.credential !== r.scope || described.key !== r.key))
      )
        fail(
          'scope',
          pair,
          at,
          [r.id, q.id],
          `${r.id} (scope ${short(r.scope)}, key ${r.key}) carries reconciliation ${q.id} of scope ${short(q.credential)}, key ${q.key}`,
        );
    }
    // bytes: read whole, the very bytes of the source's full answer.
    if (r.read === 'whole') {
      count('bytes');
      const [sha, bytes] =
        'execution' in source
          ? [source.execution.answerSha256, source.execution.answerBytes]
          : [source.reconciliation.answerSha256, source.reconciliation.answerBytes];
      if (r.sha256 !== sha || r.bytes !== bytes)
        fail(
          'bytes',
          pair,
          r.ended,
          [r.id, id],
          `${r.id} read ${r.bytes} bytes whole that differ from the ${bytes} bytes of ${id}'s answer`,
        );
    }
    // marked: the request that ran an execution gets it unmarked; everyone else gets it marked as a replay.
    count('marked');
    if ('execution' in source && (r.id === source.execution.tag) === r.replay)
      fail(
        'marked',
        pair,
        at,
        [r.id, id],
        r.replay
          ? `${r.id} ran ${id} yet its answer is marked Idempotent-Replay`
          : `${r.id} got ${id}, run by ${source.execution.tag}, without Idempotent-Replay`,
      );
    if ('reconciliation' in source && !r.replay)
      fail('marked', pair, at, [r.id, id], `${r.id} got reconciliation ${id} without Idempotent-Replay`);
    // expires-header: none on an answer that freed the key.
    if ('execution' in source && !source.execution.ran) {
      count('expires-header');
      if (r.expires !== null)
        fail(
          'expires-header',
          pair,
          at,
          [r.id, id],
          `${r.id} got ${id}'s ${r.status}, which frees the key, with Idempotency-Expires ${r.expires}`,
        );
    }
    if (r.replay) replayed(r, pair, source);
  }

  /** Checks of an answer marked as a replay: it came from storage only while its record held it. */
  function replayed(r: RequestEvent, pair: Pair, source: Source): void {
    const id = model.sourceId(source);
    // After every attempt's end a replay is read from storage: before it, a duplicate may have joined the live answer.
    const finished = model.finishedBy(id);
    const fromStorage = r.sent > finished + SLACK_MS;
    if ('execution' in source && !source.execution.ran) {
      count('not-stored');
      if (fromStorage)
        fail(
          'not-stored',
          pair,
          r.sent,
          [r.id, id],
          `${r.id} got ${id}'s ${source.execution.status} as a replay, sent after that attempt had ended (${rel(model, finished)}): a ${source.execution.status} is never stored`,
        );
    }
    count('expiry');
    const expiresBy = model.expiresAtMost(source);
    if (fromStorage && r.sent > expiresBy + SLACK_MS)
      fail(
        'expiry',
        pair,
        r.sent,
        [r.id, id],
        `${r.id}, sent at ${rel(model, r.sent)}, got a replay of ${id}, whose record expired by ${rel(model, expiresBy)} at the latest`,
      );
    count('purge');
    const since = model.sourceTime(source);
    const purge = model.purgesDone(pair).find((p) => p.sent > since + SLACK_MS && p.ended < r.sent - SLACK_MS);
    if (purge !== undefined)
      fail(
        'purge',
        pair,
        r.sent,
        [r.id, id, purge.id],
        `${r.id} got a replay of ${id} (stored by ${rel(model, since)}) after ${purge.id} purged the key (answered 204 at ${rel(model, purge.ended)})`,
      );
  }

  // expires-header: every answer of one source that carries Idempotency-Expires carries the same.
  for (const [id, answers] of model.answersOf) {
    count('expires-header');
    const values = new Set(answers.map((r) => r.expires).filter((v) => v !== null));
    if (values.size > 1) {
      const first = answers[0]!;
      fail(
        'expires-header',
        first,
        Math.max(...answers.map((r) => r.sent)),
        [...answers.map((r) => r.id), id],
        `the answers carrying ${id} say it expires at ${[...values].join(' and ')}`,
      );
    }
  }

  for (const p of model.purges) {
    if (p.status === null || p.status === 204) continue;
    ownAnswer(p, model.pairOf(p.scope, p.key), p.ended);
  }

  for (const pair of model.pairs.values()) checkPeriods(model, { fail, count, periods }, pair);

  violations.sort((a, b) => a.time - b.time);
  return { violations, checked, periods };
}

const short = (hash: string | null): string => (hash === null ? 'none' : hash.slice(0, 8));
