/**
 * A sealed record of format 4 (encryption at rest in the SQL table of 0.2: its `key_id` names the key that sealed
 * the headers and body) replays after the upgrade to format 5: `key_id` is read from the table, so the sealed bytes
 * are opened with their key, never taken for plaintext. The row is what format 4 code wrote: an answer the real
 * object sealed, moved into the table by raw SQL.
 */
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../../src/record/api';
import { attemptSpec, newKey, originCalls, readOutcome, recordStub, resetObject } from './helpers';

/** One random 256-bit key, id `k1`. */
const KEYRING = `k1:${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))}`;

/** Runs `path` under `key` through the real object, its env given the keyring first (a reset takes it away). */
async function sealedRun(key: string, path: string) {
  const stub = await recordStub(key);
  await runInDurableObject(stub, (instance) => {
    const object = instance as unknown as { env: Record<string, unknown> };
    object.env = { ...object.env, IDEMPOTENCY_ENCRYPTION_KEYS: KEYRING };
  });
  const outcome = await readOutcome((await stub.execute(attemptSpec(key, path))) as Outcome);
  if (outcome.kind !== 'response') throw new Error(`expected a response, got ${outcome.kind}`);
  return outcome;
}

/** Moves the object's format 5 record into a format 4 `record` table, as format 4 code stored it. */
async function asFormat4(key: string): Promise<void> {
  await runInDurableObject(await recordStub(key), (_, state) => {
    const r = state.storage.kv.get<Record<string, SqlStorageValue>>('record')!;
    state.storage.sql.exec(`CREATE TABLE record (
      id INTEGER PRIMARY KEY CHECK (id = 1), format INTEGER NOT NULL, fingerprint TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('in_flight', 'complete', 'too_large', 'lost', 'unknown')), attempt TEXT NOT NULL,
      lease_until INTEGER NOT NULL, expires_at INTEGER NOT NULL, status INTEGER, headers BLOB, body BLOB,
      chunks INTEGER NOT NULL DEFAULT 0, created_at INTEGER, method TEXT, path TEXT, key_id TEXT)`);
    const columns = ['fingerprint', 'state', 'attempt', 'lease_until', 'expires_at', 'status', 'headers', 'body', 'chunks'] as const;
    state.storage.sql.exec(
      `INSERT INTO record (id, format, ${columns.join(', ')}, created_at, method, path, key_id) VALUES (1, 4, ${columns.map(() => '?').join(', ')}, ?, ?, ?, ?)`,
      ...columns.map((column) => r[column] ?? null),
      r['created_at'] ?? null,
      r['method'] ?? null,
      r['path'] ?? null,
      r['key_id'] ?? null,
    );
    state.storage.kv.delete('record');
  });
}

describe('a sealed record of format 4', () => {
  it('replays byte-exact after the upgrade: its key id is read, its sealed bytes opened', async () => {
    const key = newKey();
    const path = '/cookies/sealed-format-4';
    const first = await sealedRun(key, path);
    const stored = await runInDurableObject(await recordStub(key), (_, state) => state.storage.kv.get<{ key_id: string }>('record'));
    expect(stored?.key_id).toBe('k1');
    await asFormat4(key);
    // A new instance, which looks the table up again.
    await resetObject(key);
    const replay = await sealedRun(key, path);
    expect(replay.replayed).toBe(true);
    expect(replay.response.status).toBe(first.response.status);
    expect(replay.response.headers).toEqual(first.response.headers);
    expect(new TextDecoder().decode(replay.response.body)).toBe(new TextDecoder().decode(first.response.body));
    expect(await originCalls(key)).toBe(1);
  });
});
