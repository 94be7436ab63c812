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
 *   the in-flight row's lease decides (409 `idempotency_key_in_progress` until the lease ends, then the
 *   next request with the same fingerprint takes over with the same `Idempotency-Key`).
 * - Expiry is checked on every read; the alarm only collects garbage and is safe to run any number of
 *   times. An in-flight row outlives the TTL until its lease ends.
 *
 * Not guaranteed: if the instance dies after the origin ran but before the answer was stored, the origin
 * may see the request again after the lease ends. The forwarded `Idempotency-Key` lets it deduplicate.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Outcome, Settled } from '../shared/outcome';
import type { AttemptLimits, AttemptSpec, BeginResult, PurgeResult, RecordInfo } from './api';
import { callOrigin, withinLease } from './origin';
import { type RecordRow, RecordStore, expiryOf } from './storage';
import { checkAttempt, checkLimits, checkSettled, checkSpec } from './validate';

/**
 * Answers that say "try again later", not results: storing one would replay a short overload for the whole
 * TTL and push clients onto new keys. Like 5xx, they free the key.
 */
const TRANSIENT_STATUS = [408, 425, 429];

/**
 * Answers that refused the credential: no write ran under it, so there is no result to keep, and storing one
 * would let anyone with random credentials fill storage for the TTL.
 */
const CREDENTIAL_REFUSED = [401, 403];

/** Statuses below 500 that are not results of the write: never stored, they free the key like 5xx (both modes). */
const NOT_RESULTS = new Set([...TRANSIENT_STATUS, ...CREDENTIAL_REFUSED]);

interface Attempt {
  readonly id: string;
  readonly done: Promise<Settled>;
  /** Settles a handler-mode attempt (see {@link IdempotencyRecord.complete}). */
  readonly settle?: (settled: Settled) => void;
}

/** What a request finds: an attempt to start (keeping a taken-over record's times) or join, or an answer. */
type Decision =
  | { readonly start: { readonly expiresAt: number; readonly createdAt: number } }
  | { readonly join: Attempt }
  | { readonly outcome: Outcome };

/** The Durable Object class; one instance per `(scope hash, key)`. */
export class IdempotencyRecord extends DurableObject<Record<string, unknown>> {
  readonly #store: RecordStore;
  #attempt: Attempt | undefined;

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
    const decision = this.#decide(spec);
    if ('outcome' in decision) return Promise.resolve(decision.outcome);
    if ('join' in decision) return this.#await(decision.join, spec.timeoutMs, false);
    const attempt = this.#start(spec, decision.start, () => callOrigin(spec.origin, headers, spec.leaseMs));
    return this.#await(attempt, spec.timeoutMs, true);
  }

  /**
   * Handler mode: acquires the key for the caller, who runs the request itself and then reports the
   * result with {@link complete}. Duplicates wait here for that result, exactly as in proxy mode. If
   * `complete` does not arrive within the lease, the attempt is abandoned and the key freed.
   *
   * @param spec - the fingerprint and limits
   * @returns `{ kind: 'acquired', attempt }` for the caller that must run the request, else the outcome
   */
  begin(spec: AttemptLimits): Promise<BeginResult> {
    checkLimits(spec);
    const decision = this.#decide(spec);
    if ('outcome' in decision) return Promise.resolve(decision.outcome);
    if ('join' in decision) return this.#await(decision.join, spec.timeoutMs, false);
    let settle!: (settled: Settled) => void;
    const reported = new Promise<Settled>((resolve) => (settle = resolve));
    const attempt = this.#start(spec, decision.start, () => withinLease(reported, spec.leaseMs), settle);
    return Promise.resolve({ kind: 'acquired', attempt: attempt.id });
  }

  /**
   * Handler mode: reports the result of an attempt acquired with {@link begin}. Answers below 500 are
   * stored; others free the key. Also works after this object was reset in between, as long as the
   * in-flight row still names `attempt`.
   *
   * @param attempt - the id `begin` returned
   * @param settled - the response (or failure) to record
   */
  complete(attempt: string, settled: Settled): Promise<void> {
    checkAttempt(attempt);
    checkSettled(settled);
    return this.#complete(attempt, settled);
  }

  async #complete(attempt: string, settled: Settled): Promise<void> {
    const live = this.#attempt;
    if (live?.id === attempt && live.settle) {
      live.settle(settled);
      await live.done;
      return;
    }
    const record = this.#store.read();
    if (record?.attempt === attempt && record.state === 'in_flight') {
      this.#record(attempt, settled);
    } else if (record === undefined) {
      // Nothing to record into (expired, or already collected): let the alarm remove the empty table.
      await this.ctx.storage.setAlarm(Date.now());
    }
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
    const { state, status, created_at, expires_at, lease_until, method, path } = record;
    return {
      state,
      status: state === 'in_flight' ? null : status,
      created_at,
      expires_at,
      lease_until: state === 'in_flight' ? lease_until : null,
      method,
      path,
    };
  }

  /**
   * Deletes a stored record (complete, too large, or an attempt that died and whose lease has ended), so the
   * next request with the key runs again. An attempt that may still be running is left alone.
   */
  async purge(): Promise<PurgeResult> {
    const now = Date.now();
    const record = this.#live(now);
    if (record === undefined) return { kind: 'not_found' };
    if (record.state === 'in_flight' && (this.#attempt?.id === record.attempt || now < record.lease_until)) {
      return { kind: 'in_progress', retryAfterMs: Math.max(1000, record.lease_until - now) };
    }
    await this.#store.clear();
    return { kind: 'purged', state: record.state };
  }

  /** Garbage collection: deletes everything once the record has expired (or is gone). Idempotent. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    const record = this.#store.read();
    if (record !== undefined && (expiryOf(record) > now || this.#attempt !== undefined)) {
      await this.ctx.storage.setAlarm(Math.max(expiryOf(record), now + 1000));
      return;
    }
    await this.#store.clear();
  }

  /** Whether `record` still counts: not expired, or the row of an attempt still running here (its answer is to come). */
  #counts(record: RecordRow, now: number): boolean {
    return expiryOf(record) > now || this.#attempt?.id === record.attempt;
  }

  /** The record, unless it has expired. */
  #live(now: number): RecordRow | undefined {
    const record = this.#store.read();
    return record !== undefined && this.#counts(record, now) ? record : undefined;
  }

  /** Decides synchronously (no await) what this request does, so that no other request interleaves. */
  #decide(spec: AttemptLimits): Decision {
    const now = Date.now();
    let record = this.#store.read();
    if (record !== undefined && !this.#counts(record, now)) {
      // Expired (the alarm may be late or not yet run): the key is free again.
      this.#store.expire(record);
      record = undefined;
    }
    if (record === undefined) return { start: { expiresAt: now + spec.ttlMs, createdAt: now } };
    if (record.fingerprint !== spec.fingerprint) {
      const stored = record.state === 'in_flight' ? undefined : { fingerprint: record.fingerprint, expiresAt: record.expires_at };
      return { outcome: stored === undefined ? { kind: 'conflict' } : { kind: 'conflict', stored } };
    }
    switch (record.state) {
      case 'complete':
        return { outcome: { kind: 'response', replayed: true, response: this.#store.response(record), expiresAt: record.expires_at } };
      case 'too_large':
        return { outcome: { kind: 'response_too_large', status: record.status ?? 0 } };
      case 'in_flight': {
        const attempt = this.#attempt;
        if (attempt?.id === record.attempt) return { join: attempt };
        // The row outlived its attempt: this instance was reset while the attempt was running.
        if (now < record.lease_until) return { outcome: { kind: 'in_progress', retryAfterMs: record.lease_until - now } };
        // A take-over keeps the key's times (its in-flight row lives until the new lease ends anyway).
        return { start: { expiresAt: record.expires_at, createdAt: record.created_at ?? now } };
      }
    }
  }

  /**
   * Writes the in-flight row, then starts `run`, synchronously after {@link #decide}. The row is written
   * first, so the output gate holds any fetch `run` makes until the row is durable.
   */
  #start(
    spec: AttemptLimits,
    times: { expiresAt: number; createdAt: number },
    run: () => Promise<Settled>,
    settle?: (settled: Settled) => void,
  ): Attempt {
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
    const done = this.#finish(id, run());
    const attempt: Attempt = settle ? { id, done, settle } : { id, done };
    this.#attempt = attempt;
    return attempt;
  }

  async #finish(id: string, work: Promise<Settled>): Promise<Settled> {
    const settled = await work;
    if (this.#attempt?.id === id) this.#attempt = undefined;
    try {
      this.#record(id, settled);
    } catch (error) {
      // Storage refused the write (or the instance is going away). The in-flight row stays, so the key
      // is held until its lease ends rather than silently re-run.
      console.error(JSON.stringify({ event: 'store_failed', error: String(error) }));
    }
    return settled;
  }

  /** Records how attempt `id` ended, if the row still belongs to it. */
  #record(id: string, settled: Settled): void {
    if (settled.kind === 'response' && settled.response.status < 500 && !NOT_RESULTS.has(settled.response.status)) {
      this.#store.complete(id, settled.response);
    } else if (settled.kind === 'response_too_large') {
      this.#store.tooLarge(id, settled.status);
    } else if (this.#store.release(id)) {
      // 5xx and transient answers and failures are not stored: the key is free for the next request, and
      // the alarm removes what is left of the object.
      void this.ctx.storage.setAlarm(Date.now());
    }
  }

  /** Waits for an attempt, at most `timeoutMs`; the attempt itself goes on regardless. */
  async #await(attempt: Attempt, timeoutMs: number, first: boolean): Promise<Outcome> {
    let timer: ReturnType<typeof setTimeout> | null = null;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    const settled = await Promise.race([attempt.done, timedOut]);
    clearTimeout(timer);
    if (settled === undefined) return first ? { kind: 'origin_timeout' } : { kind: 'in_progress', retryAfterMs: 1000 };
    return settled.kind === 'response' ? { kind: 'response', replayed: !first, response: settled.response } : settled;
  }
}
