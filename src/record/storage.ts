/**
 * @module
 * The stored record of one key: one SQLite row (and, for bodies over 1 MiB, chunk rows), in the object's
 * own storage. docs/storage-schema.md describes the format.
 *
 * Consistency: every call here is synchronous SQL, so a caller that makes several calls without an
 * `await` in between is never interleaved with another request. Every write that ends an attempt is
 * guarded by `attempt = ? AND state = 'in_flight'`: a late or repeated answer can never overwrite a newer
 * attempt's row or a stored answer. A chunked body and its row are written in one transaction.
 */

/** SQLite-backed Durable Objects refuse rows, strings and BLOBs over 2 MB in production (not locally). */
export const MAX_SQL_ROW_BYTES = 2_000_000;
/** Bodies are stored in chunks of this size, each in its own row, well under {@link MAX_SQL_ROW_BYTES}. */
export const BODY_CHUNK_BYTES = 1024 * 1024;

/**
 * Format of a stored record row (its `format` column). Format 2 added `created_at`, `method` and `path`; format 3
 * the states `lost` and `unknown`. Rows of formats 1 and 2 are read as they are (format 1 with the format 2
 * columns `null`). SQLite cannot change a table's CHECK constraint, so the first write of new code to a table of
 * an older format rebuilds it, rows included, in one transaction. Format 4 added `key_id` (encryption at rest):
 * a format 3 table gains the column by `ALTER TABLE`; a row whose `key_id` is `NULL` is plaintext.
 */
export const RECORD_FORMAT = 4;

/** Every state a row can be in (docs/storage-schema.md, "States"). */
export type RecordState = 'in_flight' | 'complete' | 'too_large' | 'lost' | 'unknown';

const createTable = (name: string): string => `
  CREATE TABLE IF NOT EXISTS ${name} (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_flight', 'complete', 'too_large', 'lost', 'unknown')),
    attempt TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    status INTEGER,
    headers TEXT,
    body BLOB,
    chunks INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER,
    method TEXT,
    path TEXT,
    key_id TEXT
  )`;

/** A record row without its body (decisions never need the body). */
export interface RecordRow extends Record<string, SqlStorageValue> {
  format: number;
  fingerprint: string;
  state: RecordState;
  attempt: string;
  lease_until: number;
  expires_at: number;
  status: number | null;
  headers: string | ArrayBuffer | null;
  /** > 0: the body is in `body_chunk`; else it is the row's `body` column (read only when replayed). */
  chunks: number;
  created_at: number | null;
  method: string | null;
  path: string | null;
  /** The id of the key that sealed `headers` and the body; `null`: stored in plaintext. */
  key_id: string | null;
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
}

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

const COLUMNS_1 = 'format, fingerprint, state, attempt, lease_until, expires_at, status, headers, chunks';
const COLUMNS_2 = `${COLUMNS_1}, created_at, method, path`;
/** Format 1 rows, read as format 2. */
const COLUMNS_1_AS_2 = `${COLUMNS_1}, NULL AS created_at, NULL AS method, NULL AS path`;
/** What {@link RecordStore.read} selects from a table of each format (before 4: `key_id` is `NULL`, plaintext). */
const SELECTED = {
  1: `${COLUMNS_1_AS_2}, NULL AS key_id`,
  2: `${COLUMNS_2}, NULL AS key_id`,
  3: `${COLUMNS_2}, NULL AS key_id`,
  4: `${COLUMNS_2}, key_id`,
};

/**
 * When a row stops counting. An in-flight row lives at least until its lease ends, even past the TTL: until
 * then its attempt may still be running (here, or in an instance that was reset), so the key stays held.
 */
export const expiryOf = (row: RecordRow): number =>
  row.state === 'in_flight' ? Math.max(row.expires_at, row.lease_until) : row.expires_at;

/** The record table of one object. */
export class RecordStore {
  readonly #storage: DurableObjectStorage;
  /**
   * The format of the `record` table: none yet (0), 1 to 4; `undefined` until looked up, once per instance.
   * Reading never creates or changes the table, so a lookup of an unknown key writes nothing.
   */
  #table: 0 | 1 | 2 | 3 | 4 | undefined;

  /** The SQL handle, taken once: every `storage.sql` access crosses into the runtime. */
  readonly #sql: SqlStorage;

  constructor(storage: DurableObjectStorage) {
    this.#storage = storage;
    this.#sql = storage.sql;
  }

  #format(): 0 | 1 | 2 | 3 | 4 {
    if (this.#table === undefined) {
      const table = this.#sql.exec<{ sql: string }>(`SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'record'`).toArray()[0];
      const sql = table?.sql ?? '';
      this.#table = table === undefined ? 0 : sql.includes('key_id') ? 4 : sql.includes("'lost'") ? 3 : sql.includes('created_at') ? 2 : 1;
    }
    return this.#table;
  }

  /** The record, without its body. */
  read(): RecordRow | undefined {
    const format = this.#format();
    if (format === 0) return undefined;
    return this.#sql.exec<RecordRow>(`SELECT ${SELECTED[format]} FROM record WHERE id = 1`).toArray()[0];
  }

  /**
   * Makes the table one of the current format before a write: creates it, or rebuilds an older one (whose CHECK
   * would refuse the states of format 3) with its row, in one transaction so a failure leaves the old table. A
   * format 3 table only gains the `key_id` column.
   */
  #writable(): void {
    const format = this.#format();
    if (format === 4) return;
    if (format === 0) this.#sql.exec(createTable('record'));
    else if (format === 3) this.#sql.exec(`ALTER TABLE record ADD COLUMN key_id TEXT`);
    else {
      this.#storage.transactionSync(() => {
        this.#sql.exec(createTable('record_next'));
        this.#sql.exec(
          `INSERT INTO record_next (id, ${COLUMNS_2}, body) SELECT id, ${format === 1 ? COLUMNS_1_AS_2 : COLUMNS_2}, body FROM record`,
        );
        this.#sql.exec(`DROP TABLE record`);
        this.#sql.exec(`ALTER TABLE record_next RENAME TO record`);
      });
    }
    this.#table = 4;
  }

  /** Replaces whatever is stored with the in-flight row of a new attempt, creating or migrating the table first. */
  begin(row: NewAttempt): void {
    this.#writable();
    this.#sql.exec(
      `INSERT OR REPLACE INTO record (id, format, fingerprint, state, attempt, lease_until, expires_at, created_at, method, path)
       VALUES (1, ?, ?, 'in_flight', ?, ?, ?, ?, ?, ?)`,
      RECORD_FORMAT,
      row.fingerprint,
      row.attempt,
      row.leaseUntil,
      row.expiresAt,
      row.createdAt,
      row.method,
      row.path,
    );
  }

  /**
   * Stores the answer of `attempt` (prepared by `sealed-store.ts`), if the row still belongs to it. One body part
   * goes in the record row; more go in `body_chunk` rows, in the same transaction.
   *
   * @returns whether it was stored (the row was still the attempt's)
   */
  complete(attempt: string, { status, headers, parts, keyId }: StoredParts, from: 'in_flight' | 'unknown' = 'in_flight'): boolean {
    this.#writable();
    const update = `UPDATE record SET state = 'complete', status = ?, headers = ?, body = ?, chunks = ?, key_id = ?, format = ? WHERE id = 1 AND attempt = ? AND state = '${from}'`;
    if (parts.length === 1) {
      return this.#sql.exec(update, status, headers, parts[0]!, 0, keyId, RECORD_FORMAT, attempt).rowsWritten > 0;
    }
    return this.#storage.transactionSync(() => {
      if (this.#sql.exec(update, status, headers, null, parts.length, keyId, RECORD_FORMAT, attempt).rowsWritten === 0) return false;
      this.#sql.exec(`CREATE TABLE IF NOT EXISTS body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)`);
      parts.forEach((data, seq) => {
        if (data.byteLength > MAX_SQL_ROW_BYTES) throw new RangeError('body chunk exceeds the SQLite row limit');
        this.#sql.exec(`INSERT INTO body_chunk (seq, data) VALUES (?, ?)`, seq, data);
      });
      return true;
    });
  }

  /** Records that `attempt` ran but its answer was too large to store: only the status is kept. */
  tooLarge(attempt: string, status: number): void {
    this.#sql.exec(
      `UPDATE record SET state = 'too_large', status = ? WHERE id = 1 AND attempt = ? AND state = 'in_flight'`,
      status,
      attempt,
    );
  }

  /** Records that `attempt` got the status line of a result and then lost the body: it ran, nothing to replay. */
  lost(attempt: string, status: number): void {
    this.#writable();
    this.#sql.exec(
      `UPDATE record SET state = 'lost', status = ?, format = ? WHERE id = 1 AND attempt = ? AND state = 'in_flight'`,
      status,
      RECORD_FORMAT,
      attempt,
    );
  }

  /**
   * Marks the row of an attempt whose outcome is unknown (`hold`, `reconcile`): it died, or failed with no status
   * line; nobody knows whether it ran, so the key is held. Returns whether the row was still the attempt's.
   */
  unknown(attempt: string): boolean {
    this.#writable();
    return (
      this.#sql.exec(
        `UPDATE record SET state = 'unknown', format = ? WHERE id = 1 AND attempt = ? AND state = 'in_flight'`,
        RECORD_FORMAT,
        attempt,
      ).rowsWritten > 0
    );
  }

  /** Frees the key after `attempt` failed; returns whether the row was still the attempt's. */
  release(attempt: string): boolean {
    return this.#sql.exec(`DELETE FROM record WHERE id = 1 AND attempt = ? AND state = 'in_flight'`, attempt).rowsWritten > 0;
  }

  /** Deletes an expired record and its body. */
  expire(row: RecordRow): void {
    this.#sql.exec(`DELETE FROM record`);
    if (row.chunks > 0) this.#sql.exec(`DELETE FROM body_chunk`);
  }

  /** The stored response of a complete record, as stored (sealed or not). */
  response(row: RecordRow): StoredParts {
    const status = row.status ?? 0;
    const headers = row.headers ?? '[]';
    const stored = { status, headers: typeof headers === 'string' ? headers : new Uint8Array(headers), keyId: row.key_id };
    if (row.chunks === 0) {
      const { body } = this.#sql.exec<{ body: ArrayBuffer | null }>(`SELECT body FROM record WHERE id = 1`).one();
      return { ...stored, parts: [new Uint8Array(body ?? new ArrayBuffer(0))] };
    }
    const parts = this.#sql.exec<{ data: ArrayBuffer }>(`SELECT data FROM body_chunk ORDER BY seq`).toArray();
    return { ...stored, parts: parts.map(({ data }) => new Uint8Array(data)) };
  }

  /** Deletes everything, the schema and (compatibility date >= 2026-02-24) the alarm included. */
  async clear(): Promise<void> {
    // Forgotten first: whatever deleteAll() leaves behind if it fails, the next access looks the table up again.
    this.#table = undefined;
    await this.#storage.deleteAll();
  }
}
