/**
 * @module
 * `IdempotencyRecord`: the Durable Object that owns one `(scope, key)` pair.
 *
 * Guarantees (see docs/storage-schema.md for the stored format):
 * - Exactly one attempt at a time. The check of the stored record and the creation of a new attempt
 *   run synchronously (SQLite calls are synchronous), so no other request can interleave.
 * - The in-flight row is written before the origin `fetch()`; the output gate holds the fetch until the
 *   row is durable, so a reset mid-flight always leaves a row saying an attempt may have run.
 * - Within one instance, concurrent duplicates join the running attempt's promise; across a reset,
 *   the in-flight row's lease decides (409 `idempotency_key_in_progress` until the lease ends; then, under
 *   `retry`, the next request with the same fingerprint takes over with the same `Idempotency-Key`, while
 *   `hold` and `reconcile` hold the key as unknown).
 * - Expiry is checked on every read; the alarm only collects garbage and is safe to run any number of
 *   times. An in-flight row outlives the TTL until its lease ends.
 *
 * Not guaranteed: if the instance dies after the origin ran but before the answer was stored, the origin
 * may see the request again after the lease ends. The forwarded `Idempotency-Key` lets it deduplicate.
 */
import { DurableObject } from 'cloudflare:workers';
import {
  type AttemptLimits,
  type AttemptSpec,
  type BeginResult,
  type Outcome,
  type PurgeResult,
  type RecordInfo,
  type Settled,
} from './api';
import { isResultStatus } from '../shared/status';
import { type Attempt, type Finished, Report, LEASE_GRACE_MS, MAX_READERS, awaitAttempt, lostAttempt, ranStatus } from './attempt';
import { alive, counts, decide } from './decide';
import { type Running, callOrigin, reconcile, withinLease } from './origin';
import { Keys, SealConfigError, sealResponse } from './seal';
import { replay } from './replay';
import { Readers } from './live';
import { type RecordRow, RecordStore, type StoredParts, expiryOf } from './storage';
import { checkAttempt, checkLimits, checkReconcile, checkSettled, checkSpec } from './validate';

/** When a key's record expires and when it was created (its first request), ms since the epoch. */
type Times = { readonly expiresAt: number; readonly createdAt: number };

/** The Durable Object class; one instance per `(scope hash, key)`. */
export class IdempotencyRecord extends DurableObject<Record<string, unknown>> {
  readonly #store: RecordStore;
  /** `IDEMPOTENCY_ENCRYPTION_KEYS`, read from this object's own env (the proxy's, or the middleware's Worker). */
  readonly #keys = new Keys();
  #attempt: Attempt | undefined;
  /** The streams of this key's answers open now (see {@link MAX_READERS}). */
  readonly #readers = new Readers(MAX_READERS);
  /** The reconcile request in progress, if any: concurrent retries share it (one GET at a time). */
  #reconciling: Promise<Outcome> | undefined;

  constructor(ctx: DurableObjectState, env: Record<string, unknown>) {
    super(ctx, env);
    this.#store = new RecordStore(ctx.storage);
  }

  /**
   * Proxy mode: runs (or joins) the attempt for this key, the origin call included, or answers from
   * storage. The origin call runs in this object, so it outlives the caller.
   *
   * @param spec - the request and the limits that apply to it
   * @returns what the client should see; never throws for origin failures
   */
  execute(spec: AttemptSpec): Promise<Outcome> {
    // Checked synchronously: a refused call throws to its caller and starts nothing.
    const headers = checkSpec(spec);
    const reconcileHeaders = checkReconcile(spec);
    const refused = this.#misconfigured();
    if (refused !== undefined) return Promise.resolve(refused);
    const decision = decide(this.#store, spec, this.#attempt);
    if ('outcome' in decision) return Promise.resolve(decision.outcome);
    if ('replay' in decision) return this.#replay(decision.replay);
    if ('join' in decision)
      return awaitAttempt(decision.join, spec.timeoutMs, false, { readers: this.#readers, stored: () => this.execute(spec) });
    if ('reconcile' in decision) return this.#reconcile(spec, headers, reconcileHeaders, decision.reconcile);
    const attempt = this.#start(spec, decision.start, () => callOrigin(spec.origin, headers, spec.leaseMs));
    return awaitAttempt(attempt, spec.timeoutMs, true);
  }

  /**
   * Handler mode: acquires the key for the caller, who runs the request itself and then reports the
   * result with {@link complete}. Duplicates wait here for that result, exactly as in proxy mode. If
   * `complete` does not arrive within the lease, the attempt is abandoned and the key freed.
   *
   * @param spec - the fingerprint and limits
   * @returns `{ kind: 'acquired', attempt, expiresAt, report }` for the caller that must run the request (it reports on
   *   `report`, in this call's RPC session), else the outcome
   */
  begin(spec: AttemptLimits): Promise<BeginResult> {
    checkLimits(spec);
    const refused = this.#misconfigured();
    if (refused !== undefined) return Promise.resolve(refused);
    const decision = decide(this.#store, spec, this.#attempt);
    if ('outcome' in decision) return Promise.resolve(decision.outcome);
    if ('replay' in decision) return this.#replay(decision.replay);
    // Handler mode has no origin to ask (the middleware refuses reconcile there): the key stays held.
    if ('reconcile' in decision) return Promise.resolve({ kind: 'outcome_unknown' });
    if ('join' in decision) return awaitAttempt(decision.join, spec.timeoutMs, false);
    let settle!: (settled: Settled) => void;
    const reported = new Promise<Settled>((resolve) => (settle = resolve));
    const attempt = this.#start(spec, decision.start, () => ({ settled: withinLease(reported, spec.leaseMs) }), settle);
    const report = new Report((settled) => this.#complete(attempt.id, settled));
    return Promise.resolve({ kind: 'acquired', attempt: attempt.id, expiresAt: attempt.expiresAt, report });
  }

  /**
   * Handler mode: reports the result of an attempt acquired with {@link begin}. Answers below 500 are
   * stored; others free the key. Also works after this object was reset in between, as long as the
   * in-flight row still names `attempt`.
   *
   * @param attempt - the id `begin` returned
   * @param settled - the response (or failure) to record
   * @returns when the key can run again if the response was stored (ms since the epoch), else `null`
   */
  complete(attempt: string, settled: Settled): Promise<number | null> {
    checkAttempt(attempt);
    checkSettled(settled);
    return this.#complete(attempt, settled);
  }

  async #complete(attempt: string, settled: Settled): Promise<number | null> {
    const live = this.#attempt;
    if (live?.id === attempt && live.settle) {
      live.settle(settled);
      return (await live.done).storedUntil ?? null;
    }
    const record = this.#store.read();
    if (record?.attempt === attempt && record.state === 'in_flight') {
      // The reset took the attempt's policy with it: an unknown outcome frees the key, as `retry` does. Sealed first; the
      // store after it is guarded by the attempt, so a change meanwhile is never overwritten.
      try {
        const sealed = await this.#seal(attempt, settled);
        return this.#record(attempt, settled, sealed, undefined) === 'stored' ? record.expires_at : null;
      } catch (error) {
        this.#refused(attempt, settled, { expiresAt: record.expires_at, createdAt: record.created_at }, error);
        return null;
      }
    } else if (record === undefined) {
      // Nothing to record into (expired, or already collected): let the alarm remove what is left of the object.
      await this.ctx.storage.setAlarm(Date.now());
    }
    return null;
  }

  /**
   * What the record holds, for a client or operator who asks what happened to a key; never its body. Writes
   * nothing (an expired record reads as none and is left to the alarm).
   *
   * @returns the record, or `null` when there is none or it has expired
   */
  async inspect(): Promise<RecordInfo | null> {
    const record = this.#live(Date.now());
    if (record === undefined) return null;
    const { created_at, expires_at, lease_until, method, path } = record;
    // A lost answer that storage refused to record is held here as lost: described as such.
    const lost = alive(this.#attempt, record, Date.now()) ? this.#attempt.lost : undefined;
    const state = lost === undefined ? record.state : 'lost';
    return {
      state,
      status: lost ?? (state === 'in_flight' || state === 'unknown' ? null : record.status),
      created_at,
      expires_at,
      lease_until: state === 'in_flight' ? lease_until : null,
      method,
      path,
    };
  }

  /**
   * Deletes a stored record (complete, too large, lost, unknown, or an attempt that died and whose lease has ended), so the
   * next request with the key runs again. An attempt that may still be running is left alone.
   */
  async purge(): Promise<PurgeResult> {
    const now = Date.now();
    const record = this.#live(now);
    if (record === undefined) return { kind: 'not_found' };
    // An attempt past its lease (and grace) is dead, whatever runs here; a lost answer held here can be purged.
    const running = alive(this.#attempt, record, now) ? this.#attempt : undefined;
    if (record.state === 'in_flight' && ((running !== undefined && running.lost === undefined) || now < record.lease_until)) {
      return { kind: 'in_progress', retryAfterMs: Math.max(1000, record.lease_until - now) };
    }
    await this.#store.clear();
    if (running !== undefined) this.#attempt = undefined;
    return { kind: 'purged', state: running?.lost === undefined ? record.state : 'lost' };
  }

  /** Garbage collection: deletes everything once the record has expired (or is gone). Idempotent. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    const record = this.#store.read();
    if (record !== undefined && (expiryOf(record) > now || alive(this.#attempt, record, now))) {
      await this.ctx.storage.setAlarm(Math.max(expiryOf(record), now + 1000));
      return;
    }
    await this.#store.clear();
  }

  /** The record, unless it has expired. */
  #live(now: number): RecordRow | undefined {
    const record = this.#store.read();
    return record !== undefined && counts(record, now, this.#attempt) ? record : undefined;
  }

  /**
   * Writes the in-flight row, then starts `run`, synchronously after {@link decide}. The row is written
   * first, so the output gate holds any fetch `run` makes until the row is durable.
   */
  #start(spec: AttemptLimits, times: Times, run: () => Running, settle?: (settled: Settled) => void): Attempt {
    const id = crypto.randomUUID();
    const { expiresAt, createdAt } = times;
    const leaseUntil = Date.now() + spec.leaseMs;
    this.#store.begin({
      fingerprint: spec.fingerprint,
      attempt: id,
      leaseUntil,
      expiresAt,
      createdAt,
      method: spec.method ?? null,
      path: spec.path ?? null,
    });
    // At the expiry: if the attempt is still running then, the alarm re-arms itself until its lease ends.
    void this.ctx.storage.setAlarm(expiresAt);
    const { answer, settled } = run();
    const done = this.#finish(id, settled, times, spec.onUnknown);
    const attempt: Attempt = {
      id,
      done,
      until: leaseUntil + LEASE_GRACE_MS,
      expiresAt,
      createdAt,
      ...(answer === undefined ? {} : { answer }),
      ...(settle === undefined ? {} : { settle }),
    };
    this.#attempt = attempt;
    return attempt;
  }

  async #finish(id: string, work: Promise<Settled>, times: Times, onUnknown: AttemptLimits['onUnknown']): Promise<Finished> {
    const settled = await work;
    const { expiresAt } = times;
    let recorded: 'stored' | 'held' | undefined;
    try {
      // Sealed while the attempt is still live here (duplicates keep joining it), then stored synchronously.
      const sealed = await this.#seal(id, settled);
      if (this.#attempt?.id === id) this.#attempt = undefined;
      recorded = this.#record(id, settled, sealed, onUnknown);
    } catch (error) {
      this.#refused(id, settled, times, error);
    }
    return { settled, storedUntil: recorded === 'stored' ? expiresAt : undefined, held: recorded === 'held' };
  }

  /**
   * After storage refused to record how attempt `id` ended (`error`): once a result's status line arrived the write ran,
   * so the key must never run it again. It is held as `lost` (the status only, small enough to store where the whole
   * answer was not); if storage refuses that too, this instance keeps a marker that answers `response_lost` until the
   * key expires, so no duplicate takes the key over. Any other end leaves the in-flight row, which holds the key until
   * its lease ends. Not covered: storage refusing every write and then this instance being reset (the row then frees the
   * key after its lease, as after any reset mid-flight).
   */
  #refused(id: string, settled: Settled, times: Times, error: unknown): void {
    console.error(JSON.stringify({ event: 'store_failed', error: String(error) }));
    const status = ranStatus(settled);
    const mine = this.#attempt === undefined || this.#attempt.id === id;
    if (this.#attempt?.id === id) this.#attempt = undefined;
    if (status === undefined) return;
    try {
      this.#store.lost(id, status);
    } catch (lost) {
      console.error(JSON.stringify({ event: 'store_failed', state: 'lost', error: String(lost) }));
      if (mine) this.#attempt = lostAttempt(id, status, times);
    }
  }

  /**
   * The configuration this object needs, checked before anything runs: an answer it could not seal (a malformed
   * `IDEMPOTENCY_ENCRYPTION_KEYS`) would be lost after the write ran.
   */
  #misconfigured(): Outcome | undefined {
    try {
      this.#keyring();
      return undefined;
    } catch (error) {
      if (!(error instanceof SealConfigError)) throw error;
      return { kind: 'configuration_invalid', detail: error.message };
    }
  }

  /** The keyring, when `IDEMPOTENCY_ENCRYPTION_KEYS` is set. */
  #keyring() {
    return this.#keys.of(this.env['IDEMPOTENCY_ENCRYPTION_KEYS']);
  }

  /** The parts to store for a response that will be stored (sealed when a keyring is set); else `undefined`. */
  async #seal(id: string, settled: Settled): Promise<StoredParts | undefined> {
    if (settled.kind !== 'response' || !isResultStatus(settled.response.status)) return undefined;
    return sealResponse(this.#keyring(), this.ctx.id.name, id, settled.response);
  }

  /** A complete row's answer (see `replay.ts`): never replayed (nor run again) when it cannot be read, 503. */
  #replay(row: RecordRow): Promise<Outcome> {
    return replay(this.#store, row, { keys: this.#keyring(), name: this.ctx.id.name }, this.#readers);
  }

  /**
   * Records how attempt `id` ended ({@link RecordStore.end}): a key it freed leaves an empty object, which the alarm
   * removes at once.
   */
  #record(
    id: string,
    settled: Settled,
    sealed: StoredParts | undefined,
    onUnknown: AttemptLimits['onUnknown'],
  ): 'stored' | 'held' | undefined {
    const ended = this.#store.end(id, settled, sealed, onUnknown === 'hold' || onUnknown === 'reconcile');
    if (ended === 'freed') void this.ctx.storage.setAlarm(Date.now());
    return ended === 'freed' ? undefined : ended;
  }

  /**
   * `reconcile`: asks the origin whether the dead attempt of `row` ran. A 2xx answer becomes the key's stored
   * answer (a replay: this request did not cause it); 404 starts the attempt; anything else holds the key and
   * the next retry asks again. Concurrent retries share one question, never its answer's stream: once it is answered,
   * a retry that waited decides again on its own (it joins the attempt the question started, or replays what it stored).
   */
  async #reconcile(spec: AttemptSpec, headers: Headers, asking: Headers | undefined, row: RecordRow): Promise<Outcome> {
    const shared = this.#reconciling;
    if (shared !== undefined) {
      const outcome = await shared;
      return outcome.kind === 'response' ? this.execute(spec) : outcome;
    }
    const question = this.#ask(spec, headers, asking, row);
    this.#reconciling = question;
    try {
      return await question;
    } finally {
      this.#reconciling = undefined;
    }
  }

  async #ask(spec: AttemptSpec, headers: Headers, asking: Headers | undefined, row: RecordRow): Promise<Outcome> {
    const pending: Outcome = { kind: 'outcome_pending', retryAfterMs: 1000 };
    if (spec.reconcile === undefined || asking === undefined) return pending;
    const answer = await reconcile(spec.reconcile.url, asking, spec.origin.maxBodyBytes, spec.timeoutMs);
    const sealed = typeof answer === 'object' ? await this.#seal(row.attempt, { kind: 'response', response: answer.ran }) : undefined;
    // Decided again synchronously after the await: a purge or another request may have changed the row.
    const now = this.#store.read();
    if (now?.attempt !== row.attempt || now.state !== 'unknown') return { kind: 'in_progress', retryAfterMs: 1000 };
    if (answer === 'unknown') return pending;
    if (answer === 'never_ran') {
      const times = { expiresAt: now.expires_at, createdAt: now.created_at };
      const attempt = this.#start(spec, times, () => callOrigin(spec.origin, headers, spec.leaseMs));
      return awaitAttempt(attempt, spec.timeoutMs, true);
    }
    const stored = sealed !== undefined && this.#store.complete(row.attempt, sealed, 'unknown');
    return {
      kind: 'response',
      replayed: true,
      response: answer.ran,
      createdAt: now.created_at,
      ...(stored ? { storedUntil: now.expires_at } : {}),
    };
  }
}
