/**
 * @module
 * The stored record of one key: one value of the object's synchronous KV storage (and, for bodies over 1 MiB,
 * SQLite chunk rows). docs/storage-schema.md describes the format.
 *
 * Consistency: every call here is synchronous (KV and SQL), so a caller that makes several calls without an
 * `await` in between is never interleaved with another request. Every write that ends an attempt first checks
 * that the record is still that attempt's and in flight: a late or repeated answer can never overwrite a newer
 * attempt's record or a stored answer. A chunked body and its record are written in one transaction.
 */
import type { Settled } from './api';
import { isResultStatus } from '../shared/status';

/** SQLite-backed Durable Objects refuse rows, strings and BLOBs over 2 MB in production (not locally). */
const MAX_SQL_ROW_BYTES = 2_000_000;
/** Bodies are stored in chunks of this size, each in its own row, well under {@link MAX_SQL_ROW_BYTES}. */
export const BODY_CHUNK_BYTES = 1024 * 1024;

/**
 * The format of a stored record (its `format` field): the one this code writes and reads. A record is one value of the
 * synchronous KV API (`ctx.storage.kv`, key `record`), which needs no schema: a first-time write is one put before the
 * origin call, one put of the answer and the alarm (3 rows written). Sealed parts authenticate the number of body
 * parts and the status (`seal.ts`). docs/storage-schema.md describes it.
 */
export const RECORD_FORMAT = 6;

/** The KV key of the record. */
const RECORD_KEY = 'record';

/** Every state a row can be in (docs/storage-schema.md, "States"). */
export type RecordState = 'in_flight' | 'complete' | 'too_large' | 'lost' | 'unknown';

/** A record without its body (decisions never need the body; a record read from KV carries it along). */
export interface RecordRow {
  format: number;
  fingerprint: string;
  state: RecordState;
  attempt: string;
  lease_until: number;
  expires_at: number;
  status: number | null;
  headers: string | ArrayBuffer | null;
  /** > 0: the body is in `body_chunk`; else it is the record's own `body` (read only when replayed). */
  chunks: number;
  created_at: number;
  method: string | null;
  path: string | null;
  /** The id of the key that sealed `headers` and the body; `null`: stored in plaintext. */
  key_id: string | null;
}

/** The KV value of a record: the row and, when `chunks` is 0 and it is stored, its body. */
interface StoredRecord extends RecordRow {
  body: ArrayBuffer | null;
}

/**
 * A response as written to (and read from) the row: headers as JSON text or sealed bytes, the body in parts
 * (one part: in the row; more: one `body_chunk` row each), and the id of the key that sealed them, if any.
 */
export interface StoredParts {
  readonly status: number;
  readonly headers: string | Uint8Array;
  readonly parts: readonly Uint8Array[];
  readonly keyId: string | null;
  /** How many body parts the record says it has (`parts` read from storage may be fewer, if one was removed). */
  readonly count: number;
}

/** What a stored answer says before its body: enough to open its head, then each body part. */
export type StoredHead = Omit<StoredParts, 'parts'>;

/** What a new attempt writes. */
export interface NewAttempt {
  readonly fingerprint: string;
  readonly attempt: string;
  readonly leaseUntil: number;
  readonly expiresAt: number;
  readonly createdAt: number;
  readonly method: string | null;
  readonly path: string | null;
}

/**
 * When a row stops counting. An in-flight row lives at least until its lease ends, even past the TTL: until
 * then its attempt may still be running (here, or in an instance that was reset), so the key stays held.
 */
export const expiryOf = (row: RecordRow): number =>
  row.state === 'in_flight' ? Math.max(row.expires_at, row.lease_until) : row.expires_at;

/** The bytes of `part` as a value to store (a view of a larger buffer would be stored with all of that buffer). */
const own = (part: Uint8Array): ArrayBuffer =>
  (part.byteOffset === 0 && part.byteLength === part.buffer.byteLength ? part.buffer : part.slice().buffer) as ArrayBuffer;

/** The record of one object. */
export class RecordStore {
  readonly #storage: DurableObjectStorage;
  /** The SQL and KV handles, taken once: every `storage` access crosses into the runtime. */
  readonly #sql: SqlStorage;
  readonly #kv: SyncKvStorage;

  constructor(storage: DurableObjectStorage) {
    this.#storage = storage;
    this.#sql = storage.sql;
    this.#kv = storage.kv;
  }

  /** The record, without its body (it carries its body along, unused). */
  read(): RecordRow | undefined {
    return this.#kv.get<StoredRecord>(RECORD_KEY);
  }

  /** Replaces whatever is stored with the in-flight record of a new attempt. */
  begin(row: NewAttempt): void {
    const record: StoredRecord = {
      format: RECORD_FORMAT,
      fingerprint: row.fingerprint,
      state: 'in_flight',
      attempt: row.attempt,
      lease_until: row.leaseUntil,
      expires_at: row.expiresAt,
      status: null,
      headers: null,
      body: null,
      chunks: 0,
      created_at: row.createdAt,
      method: row.method,
      path: row.path,
      key_id: null,
    };
    this.#kv.put(RECORD_KEY, record);
  }

  /** The record of `attempt` in state `from`, or `undefined` when it is no longer the attempt's. */
  #owned(attempt: string, from: RecordState = 'in_flight'): StoredRecord | undefined {
    const record = this.#kv.get<StoredRecord>(RECORD_KEY);
    return record?.attempt === attempt && record.state === from ? record : undefined;
  }

  /**
   * Stores the answer of `attempt` (prepared by `seal.ts`), if the record still belongs to it. One body part
   * goes in the record; more go in `body_chunk` rows, in the same transaction.
   *
   * @returns whether it was stored (the record was still the attempt's)
   */
  complete(attempt: string, { status, headers, parts, keyId }: StoredParts, from: 'in_flight' | 'unknown' = 'in_flight'): boolean {
    const record = this.#owned(attempt, from);
    if (record === undefined) return false;
    const stored: StoredRecord = {
      ...record,
      format: RECORD_FORMAT,
      state: 'complete',
      status,
      headers: typeof headers === 'string' ? headers : own(headers),
      body: parts.length === 1 ? own(parts[0]!) : null,
      chunks: parts.length === 1 ? 0 : parts.length,
      key_id: keyId,
    };
    if (parts.length === 1) {
      this.#kv.put(RECORD_KEY, stored);
      return true;
    }
    return this.#storage.transactionSync(() => {
      this.#kv.put(RECORD_KEY, stored);
      this.#sql.exec(`CREATE TABLE IF NOT EXISTS body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)`);
      parts.forEach((data, seq) => {
        if (data.byteLength > MAX_SQL_ROW_BYTES) throw new RangeError('body chunk exceeds the SQLite row limit');
        this.#sql.exec(`INSERT INTO body_chunk (seq, data) VALUES (?, ?)`, seq, data);
      });
      return true;
    });
  }

  /**
   * Records how `attempt` ended, if the record still belongs to it: a result's response is stored (`sealed`, prepared
   * by `seal.ts`); a result too large to store or whose body broke off keeps its status (`too_large`, `lost`: it ran,
   * and never runs again); an end without a status line that may have run is held as `unknown` when `holdUnknown`;
   * anything else (a 5xx, a transient status, a failure) frees the key.
   *
   * @returns `stored`, `held` or `freed`; `undefined` when nothing changed (kept as too large or lost, or the record
   *   was no longer the attempt's)
   */
  end(attempt: string, settled: Settled, sealed: StoredParts | undefined, holdUnknown: boolean): 'stored' | 'held' | 'freed' | undefined {
    if (settled.kind === 'response' && isResultStatus(settled.response.status))
      return sealed !== undefined && this.complete(attempt, sealed) ? 'stored' : undefined;
    if ((settled.kind === 'origin_timeout' || settled.kind === 'origin_unreachable') && settled.mayHaveRun && holdUnknown)
      return this.unknown(attempt) ? 'held' : undefined;
    if (settled.kind === 'response_too_large' && isResultStatus(settled.status)) this.tooLarge(attempt, settled.status);
    // The status line of a result arrived: the write ran, so the key must never run it again.
    else if (settled.kind === 'response_lost' && isResultStatus(settled.status)) this.lost(attempt, settled.status);
    else if (this.release(attempt)) return 'freed';
    return undefined;
  }

  /** Records that `attempt` ran but its answer was too large to store: only the status is kept. */
  tooLarge(attempt: string, status: number): void {
    const record = this.#owned(attempt);
    if (record !== undefined) this.#kv.put(RECORD_KEY, { ...record, format: RECORD_FORMAT, state: 'too_large', status });
  }

  /** Records that `attempt` got the status line of a result and then lost the body: it ran, nothing to replay. */
  lost(attempt: string, status: number): void {
    const record = this.#owned(attempt);
    if (record !== undefined) this.#kv.put(RECORD_KEY, { ...record, format: RECORD_FORMAT, state: 'lost', status });
  }

  /**
   * Marks the record of an attempt whose outcome is unknown (`hold`, `reconcile`): it died, or failed with no status
   * line; nobody knows whether it ran, so the key is held. Returns whether the record was still the attempt's.
   */
  unknown(attempt: string): boolean {
    const record = this.#owned(attempt);
    if (record === undefined) return false;
    this.#kv.put(RECORD_KEY, { ...record, format: RECORD_FORMAT, state: 'unknown' });
    return true;
  }

  /** Frees the key after `attempt` failed; returns whether the record was still the attempt's. */
  release(attempt: string): boolean {
    return this.#owned(attempt) !== undefined && this.#kv.delete(RECORD_KEY);
  }

  /** Deletes an expired record and its body. */
  expire(row: RecordRow): void {
    this.#kv.delete(RECORD_KEY);
    if (row.chunks > 0) this.#sql.exec(`DELETE FROM body_chunk`);
  }

  /** The head of a complete record's stored answer, as stored (sealed or not): status, headers, key id, parts. */
  head(row: RecordRow): StoredHead {
    const headers = row.headers ?? '[]';
    return {
      status: row.status ?? 0,
      headers: typeof headers === 'string' ? headers : new Uint8Array(headers),
      keyId: row.key_id,
      count: Math.max(1, row.chunks),
    };
  }

  /** The stored answer of a complete record whose body is one part, kept in the record itself (`chunks` 0). */
  whole(row: RecordRow): StoredParts {
    const { body } = row as StoredRecord;
    return { ...this.head(row), parts: [body === null ? new Uint8Array(0) : new Uint8Array(body)] };
  }

  /** How many body chunk rows are stored (a complete record with `chunks` > 0 must have exactly that many). */
  chunkCount(): number {
    try {
      return this.#sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM body_chunk`).one().n;
    } catch {
      // No table (purged meanwhile): no chunk.
      return 0;
    }
  }

  /** Body chunk `seq` (from 0) as stored, or `undefined` when there is none (purged, or replaced meanwhile). */
  chunk(seq: number): Uint8Array | undefined {
    try {
      const row = this.#sql.exec<{ data: ArrayBuffer }>(`SELECT data FROM body_chunk WHERE seq = ?`, seq).toArray()[0];
      return row === undefined ? undefined : new Uint8Array(row.data);
    } catch {
      return undefined;
    }
  }

  /** Deletes everything, the schema, the KV record and (compatibility date >= 2026-02-24) the alarm included. */
  async clear(): Promise<void> {
    await this.#storage.deleteAll();
  }
}
