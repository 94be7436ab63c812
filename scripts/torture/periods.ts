/**
 * @module
 * The checks of one (scope, key) over time, part of the checker (`checker.ts`): `once` (at most one execution per
 * period the contract allows one), `held` (a key told it holds an outcome that ran never runs again until purged or
 * expired) and `kept` (a stored answer is what every identical request gets until it expires or is purged). Sound as
 * the rest: every bound comes from `model.ts`, and an outcome the times leave open is allowed.
 */
import type { ExecutionEvent } from './history.ts';
import { type Checks, type Freed, HELD } from './invariants.ts';
import { fingerprintOf, type Model, type Pair, rel, SLACK_MS, type Source } from './model.ts';

/** Checks `once`, `held` and `kept` for one (scope, key). */
export function checkPeriods(model: Model, { fail, count, periods }: Checks, pair: Pair): void {
  const lease = model.run.leaseMs;
  once(pair);
  held(pair);
  kept(pair);

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
}
