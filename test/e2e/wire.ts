/**
 * @module
 * What the end-to-end tests look at below `fetch`: requests written byte for byte over raw TCP (so nothing in
 * a client library cleans them up first), and the Durable Objects' SQLite files in a state directory.
 */
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { DatabaseSync } from 'node:sqlite';
import { deserialize } from 'node:v8';
import { filesUnder } from './harness';

export interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/**
 * Writes `head` (CRLF line endings added) and `body` as they are to 127.0.0.1:`port`, optionally half-closes the
 * socket, and reads until the server closes or `timeoutMs` passes.
 *
 * @returns the response, or `null` when none arrived
 */
export function raw(
  port: number,
  head: string[],
  body: Buffer | string = '',
  { halfClose = false, timeoutMs = 5000 } = {},
): Promise<RawResponse | null> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => {
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!match) return resolve(null);
      const split = text.indexOf('\r\n\r\n');
      resolve({ status: Number(match[1]), head: text.slice(0, split), body: text.slice(split + 4) });
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('close', () => {
      clearTimeout(timer);
      done();
    });
    socket.on('error', () => undefined);
    socket.write(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), Buffer.from(body)]));
    if (halfClose) socket.end();
  });
}

/** The problem `code` of a raw response, or `undefined` when it is not a problem document. */
export function rawProblemCode(res: RawResponse | null): string | undefined {
  if (res === null || !/content-type: application\/problem\+json/i.test(res.head)) return undefined;
  const json = res.body.slice(res.body.indexOf('{'), res.body.lastIndexOf('}') + 1);
  return (JSON.parse(json) as { code: string }).code;
}

/** The SQLite files of the `IdempotencyRecord` objects below a state directory. */
export const objectFiles = (stateDir: string): string[] =>
  filesUnder(stateDir).filter((f) => /IdempotencyRecord\/[0-9a-f]{64}\.sqlite$/.test(f));

/**
 * Reads a Durable Object's SQLite file while the runtime may be writing it: read-only, waiting up to 5 s for
 * the runtime's write lock instead of failing with "database is locked". A read that meets the runtime
 * rewriting the file (its `deleteAll()` at expiry) fails in several ways ("disk I/O error", "unable to open
 * database file", "attempt to write a readonly database" when it finds the rewrite's journal), all SQLite
 * errors: any of them is tried again, a bounded number of times, since what the test waits for is exactly that
 * rewrite having finished. A file that is gone reads as an empty database: it holds no table and no alarm.
 */
function readObjectFile<T>(file: string, read: (db: DatabaseSync) => T): T {
  for (let attempt = 1; ; attempt++) {
    try {
      const db = existsSync(file) ? new DatabaseSync(file, { readOnly: true, timeout: 5000 }) : new DatabaseSync(':memory:');
      try {
        return read(db);
      } finally {
        db.close();
      }
    } catch (error) {
      if (attempt >= 40 || (error as { code?: unknown }).code !== 'ERR_SQLITE_ERROR') throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

/** The tables a Durable Object's SQLite file holds, without the runtime's own (`_cf_*`, `__miniflare*`). */
export const userTables = (file: string): string[] =>
  readObjectFile(file, (db) =>
    db
      .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%' AND name NOT LIKE '__miniflare%'`)
      .all()
      .map((row) => String(row['name'])),
  );

/** The alarm stored in a Durable Object's SQLite file (the runtime's `_cf_METADATA` row 1, in ns), in ms; `null` for none. */
export const storedAlarm = (file: string): number | null =>
  readObjectFile(file, (db) => {
    if (db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_cf_METADATA'`).get() === undefined) return null;
    const row = db.prepare(`SELECT value FROM _cf_METADATA WHERE key = 1`);
    row.setReadBigInts(true);
    const alarm = row.get() as { value: bigint } | undefined;
    return alarm === undefined ? null : Number(alarm.value / 1_000_000n);
  });

/** The keys of the synchronous KV API a Durable Object's SQLite file holds (the runtime's `_cf_KV` table); none when it has no such table. */
export const kvKeys = (file: string): string[] =>
  readObjectFile(file, (db) => {
    if (db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_cf_KV'`).get() === undefined) return [];
    return db
      .prepare(`SELECT key FROM _cf_KV ORDER BY key`)
      .all()
      .map((row) => String(row['key']));
  });

/**
 * The `expires_at` of the record (format 5: the KV value `record`, which the runtime stores V8-serialized, as Node's
 * `v8.deserialize` reads it).
 */
export const storedExpiry = (file: string): number =>
  readObjectFile(file, (db) => {
    const row = db.prepare(`SELECT value FROM _cf_KV WHERE key = 'record'`).get() as { value: Uint8Array };
    return Number((deserialize(row.value) as { expires_at: number }).expires_at);
  });
