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
import type { AttemptLimits, AttemptSpec, BeginResult } from './api';
import { callOrigin, withinLease } from './origin';
import { RecordStore, expiryOf } from './storage';

interface Attempt {
  readonly id: string;
  readonly done: Promise<Settled>;
  /** Settles a handler-mode attempt (see {@link IdempotencyRecord.complete}). */
  readonly settle?: (settled: Settled) => void;
}

/** What a request finds: an attempt to start or join, or an answer from storage. */
type Decision = { readonly start: number } | { readonly join: Attempt } | { readonly outcome: Outcome };

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
  async execute(spec: AttemptSpec): Promise<Outcome> {
    const decision = this.#decide(spec);
    if ('outcome' in decision) return decision.outcome;
    if ('join' in decision) return this.#await(decision.join, spec.timeoutMs, false);
    const attempt = this.#start(spec, decision.start, () => callOrigin(spec.origin, spec.leaseMs));
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
  async begin(spec: AttemptLimits): Promise<BeginResult> {
    const decision = this.#decide(spec);
    if ('outcome' in decision) return decision.outcome;
    if ('join' in decision) return this.#await(decision.join, spec.timeoutMs, false);
    let settle!: (settled: Settled) => void;
    const reported = new Promise<Settled>((resolve) => (settle = resolve));
    const attempt = this.#start(spec, decision.start, () => withinLease(reported, spec.leaseMs), settle);
    return { kind: 'acquired', attempt: attempt.id };
  }

  /**
   * Handler mode: reports the result of an attempt acquired with {@link begin}. Answers below 500 are
   * stored; others free the key. Also works after this object was reset in between, as long as the
   * in-flight row still names `attempt`.
   *
   * @param attempt - the id `begin` returned
   * @param settled - the response (or failure) to record
   */
  async complete(attempt: string, settled: Settled): Promise<void> {
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

  /** Decides synchronously (no await) what this request does, so that no other request interleaves. */
  #decide(spec: AttemptLimits): Decision {
    const now = Date.now();
    let record = this.#store.read();
    // Never expire the row of an attempt that is still running here: its answer is still to come.
    if (record !== undefined && expiryOf(record) <= now && this.#attempt?.id !== record.attempt) {
      // Expired (the alarm may be late or not yet run): the key is free again.
      this.#store.expire(record);
      record = undefined;
    }
    if (record === undefined) return { start: now + spec.ttlMs };
    if (record.fingerprint !== spec.fingerprint) return { outcome: { kind: 'conflict' } };
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
        // A take-over keeps the key's expiry (its in-flight row lives until the new lease ends anyway).
        return { start: record.expires_at };
      }
    }
  }

  /**
   * Writes the in-flight row, then starts `run`, synchronously after {@link #decide}. The row is written
   * first, so the output gate holds any fetch `run` makes until the row is durable.
   */
  #start(spec: AttemptLimits, expiresAt: number, run: () => Promise<Settled>, settle?: (settled: Settled) => void): Attempt {
    const id = crypto.randomUUID();
    const leaseUntil = Date.now() + spec.leaseMs;
    this.#store.begin(spec.fingerprint, id, leaseUntil, expiresAt);
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
    if (settled.kind === 'response' && settled.response.status < 500) {
      this.#store.complete(id, settled.response);
    } else if (settled.kind === 'response_too_large') {
      this.#store.tooLarge(id, settled.status);
    } else if (this.#store.release(id)) {
      // 5xx answers and failures are not stored: the key is free for the next request, and the alarm
      // removes what is left of the object.
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
