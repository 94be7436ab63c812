/**
 * @module
 * The checker of a fault-schedule run: pure, over the history alone. Each invariant is one of docs/contract.md,
 * stated over what the history shows (docs/guarantees.md, "Random fault schedules", lists them). It is sound: where
 * times leave an outcome open (a record's exact expiry, whether a killed attempt had stored its answer), it allows
 * every outcome the contract allows for some interleaving of the observed times, so it never accuses a correct proxy.
 */
import type { ExecutionEvent, HistoryEvent, RequestEvent } from './history.ts';
import { fingerprintOf, Model, type Pair, SLACK_MS, type Source } from './model.ts';

export const INVARIANTS = {
  codes: 'every status and problem code is one the contract lists; an origin answer has its execution status',
  scope: "an answer carries only an execution of its own scope, key and request (or its own scope's reconciliation)",
  bytes: "an answer read whole is byte-identical to its execution's (or reconciliation's) answer",
  marked: 'only the request that ran an execution gets its answer unmarked; every other answer is Idempotent-Replay: true',
  once: 'at most one origin execution per (scope, key) per period the contract allows one',
  held: 'a key answered origin_response_lost, response_too_large or idempotency_outcome_unknown never runs again until purged or expired',
  'not-stored': 'an answer that frees the key (5xx, 401, 403, 408, 425, 429) is never replayed from storage',
  expiry: "no answer is replayed from storage after its record's expiry",
  purge: 'no answer stored before a purge is replayed after it',
  kept: 'a stored answer is what every identical request gets until it expires or is purged: nothing stored is lost',
  refused: 'a request refused with a code that says nothing ran never reached the origin; idempotency_outcome_unknown only under hold',
  'expires-header': 'answers that free the key carry no Idempotency-Expires; every answer of one stored answer carries the same',
  conflict: 'idempotency_key_reused and idempotency_key_in_progress only when another request of the key could cause them',
} as const;
export type Invariant = keyof typeof INVARIANTS;

export interface Violation {
  readonly invariant: Invariant;
  readonly message: string;
  readonly scope: string;
  readonly key: string;
  /** When the history first shows the violation. */
  readonly time: number;
  /** The ids of the events that show it. */
  readonly events: readonly string[];
}

/** Why a key could run again: what ended the period of the execution before. */
export type Freed = 'status' | 'no-status' | 'cut' | 'kill' | 'purge' | 'expiry' | 'reconcile';

export interface CheckResult {
  readonly violations: Violation[];
  /** How many times each invariant was checked. */
  readonly checked: Record<Invariant, number>;
  /** For each execution after the first of its (scope, key): what freed the key for it. */
  readonly periods: Record<Freed, number>;
}

/** Codes that say the request itself ran nothing at the origin. */
const NOTHING_RAN = new Set(['idempotency_key_reused', 'idempotency_key_in_progress', 'request_too_large', 'idempotency_outcome_unknown']);
/** Codes of a key that holds an outcome that ran: it never runs again until purged or expired. */
const HELD = new Set(['origin_response_lost', 'response_too_large', 'idempotency_outcome_unknown']);
const PROBLEM_TYPES = new Set(['application/problem+json', 'application/json']);

/** Checks a history; see {@link INVARIANTS}. */
export function check(events: readonly HistoryEvent[]): CheckResult {
  const model = new Model(events);
  const violations: Violation[] = [];
  const checked = Object.fromEntries(Object.keys(INVARIANTS).map((name) => [name, 0])) as Record<Invariant, number>;
  const lease = model.run.leaseMs;
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

  for (const pair of model.pairs.values()) {
    once(pair);
    held(pair);
    kept(pair);
  }

  /** Why the key was free for `later` after `earlier` ran, if it can have been. */
  function freedBetween(pair: Pair, earlier: ExecutionEvent, later: ExecutionEvent): Freed | undefined {
    const policy = model.route(earlier.path).policy;
    // Its status freed the key (5xx, 401, 403, 408, 425, 429).
    if (!earlier.ran) return 'status';
    const by = earlier.tag === null ? undefined : model.requestById.get(earlier.tag);
    const leaseEnd = by === undefined ? Number.NEGATIVE_INFINITY : by.sent + lease;
    if (policy === 'retry') {
      if (earlier.outcome === 'reset-before-status') return 'no-status';
      // A connection that broke, or was closed by the proxy at the lease's end, before any client saw the head: the
      // status line may not have reached the proxy in time.
      const cut =
        earlier.outcome === 'reset-mid-body' || (earlier.outcome.startsWith('closed-') && (earlier.ended ?? 0) >= leaseEnd - SLACK_MS);
      if (cut && !model.headSeen(earlier.id)) return 'cut';
      // A SIGKILL while the attempt may still have been running: after its lease, the next request runs it again.
      const finished = model.finishedBy(earlier.id);
      const kill = model.kills.find(
        (k) => k.time < later.started && !(finished < k.time - SLACK_MS) && (by === undefined || by.sent < k.dead + SLACK_MS),
      );
      if (kill !== undefined && later.started >= leaseEnd - SLACK_MS) return 'kill';
    }
    if (model.purgedBetween(pair, earlier.started, later.started) !== undefined) return 'purge';
    if (later.started >= model.expiresAtLeast(earlier) - SLACK_MS) return 'expiry';
    const never = pair.reconciliations.find(
      (q) => q.status === 404 && q.time > earlier.started - SLACK_MS && q.time < later.started + SLACK_MS,
    );
    return never === undefined ? undefined : 'reconcile';
  }

  function once(pair: Pair): void {
    for (let i = 1; i < pair.executions.length; i++) {
      const [earlier, later] = [pair.executions[i - 1]!, pair.executions[i]!];
      count('once');
      const freed = freedBetween(pair, earlier, later);
      if (freed !== undefined) periods[freed]++;
      else
        fail(
          'once',
          pair,
          later.started,
          [earlier.id, later.id, ...[earlier.tag, later.tag].filter((t) => t !== null)],
          `${later.id} (${later.tag}) ran at ${rel(model, later.started)} although ${earlier.id} (${earlier.tag}, ${earlier.status} ${earlier.outcome}) ran at ${rel(model, earlier.started)} and nothing between them frees the key`,
        );
    }
  }

  function held(pair: Pair): void {
    for (const r of pair.requests) {
      if (r.code === null || !HELD.has(r.code)) continue;
      const told = r.headersAt ?? r.ended;
      const next = pair.executions.find((e) => e.started > told + SLACK_MS);
      count('held');
      if (next === undefined || model.purgedBetween(pair, told, next.started) !== undefined) continue;
      // The held record existed when the client was told; it is the record of the last execution before, or a newer one
      // (whose expiry is later still).
      const last = pair.executions.findLast((e) => e.started <= told);
      const expires = Math.max(
        model.existedSince(pair, told) + model.route(r.path).ttlMs,
        ...(last === undefined ? [] : [model.expiresAtLeast(last)]),
      );
      if (next.started >= expires - SLACK_MS) continue;
      // Told a capture stopped (a joiner, at once) before the record said so: a SIGKILL before the store is a dead attempt.
      const by = last?.tag === null || last === undefined ? undefined : model.requestById.get(last.tag);
      if (r.code === 'response_too_large' && model.route(r.path).policy === 'retry' && last !== undefined) {
        const finished = model.finishedBy(last.id);
        const kill = model.kills.find((k) => k.time > told - SLACK_MS && !(finished < k.time - SLACK_MS));
        if (kill !== undefined && (by === undefined || next.started >= by.sent + lease - SLACK_MS)) continue;
      }
      fail(
        'held',
        pair,
        next.started,
        [r.id, next.id, ...(next.tag === null ? [] : [next.tag])],
        `${next.id} (${next.tag}) ran at ${rel(model, next.started)} after ${r.id} was told ${r.code} at ${rel(model, told)}, with no purge or expiry between`,
      );
    }
  }

  function kept(pair: Pair): void {
    const sources = new Map<string, { source: Source; storedBy: number; until: number; fingerprint: string }>();
    for (const e of pair.executions) {
      const storedBy = model.finishedBy(e.id);
      // Only an answer within MAX_BODY_BYTES is stored; a larger one holds the key as too large.
      if (e.ran && e.answerBytes <= model.run.maxBodyBytes && storedBy < Number.POSITIVE_INFINITY)
        sources.set(e.id, { source: { execution: e }, storedBy, until: model.expiresAtLeast(e), fingerprint: fingerprintOf(e) });
    }
    for (const q of pair.reconciliations) {
      // A reconciliation's answer is stored when the answer carrying it says when it expires.
      const storedBy = model.finishedBy(q.id, true);
      const reader = model.answersOf.get(q.id)?.find((r) => r.read === 'whole' && r.expires !== null);
      if (reader !== undefined)
        sources.set(q.id, {
          source: { reconciliation: q },
          storedBy,
          until: Math.max(...model.expiresSeen(q.id)),
          fingerprint: fingerprintOf(reader),
        });
    }
    for (const [id, { storedBy, until, fingerprint }] of sources) {
      for (const r of pair.requests) {
        // The object decided between the request's send and its answer's head: both after the store, both before the expiry.
        const decided = r.headersAt ?? r.ended;
        if (r.status === null || r.sent <= storedBy + SLACK_MS || decided >= until - SLACK_MS || fingerprintOf(r) !== fingerprint) continue;
        if (model.purgedBetween(pair, storedBy, r.ended) !== undefined) continue;
        count('kept');
        if ((r.reconciliation ?? r.execution) === id || r.code === 'idempotency_unavailable') continue;
        fail(
          'kept',
          pair,
          r.sent,
          [r.id, id],
          `${r.id}, sent at ${rel(model, r.sent)}, got ${r.reconciliation ?? r.execution ?? `${r.status} ${r.code ?? ''}`} instead of ${id}, stored by ${rel(model, storedBy)} and not expiring before ${rel(model, until)}`,
        );
      }
    }
  }

  violations.sort((a, b) => a.time - b.time);
  return { violations, checked, periods };
}

const short = (hash: string | null): string => (hash === null ? 'none' : hash.slice(0, 8));
/** A time as seconds since the run started. */
export const rel = (model: { run: { started: number } }, time: number): string =>
  Number.isFinite(time) ? `+${((time - model.run.started) / 1000).toFixed(3)}s` : 'never';
