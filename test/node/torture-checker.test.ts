/**
 * Issue #30: the fault-schedule run's checker (`scripts/torture/checker.ts`), over small synthetic histories. Each
 * history below holds one thing the contract forbids, and the checker must name that invariant; the histories the
 * contract allows (a join after the TTL, a takeover after a SIGKILL's lease, a reconciled answer) must pass, since the
 * checker must never accuse a correct proxy. And every planted bug of `scripts/torture/mutants.ts` still applies to
 * the source, exactly once.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { check, type Invariant } from '../../scripts/torture/checker.ts';
import type {
  ExecutionEvent,
  HistoryEvent,
  KillEvent,
  PurgeEvent,
  ReconciliationEvent,
  RequestEvent,
  RunEvent,
} from '../../scripts/torture/history.ts';
import { applyMutant, MUTANTS } from '../../scripts/torture/mutants.ts';
import { problemTable } from '../../scripts/torture/run.ts';
import { LEASE_MS, ROUTES } from '../../scripts/torture/workload.ts';

const T0 = 1_800_000_000_000;
const SCOPE_A = 'a'.repeat(64);
const SCOPE_B = 'b'.repeat(64);
const BODY = '0'.repeat(64);
const OTHER_BODY = '1'.repeat(64);
const ANSWER = 'f'.repeat(64);
const DAY = 86_400_000;

const run: RunEvent = {
  type: 'run',
  seed: 7,
  mutant: null,
  started: T0,
  leaseMs: LEASE_MS,
  maxBodyBytes: 65_536,
  routes: ROUTES,
  problems: problemTable(readFileSync('src/shared/problem.ts', 'utf8')),
  command: 'npm run torture -- --seed 7',
};

let n = 0;
/** A keyed write sent at `T0 + at` ms, answered 10 ms later (what is not given is a plain 200 read whole). */
function request(at: number, fields: Partial<RequestEvent> = {}): RequestEvent {
  n++;
  const route = fields.path?.split('/')[2] ?? 'retry';
  return {
    type: 'request',
    id: `r${n}`,
    n,
    client: 0,
    op: 'write',
    credential: 'a',
    scope: SCOPE_A,
    key: 'k00',
    path: `/t/${route}/k00`,
    route,
    variant: 0,
    bodySha256: BODY,
    behaviour: 'fast',
    resend: 0,
    abortAfterBytes: null,
    giveUpMs: null,
    sent: T0 + at,
    headersAt: T0 + at + 5,
    ended: T0 + at + 10,
    status: 200,
    replay: false,
    expires: null,
    execution: null,
    reconciliation: null,
    contentType: 'application/json',
    code: null,
    read: 'whole',
    bytes: 100,
    sha256: ANSWER,
    error: null,
    ...fields,
  };
}

/** The origin's execution of `r` (200, 100 bytes), started 2 ms after it was sent. */
function execution(r: RequestEvent, fields: Partial<ExecutionEvent> = {}): ExecutionEvent {
  return {
    type: 'execution',
    id: `e-${r.id}`,
    seq: r.n,
    started: r.sent + 2,
    headersAt: r.sent + 3,
    ended: r.sent + 4,
    method: 'POST',
    path: r.path,
    key: r.key,
    credential: r.scope,
    bodySha256: r.bodySha256,
    bodyBytes: 10,
    tag: r.id,
    behaviour: r.behaviour,
    status: 200,
    ran: true,
    answerSha256: ANSWER,
    answerBytes: 100,
    sentSha256: ANSWER,
    sentBytes: 100,
    outcome: 'answered',
    ...fields,
  };
}

/** `r` answered with `e`'s answer (marked as a replay unless `r` ran it). */
const answered = (r: RequestEvent, e: ExecutionEvent, fields: Partial<RequestEvent> = {}): RequestEvent => ({
  ...r,
  status: e.status,
  execution: e.id,
  replay: e.tag !== r.id,
  sha256: e.answerSha256,
  bytes: e.answerBytes,
  ...fields,
});

/** `r` answered by the proxy itself with `code`. */
const refused = (r: RequestEvent, code: string): RequestEvent => ({
  ...r,
  status: run.problems[code]!,
  code,
  contentType: 'application/problem+json',
  sha256: 'c'.repeat(64),
});

const purge = (at: number, status = 204): PurgeEvent => ({
  type: 'purge',
  id: `p${at}`,
  client: 1,
  credential: 'a',
  scope: SCOPE_A,
  key: 'k00',
  sent: T0 + at,
  ended: T0 + at + 10,
  status,
  code: null,
  contentType: null,
  error: null,
});

const kill = (at: number): KillEvent => ({
  type: 'kill',
  id: `k${at}`,
  time: T0 + at,
  dead: T0 + at + 20,
  restarted: T0 + at + 100,
  port: 1,
  afterRequests: 0,
});

const planted = MUTANTS.map((m) => [m.name, m] as const);

const violated = (...events: HistoryEvent[]): Invariant[] =>
  [...new Set(check([run, ...events]).violations.map((v) => v.invariant))].sort();

describe('the fault-schedule checker', () => {
  describe('passes what the contract allows', () => {
    it('a first answer, its replays and a conflict', () => {
      const first = request(0);
      const e = execution(first);
      const replay = request(100);
      const other = request(200, { bodySha256: OTHER_BODY, variant: 1 });
      expect(violated(answered(first, e), e, answered(replay, e), refused(other, 'idempotency_key_reused'))).toEqual([]);
    });

    it('a 5xx that frees the key, then a second execution', () => {
      const first = request(0);
      const failed = execution(first, { status: 503, ran: false });
      const retry = request(100);
      const e = execution(retry);
      expect(violated(answered(first, failed), failed, answered(retry, e), e)).toEqual([]);
    });

    it('a duplicate that joins an attempt still running past the TTL gets its answer as a replay', () => {
      const first = request(0, { path: '/t/short/k00', ended: T0 + 2500 });
      const e = execution(first, { started: T0 + 2, ended: T0 + 2490 });
      const joiner = request(2200, { path: '/t/short/k00', ended: T0 + 2500 });
      expect(violated(answered(first, e), e, answered(joiner, e))).toEqual([]);
    });

    it('after a SIGKILL under retry, the next request runs again once the lease has ended', () => {
      const first = request(0, { status: null, read: 'none', headersAt: null, error: 'terminated', ended: T0 + 500 });
      const e = execution(first, { ended: T0 + 501, outcome: 'closed-before-status', headersAt: null, sentBytes: 0 });
      const retry = request(LEASE_MS + 100);
      const again = execution(retry);
      expect(violated(first, e, kill(400), answered(retry, again), again)).toEqual([]);
    });

    it('an answer over MAX_BODY_BYTES reaches its first client whole, then the key answers response_too_large', () => {
      const first = request(0, { bytes: 100_000 });
      const e = execution(first, { answerBytes: 100_000 });
      const later = refused(request(100), 'response_too_large');
      expect(violated(answered(first, e), e, later)).toEqual([]);
    });

    it('a key told origin_response_lost runs again after an admin purge', () => {
      const first = request(0, { read: 'broken' });
      const e = execution(first, { outcome: 'reset-mid-body' });
      const again = request(300);
      expect(
        violated(
          answered(first, e),
          e,
          refused(request(100), 'origin_response_lost'),
          purge(200),
          answered(again, execution(again)),
          execution(again),
        ),
      ).toEqual([]);
    });

    it('a purge whose answer a SIGKILL cut off may have run: the key may run again', () => {
      const first = request(0);
      const e = execution(first);
      const cut = { ...purge(100), status: null, error: 'other side closed' };
      const again = request(300);
      expect(violated(answered(first, e), e, cut, kill(120), answered(again, execution(again)), execution(again))).toEqual([]);
    });

    it('a request sent before the earliest expiry but decided after it may run again', () => {
      const first = request(0, { path: '/t/short/k00' });
      const e = execution(first);
      const late = request(1900, { path: '/t/short/k00', headersAt: T0 + 2300, ended: T0 + 2310 });
      const again = execution(late, { started: T0 + 2290 });
      expect(violated(answered(first, e), e, answered(late, again), again)).toEqual([]);
    });

    it('a reconciled answer is replayed as the reconciliation sent it', () => {
      const first = request(0, {
        path: '/t/reconcile/k00',
        status: 502,
        code: 'origin_unreachable',
        contentType: 'application/problem+json',
      });
      const e = execution(first, { outcome: 'reset-before-status', headersAt: null });
      const q: ReconciliationEvent = {
        type: 'reconciliation',
        id: 'q1',
        seq: 1,
        time: T0 + 200,
        key: 'k00',
        credential: SCOPE_A,
        execution: e.id,
        status: 200,
        answerSha256: 'd'.repeat(64),
        answerBytes: 50,
      };
      const retry = request(190, {
        path: '/t/reconcile/k00',
        reconciliation: 'q1',
        execution: e.id,
        replay: true,
        sha256: q.answerSha256,
        bytes: 50,
      });
      expect(violated(first, e, q, retry)).toEqual([]);
    });
  });

  describe('names the invariant a history breaks', () => {
    it('codes: an answer with a code the contract does not list', () => {
      expect(
        violated(refused(request(0), 'idempotency_key_reused'), { ...refused(request(10), 'idempotency_key_reused'), status: 400 }),
      ).toContain('codes');
      expect(violated({ ...request(0), status: 418, contentType: 'text/plain' })).toEqual(['codes']);
    });

    it("scope: an answer carrying another scope's execution", () => {
      const theirs = request(0, { scope: SCOPE_B, credential: 'b' });
      const e = execution(theirs);
      expect(violated(answered(theirs, e), e, answered(request(100), e))).toEqual(['scope']);
    });

    it("bytes: an answer read whole that differs from its execution's", () => {
      const first = request(0);
      const e = execution(first);
      expect(violated(answered(first, e), e, answered(request(100), e, { sha256: 'e'.repeat(64) }))).toEqual(['bytes']);
    });

    it('marked: a duplicate given the answer without Idempotent-Replay', () => {
      const first = request(0);
      const e = execution(first);
      expect(violated(answered(first, e), e, answered(request(100), e, { replay: false }))).toEqual(['marked']);
    });

    it('once: a second execution with nothing between that frees the key', () => {
      const first = request(0);
      const e = execution(first);
      const again = request(100);
      expect(violated(answered(first, e), e, answered(again, execution(again)), execution(again))).toEqual(['kept', 'once']);
    });

    it('once: under hold, a SIGKILL never frees the key', () => {
      const first = request(0, { path: '/t/hold/k00', status: null, read: 'none', headersAt: null, error: 'terminated' });
      const e = execution(first, { outcome: 'closed-before-status', headersAt: null });
      const retry = request(LEASE_MS + 100, { path: '/t/hold/k00' });
      expect(violated(first, e, kill(400), answered(retry, execution(retry)), execution(retry))).toEqual(['once']);
    });

    it('held: a key told origin_response_lost runs again', () => {
      const first = request(0, { read: 'broken' });
      const e = execution(first, { outcome: 'reset-mid-body' });
      const told = refused(request(100), 'origin_response_lost');
      const again = request(200);
      expect(violated(answered(first, e), e, told, answered(again, execution(again)), execution(again))).toContain('held');
    });

    it('not-stored: a 5xx replayed after its attempt ended', () => {
      const first = request(0);
      const e = execution(first, { status: 503, ran: false });
      expect(violated(answered(first, e), e, answered(request(100), e))).toEqual(['not-stored']);
    });

    it("expiry: a replay from storage after its record's expiry", () => {
      const first = request(0, { path: '/t/short/k00' });
      const e = execution(first);
      expect(violated(answered(first, e), e, answered(request(2100, { path: '/t/short/k00' }), e))).toEqual(['expiry']);
    });

    it('purge: a replay of what a purge deleted', () => {
      const first = request(0);
      const e = execution(first);
      expect(violated(answered(first, e), e, purge(100), answered(request(200), e))).toEqual(['purge']);
    });

    it('kept: an identical request after the answer was stored gets something else', () => {
      const first = request(0);
      const e = execution(first);
      expect(violated(answered(first, e), e, refused(request(100), 'idempotency_key_in_progress'))).toEqual(['kept']);
    });

    it('refused: a request refused as too large that reached the origin', () => {
      const big = refused(request(0, { op: 'oversize' }), 'request_too_large');
      expect(violated(big, execution(big))).toEqual(['refused']);
      expect(violated(refused(request(0), 'idempotency_outcome_unknown'))).toEqual(['refused']);
    });

    it('expires-header: an answer that frees the key says when it expires', () => {
      const first = request(0);
      const e = execution(first, { status: 503, ran: false });
      expect(violated(answered(first, e, { expires: new Date(T0 + DAY).toUTCString() }), e)).toEqual(['expires-header']);
    });

    it('conflict: a reused key with no other request of the key', () => {
      expect(violated(refused(request(0), 'idempotency_key_reused'))).toEqual(['conflict']);
    });
  });

  it('reads every problem code of the source, and credential_missing', () => {
    expect(run.problems).toMatchObject({ idempotency_key_reused: 409, origin_response_lost: 502, credential_missing: 401 });
  });

  it.each(planted)('planted bug %s still applies to the source exactly once', (_, mutant) => {
    const source = readFileSync(mutant.file, 'utf8');
    expect(applyMutant(source, mutant)).not.toBe(source);
  });
});
