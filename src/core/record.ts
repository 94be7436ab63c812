/**
 * @module
 * `IdempotencyRecord`: the Durable Object that owns one `(credential, key)` pair.
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
 *   times.
 *
 * Not guaranteed: if the instance dies after the origin ran but before the answer was stored, the origin
 * may see the request again after the lease ends. The forwarded `Idempotency-Key` lets it deduplicate.
 */
import { DurableObject } from 'cloudflare:workers';
import { callOrigin, withinLease } from './capture';
import type { HeaderList } from './headers';
import type { Outcome, Settled, StoredResponse } from './outcome';

/** The limits every attempt runs under; sent with every call to the object. */
export interface AttemptLimits {
  /** SHA-256 over method, path, query and body (see `fingerprintRequest`), or a custom fingerprint. */
  readonly fingerprint: string;
  /** How long this caller waits for the attempt before it gets 504 (first) or 409 (duplicate). */
  readonly timeoutMs: number;
  /** How long an attempt may run before it is abandoned and the key freed. */
  readonly leaseMs: number;
  /** How long the record lives, counted from the first request. */
  readonly ttlMs: number;
}

/** The origin request an object runs itself (proxy mode). */
export interface OriginRequest {
  readonly method: string;
  /** The full origin URL to call. */
  readonly url: string;
  /** Request headers to forward, including `Authorization` and `Idempotency-Key`. */
  readonly headers: HeaderList;
  readonly body: ArrayBuffer | null;
  /** Largest response body stored. */
  readonly maxBodyBytes: number;
}

/** What the Worker sends for a keyed request in proxy mode. */
export interface AttemptSpec extends AttemptLimits {
  readonly origin: OriginRequest;
}

/** Answer of {@link IdempotencyRecord.begin}: run the handler yourself, or what the client gets. */
export type BeginResult = { readonly kind: 'acquired'; readonly attempt: string } | Outcome;

/** SQLite-backed Durable Objects refuse rows, strings and BLOBs over 2 MB in production (not locally). */
export const MAX_SQL_ROW_BYTES = 2_000_000;
/** Bodies are stored in chunks of this size, each in its own row, well under {@link MAX_SQL_ROW_BYTES}. */
export const BODY_CHUNK_BYTES = 1024 * 1024;

/**
 * Format of a stored record row (its `format` column). Only format 1 exists; a new format must keep
 * reading rows of the older ones (migrating them on read) and bump this number.
 */
const RECORD_FORMAT = 1;

interface Attempt {
  readonly id: string;
  readonly done: Promise<Settled>;
  /** Settles a handler-mode attempt (see {@link IdempotencyRecord.complete}). */
  readonly settle?: (settled: Settled) => void;
}

/** What a request finds: an attempt to start or join, or an answer from storage. */
type Decision = { readonly start: number } | { readonly join: Attempt } | { readonly outcome: Outcome };

interface RecordRow extends Record<string, SqlStorageValue> {
  format: number;
  fingerprint: string;
  state: 'in_flight' | 'complete' | 'too_large';
  attempt: string;
  lease_until: number;
  expires_at: number;
  status: number | null;
  headers: string | null;
  /** > 0: the body is in `body_chunk`; else it is the row's `body` column (read only when replayed). */
  chunks: number;
}

/** The Durable Object class; one instance per `(credential hash, key)`. */
export class IdempotencyRecord extends DurableObject<Record<string, unknown>> {
  readonly #storage: SqlStorage;
  /** Whether the `record` table is known to exist; `deleteAll()` in the alarm removes it again. */
  #migrated = false;
  #attempt: Attempt | undefined;

  constructor(ctx: DurableObjectState, env: Record<string, unknown>) {
    super(ctx, env);
    this.#storage = ctx.storage.sql;
  }

  /**
   * The SQL handle, with the table in place. Creating it is one synchronous statement (a no-op once it
   * exists), so doing it lazily here needs no `blockConcurrencyWhile`, costs a new object no extra
   * statements, and also covers the object emptied by the alarm.
   */
  get #sql(): SqlStorage {
    if (!this.#migrated) {
      this.#storage.exec(`
        CREATE TABLE IF NOT EXISTS record (
          id INTEGER PRIMARY KEY CHECK (id = 1),
          format INTEGER NOT NULL,
          fingerprint TEXT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('in_flight', 'complete', 'too_large')),
          attempt TEXT NOT NULL,
          lease_until INTEGER NOT NULL,
          expires_at INTEGER NOT NULL,
          status INTEGER,
          headers TEXT,
          body BLOB,
          chunks INTEGER NOT NULL DEFAULT 0
        )`);
      this.#migrated = true;
    }
    return this.#storage;
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
    const record = this.#read();
    if (record?.attempt === attempt && record.state === 'in_flight') {
      this.#store(attempt, settled);
    } else if (record === undefined) {
      // Nothing to record into (expired, or already collected): let the alarm remove the empty table.
      await this.ctx.storage.setAlarm(Date.now());
    }
  }

  /** Garbage collection: deletes everything once the record has expired (or is gone). Idempotent. */
  override async alarm(): Promise<void> {
    const record = this.#read();
    if (record !== undefined && (record.expires_at > Date.now() || this.#attempt !== undefined)) {
      await this.ctx.storage.setAlarm(Math.max(record.expires_at, record.lease_until, Date.now() + 1000));
      return;
    }
    // Also removes the schema and (compatibility date >= 2026-02-24) any alarm: nothing is left.
    await this.ctx.storage.deleteAll();
    this.#migrated = false;
  }

  #read(): RecordRow | undefined {
    // Without the body: most decisions (conflict, in progress, expiry) never need it.
    return this.#sql
      .exec<RecordRow>(`SELECT format, fingerprint, state, attempt, lease_until, expires_at, status, headers, chunks FROM record WHERE id = 1`)
      .toArray()[0];
  }

  /** The record, unless it has expired: then it is deleted (the alarm may be late or not yet run). */
  #current(now: number): RecordRow | undefined {
    const record = this.#read();
    if (record === undefined || record.expires_at > now) return record;
    // Never expire the row of an attempt that is still running here: its answer is still to come.
    if (record.state === 'in_flight' && this.#attempt?.id === record.attempt) return record;
    this.#sql.exec(`DELETE FROM record`);
    if (record.chunks > 0) this.#sql.exec(`DELETE FROM body_chunk`);
    return undefined;
  }

  /** Decides synchronously (no await) what this request does, so that no other request interleaves. */
  #decide(spec: AttemptLimits): Decision {
    const now = Date.now();
    const record = this.#current(now);
    if (record === undefined) return { start: now + spec.ttlMs };
    if (record.fingerprint !== spec.fingerprint) return { outcome: { kind: 'conflict' } };
    switch (record.state) {
      case 'complete':
        return { outcome: { kind: 'response', replayed: true, response: this.#storedResponse(record), expiresAt: record.expires_at } };
      case 'too_large':
        return { outcome: { kind: 'response_too_large', status: record.status ?? 0 } };
      case 'in_flight': {
        const attempt = this.#attempt;
        if (attempt?.id === record.attempt) return { join: attempt };
        // The row outlived its attempt: this instance was reset while the attempt was running.
        if (now < record.lease_until) return { outcome: { kind: 'in_progress', retryAfterMs: record.lease_until - now } };
        // A take-over keeps the key's expiry, but never lets it fall inside the new attempt's lease.
        return { start: Math.max(record.expires_at, now + spec.leaseMs + 1) };
      }
    }
  }

  /**
   * Writes the in-flight row, then starts `run`, synchronously after {@link #decide}. The row is written
   * first, so the output gate holds any fetch `run` makes until the row is durable.
   */
  #start(spec: AttemptLimits, expiresAt: number, run: () => Promise<Settled>, settle?: (settled: Settled) => void): Attempt {
    const id = crypto.randomUUID();
    this.#sql.exec(
      `INSERT OR REPLACE INTO record (id, format, fingerprint, state, attempt, lease_until, expires_at) VALUES (1, ?, ?, 'in_flight', ?, ?, ?)`,
      RECORD_FORMAT,
      spec.fingerprint,
      id,
      Date.now() + spec.leaseMs,
      expiresAt,
    );
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
      this.#store(id, settled);
    } catch (error) {
      // Storage refused the write (or the instance is going away). The in-flight row stays, so the key
      // is held until its lease ends rather than silently re-run.
      console.error(JSON.stringify({ event: 'store_failed', error: String(error) }));
    }
    return settled;
  }

  /**
   * Records how attempt `id` ended, if the row still belongs to it (every statement is guarded by
   * `attempt = ?`). A body up to {@link BODY_CHUNK_BYTES} goes in the record row; a larger one in
   * `body_chunk` rows, written in the same transaction.
   */
  #store(id: string, settled: Settled): void {
    if (settled.kind === 'response' && settled.response.status < 500) {
      const { status, headers, body } = settled.response;
      const inline = body.byteLength <= BODY_CHUNK_BYTES;
      const update = `UPDATE record SET state = 'complete', status = ?, headers = ?, body = ?, chunks = ? WHERE id = 1 AND attempt = ? AND state = 'in_flight'`;
      if (inline) {
        this.#sql.exec(update, status, JSON.stringify(headers), body, 0, id);
        return;
      }
      const chunks = Math.ceil(body.byteLength / BODY_CHUNK_BYTES);
      this.ctx.storage.transactionSync(() => {
        if (this.#sql.exec(update, status, JSON.stringify(headers), null, chunks, id).rowsWritten === 0) return;
        this.#sql.exec(`CREATE TABLE IF NOT EXISTS body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)`);
        for (let seq = 0; seq < chunks; seq++) {
          const data = body.slice(seq * BODY_CHUNK_BYTES, (seq + 1) * BODY_CHUNK_BYTES);
          if (data.byteLength > MAX_SQL_ROW_BYTES) throw new RangeError('body chunk exceeds the SQLite row limit');
          this.#sql.exec(`INSERT INTO body_chunk (seq, data) VALUES (?, ?)`, seq, data);
        }
      });
    } else if (settled.kind === 'response_too_large') {
      this.#sql.exec(`UPDATE record SET state = 'too_large', status = ? WHERE id = 1 AND attempt = ? AND state = 'in_flight'`, settled.status, id);
    } else if (this.#sql.exec(`DELETE FROM record WHERE id = 1 AND attempt = ? AND state = 'in_flight'`, id).rowsWritten > 0) {
      // 5xx answers and failures are not stored: the key is free for the next request, and the alarm
      // removes what is left of the object.
      void this.ctx.storage.setAlarm(Date.now());
    }
  }

  #storedResponse(record: RecordRow): StoredResponse {
    const headers = JSON.parse(record.headers ?? '[]') as HeaderList;
    if (record.chunks === 0) {
      const { body } = this.#sql.exec<{ body: ArrayBuffer | null }>(`SELECT body FROM record WHERE id = 1`).one();
      return { status: record.status ?? 0, headers, body: body ?? new ArrayBuffer(0) };
    }
    const parts = this.#sql.exec<{ data: ArrayBuffer }>(`SELECT data FROM body_chunk ORDER BY seq`).toArray();
    const body = new Uint8Array(parts.reduce((size, { data }) => size + data.byteLength, 0));
    let offset = 0;
    for (const { data } of parts) {
      body.set(new Uint8Array(data), offset);
      offset += data.byteLength;
    }
    return { status: record.status ?? 0, headers, body: body.buffer };
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
