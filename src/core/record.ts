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
import { proxy } from 'hono/proxy';
import { type HeaderList, storableHeaders } from './headers';
import type { Outcome, StoredResponse } from './outcome';

/** What the Worker sends for a keyed request. */
export interface AttemptSpec {
  /** SHA-256 over method, path, query and body (see `fingerprintRequest`). */
  readonly fingerprint: string;
  readonly method: string;
  /** The full origin URL to call. */
  readonly url: string;
  /** Request headers to forward, including `Authorization` and `Idempotency-Key`. */
  readonly headers: HeaderList;
  readonly body: ArrayBuffer | null;
  /** How long this caller waits for the attempt before it gets 504 (first) or 409 (duplicate). */
  readonly timeoutMs: number;
  /** How long an attempt may run before it is abandoned and the key freed. */
  readonly leaseMs: number;
  /** How long the record lives, counted from the first request. */
  readonly ttlMs: number;
  /** Largest response body stored. */
  readonly maxBodyBytes: number;
}

/** SQLite-backed Durable Objects refuse rows, strings and BLOBs over 2 MB in production (not locally). */
export const MAX_SQL_ROW_BYTES = 2_000_000;
/** Bodies are stored in chunks of this size, each in its own row, well under {@link MAX_SQL_ROW_BYTES}. */
export const BODY_CHUNK_BYTES = 1024 * 1024;
/** Stored header lists larger than this are refused like an oversized body. */
const MAX_HEADERS_BYTES = 256 * 1024;

const SCHEMA_VERSION = 1;

/** How an attempt ended. */
type Settled =
  | { readonly kind: 'response'; readonly response: StoredResponse }
  | { readonly kind: 'origin_timeout' }
  | { readonly kind: 'origin_unreachable' }
  | { readonly kind: 'response_too_large'; readonly status: number };

interface Attempt {
  readonly id: string;
  readonly done: Promise<Settled>;
}

interface RecordRow extends Record<string, SqlStorageValue> {
  fingerprint: string;
  state: 'in_flight' | 'complete' | 'too_large';
  attempt: string;
  lease_until: number;
  expires_at: number;
  status: number | null;
  headers: string | null;
  chunks: number;
}

/** The Durable Object class; one instance per `(credential hash, key)`. */
export class IdempotencyRecord extends DurableObject<Env> {
  readonly #storage: SqlStorage;
  /** Whether the schema is known to exist; `deleteAll()` in the alarm removes it again. */
  #migrated = false;
  #attempt: Attempt | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#storage = ctx.storage.sql;
  }

  /**
   * The SQL handle, with the schema in place. Migration is synchronous (SQLite calls are), so doing it
   * lazily here needs no `blockConcurrencyWhile` and also covers the object emptied by the alarm.
   */
  get #sql(): SqlStorage {
    if (!this.#migrated) {
      this.#migrate();
      this.#migrated = true;
    }
    return this.#storage;
  }

  /**
   * Runs or joins the attempt for this key, or answers from storage.
   *
   * @param spec - the request and the limits that apply to it
   * @returns what the client should see; never throws for origin failures
   */
  async execute(spec: AttemptSpec): Promise<Outcome> {
    const now = Date.now();
    const record = this.#current(now);
    if (record === undefined) return this.#await(this.#start(spec, now, now + spec.ttlMs), spec.timeoutMs, true);
    if (record.fingerprint !== spec.fingerprint) return { kind: 'conflict' };
    switch (record.state) {
      case 'complete':
        return { kind: 'response', replayed: true, response: this.#storedResponse(record) };
      case 'too_large':
        return { kind: 'response_too_large', status: record.status ?? 0 };
      case 'in_flight': {
        const attempt = this.#attempt;
        if (attempt?.id === record.attempt) return this.#await(attempt, spec.timeoutMs, false);
        // The row outlived its attempt: this instance was reset while the origin was being called.
        if (now < record.lease_until) return { kind: 'in_progress', retryAfterMs: record.lease_until - now };
        return this.#await(this.#start(spec, now, record.expires_at), spec.timeoutMs, true);
      }
    }
  }

  /** Garbage collection: deletes everything once the record has expired (or is gone). Idempotent. */
  override async alarm(): Promise<void> {
    const record = this.#read();
    if (record !== undefined && (record.expires_at > Date.now() || this.#attempt !== undefined)) {
      await this.ctx.storage.setAlarm(Math.max(record.expires_at, record.lease_until));
      return;
    }
    // Also removes the schema and (compatibility date >= 2026-02-24) any alarm: nothing is left.
    await this.ctx.storage.deleteAll();
    this.#migrated = false;
  }

  #migrate(): void {
    this.#storage.exec(`CREATE TABLE IF NOT EXISTS _schema (version INTEGER NOT NULL)`);
    const version = this.#storage.exec<{ version: number | null }>(`SELECT max(version) AS version FROM _schema`).one().version ?? 0;
    if (version >= SCHEMA_VERSION) return;
    this.#storage.exec(`
      CREATE TABLE IF NOT EXISTS record (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('in_flight', 'complete', 'too_large')),
        attempt TEXT NOT NULL,
        lease_until INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        status INTEGER,
        headers TEXT,
        chunks INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
      INSERT INTO _schema (version) VALUES (${SCHEMA_VERSION});
    `);
  }

  #read(): RecordRow | undefined {
    return this.#sql.exec<RecordRow>(`SELECT * FROM record WHERE id = 1`).toArray()[0];
  }

  /** The record, unless it has expired: then it is deleted (the alarm may be late or not yet run). */
  #current(now: number): RecordRow | undefined {
    const record = this.#read();
    if (record === undefined || record.expires_at > now) return record;
    this.#clear();
    return undefined;
  }

  #clear(): void {
    this.#sql.exec(`DELETE FROM record; DELETE FROM body_chunk`);
  }

  /** Writes the in-flight row and starts the origin call, synchronously after the caller's check. */
  #start(spec: AttemptSpec, now: number, expiresAt: number): Attempt {
    const id = crypto.randomUUID();
    this.#clear();
    this.#sql.exec(
      `INSERT INTO record (id, fingerprint, state, attempt, lease_until, expires_at) VALUES (1, ?, 'in_flight', ?, ?, ?)`,
      spec.fingerprint,
      id,
      now + spec.leaseMs,
      expiresAt,
    );
    void this.ctx.storage.setAlarm(expiresAt);
    const attempt: Attempt = { id, done: this.#run(spec, id) };
    this.#attempt = attempt;
    return attempt;
  }

  async #run(spec: AttemptSpec, id: string): Promise<Settled> {
    const settled = await callOrigin(spec);
    if (this.#attempt?.id === id) this.#attempt = undefined;
    try {
      this.#store(id, settled);
    } catch (error) {
      // Storage refused the write (or the instance is going away). The in-flight row stays, so the key
      // is held until its lease ends rather than silently re-run.
      console.error({ event: 'store_failed', error: String(error) });
    }
    return settled;
  }

  #store(id: string, settled: Settled): void {
    const record = this.#read();
    if (record?.attempt !== id) return;
    if (settled.kind === 'response' && settled.response.status < 500) {
      const { status, headers, body } = settled.response;
      const chunks = Math.ceil(body.byteLength / BODY_CHUNK_BYTES);
      this.ctx.storage.transactionSync(() => {
        this.#sql.exec(
          `UPDATE record SET state = 'complete', status = ?, headers = ?, chunks = ? WHERE id = 1`,
          status,
          JSON.stringify(headers),
          chunks,
        );
        for (let seq = 0; seq < chunks; seq++) {
          const data = body.slice(seq * BODY_CHUNK_BYTES, (seq + 1) * BODY_CHUNK_BYTES);
          if (data.byteLength > MAX_SQL_ROW_BYTES) throw new RangeError('body chunk exceeds the SQLite row limit');
          this.#sql.exec(`INSERT INTO body_chunk (seq, data) VALUES (?, ?)`, seq, data);
        }
      });
    } else if (settled.kind === 'response_too_large') {
      this.#sql.exec(`UPDATE record SET state = 'too_large', status = ? WHERE id = 1`, settled.status);
    } else {
      // 5xx answers and failures are not stored: the key is free for the next request, and the alarm
      // removes what is left of the object.
      this.#clear();
      void this.ctx.storage.setAlarm(Date.now());
    }
  }

  #storedResponse(record: RecordRow): StoredResponse {
    const body = new Uint8Array(
      this.#sql.exec<{ size: number }>(`SELECT coalesce(sum(length(data)), 0) AS size FROM body_chunk`).one().size,
    );
    let offset = 0;
    for (const { data } of this.#sql.exec<{ data: ArrayBuffer }>(`SELECT data FROM body_chunk ORDER BY seq`)) {
      body.set(new Uint8Array(data), offset);
      offset += data.byteLength;
    }
    return { status: record.status ?? 0, headers: JSON.parse(record.headers ?? '[]') as HeaderList, body: body.buffer };
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

/**
 * Calls the origin once and reads the whole answer; never throws. The call is abandoned when the lease
 * ends. The lease timer is cleared as soon as the answer is read: a pending timer would keep the object
 * from hibernating (and billed) for the rest of the lease.
 */
async function callOrigin(spec: AttemptSpec): Promise<Settled> {
  const lease = new AbortController();
  const timer = setTimeout(() => lease.abort(new DOMException('origin lease ended', 'TimeoutError')), spec.leaseMs);
  try {
    // hono/proxy drops hop-by-hop headers both ways, and content-encoding/-length once the body is decoded.
    const response = await proxy(spec.url, {
      method: spec.method,
      headers: spec.headers,
      body: spec.body,
      redirect: 'manual',
      signal: lease.signal,
    });
    const body = await readLimited(response, spec.maxBodyBytes);
    const headers = storableHeaders(response.headers);
    if (body === undefined || JSON.stringify(headers).length > MAX_HEADERS_BYTES) {
      return { kind: 'response_too_large', status: response.status };
    }
    return { kind: 'response', response: { status: response.status, headers, body } };
  } catch (error) {
    return lease.signal.aborted ? { kind: 'origin_timeout' } : { kind: 'origin_unreachable' };
  } finally {
    clearTimeout(timer);
  }
}

/** The whole body, or `undefined` as soon as it is known to exceed `max` bytes. */
async function readLimited(response: Response, max: number): Promise<ArrayBuffer | undefined> {
  if (response.body === null) return new ArrayBuffer(0);
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > max) {
    await response.body.cancel();
    return undefined;
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of response.body) {
    size += part.byteLength;
    if (size > max) return undefined; // leaving the loop cancels the stream
    parts.push(part);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    body.set(part, offset);
    offset += part.byteLength;
  }
  return body.buffer;
}
