/**
 * Issue #29, finding 10: every sealed part authenticates the record, not only itself. A part opens only in its own
 * record (the name), at its own place, in a record with as many parts and the same status: a removed part, a swapped
 * status or a record copied into another object answers 503 (`record_unreadable`), never a replay. Every body part is
 * sealed, not only the first. Plaintext rows are read with a keyring set only when it allows them (`plaintext`).
 * Against the real object, its real storage
 * changed in place as someone with access to it could.
 */
import { runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SealConfigError, readKeyring } from '../../src/record/seal';
import { chunkRows, newKey, newSecret, originCalls, recordStub, runWithKeyring } from './helpers';

/** The bytes the test origin's `/bytes/<n>` answers: byte i is (i * 31 + 7) mod 256. */
const patternBytes = (length: number): Uint8Array => Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff);

const secret = newSecret;
const run = runWithKeyring;
const BIG = 2.5 * 1024 * 1024;

type Stored = Record<string, unknown> & { status: number; chunks: number; body: ArrayBuffer | null };

/** Changes the stored record (KV value) and its chunk rows of `key` in place. */
async function tamper(key: string, change: (record: Stored, sql: SqlStorage) => Stored): Promise<void> {
  await runInDurableObject(await recordStub(key), (_, state) => {
    state.storage.kv.put('record', change(state.storage.kv.get<Stored>('record')!, state.storage.sql));
  });
}

/** The stored record and its chunk rows. */
async function storedOf(key: string): Promise<{ record: Stored; chunks: ArrayBuffer[] }> {
  return runInDurableObject(await recordStub(key), (_, state) => ({
    record: state.storage.kv.get<Stored>('record')!,
    chunks: chunkRows(state),
  }));
}

/** Writes `stored` as the storage of `key`'s object. */
async function plant(key: string, { record, chunks }: { record: Stored; chunks: ArrayBuffer[] }): Promise<void> {
  await runInDurableObject(await recordStub(key), (_, state) => {
    const sql = state.storage.sql;
    state.storage.kv.put('record', record);
    if (chunks.length === 0) return;
    sql.exec(`CREATE TABLE IF NOT EXISTS body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)`);
    chunks.forEach((data, seq) => sql.exec(`INSERT INTO body_chunk (seq, data) VALUES (?, ?)`, seq, data));
  });
}

/** Whether `haystack` holds the 64 bytes of `needle` starting at `from` (a run of the plaintext). */
function holds(haystack: ArrayBuffer, needle: Uint8Array, from: number): boolean {
  return Buffer.from(haystack).includes(Buffer.from(needle.subarray(from, from + 64)));
}

afterEach(() => vi.restoreAllMocks());
const quietErrors = () => vi.spyOn(console, 'error').mockImplementation(() => {});

describe('a sealed record of several parts', () => {
  it('seals every body part: each chunk is its plaintext part plus IV and tag, with no run of its bytes in the clear', async () => {
    const key = newKey();
    await run(key, `k1:${secret()}`, `/bytes/${BIG}/every-part`);
    const { record, chunks } = await storedOf(key);
    expect(record).toMatchObject({ key_id: 'k1', format: 6, chunks: 3 });
    const plain = patternBytes(BIG);
    expect(chunks.map((chunk) => chunk.byteLength)).toEqual([1024 * 1024 + 28, 1024 * 1024 + 28, 0.5 * 1024 * 1024 + 28]);
    chunks.forEach((chunk, index) => {
      for (const at of [0, 4096, 512 * 1024 - 64]) expect(holds(chunk, plain, index * 1024 * 1024 + at)).toBe(false);
    });
  });

  it('does not open with its last part removed (the count changed or not), or with another status swapped in', async () => {
    quietErrors();
    const keys = `k1:${secret()}`;
    const changes: ((record: Stored, sql: SqlStorage) => Stored)[] = [
      (record, sql) => (sql.exec(`DELETE FROM body_chunk WHERE seq = 2`), { ...record, chunks: 2 }),
      (record, sql) => (sql.exec(`DELETE FROM body_chunk WHERE seq = 2`), record),
      (record) => ({ ...record, status: 201 }),
    ];
    for (const change of changes) {
      const key = newKey();
      const path = `/bytes/${BIG}/tampered-record`;
      expect(await run(key, keys, path)).toMatchObject({ kind: 'response', response: { status: 200 } });
      await tamper(key, change);
      expect(await run(key, keys, path)).toEqual({ kind: 'record_unreadable' });
      expect(await originCalls(key)).toBe(1);
    }
  });

  it('does not open in another record: copied whole into another key’s object, it is unreadable there', async () => {
    quietErrors();
    const keys = `k1:${secret()}`;
    for (const size of [64, BIG]) {
      const [source, copy] = [newKey(), newKey()];
      const path = `/bytes/${size}/copied-record`;
      await run(source, keys, path);
      await plant(copy, await storedOf(source));
      expect(await run(copy, keys, path)).toEqual({ kind: 'record_unreadable' });
      expect(await originCalls(copy)).toBe(0);
    }
  });
});

describe('plaintext rows with a keyring set', () => {
  it('are unreadable (503) unless the keyring allows them with a plaintext entry', async () => {
    quietErrors();
    const key = newKey();
    const path = '/echo/plaintext-planted';
    const first = await run(key, undefined, path);
    expect(first).toMatchObject({ kind: 'response', replayed: false });
    const log = vi.spyOn(console, 'error');
    expect(await run(key, `k1:${secret()}`, path)).toEqual({ kind: 'record_unreadable' });
    expect(log).toHaveBeenCalledWith(JSON.stringify({ event: 'record_unreadable', key_id: 'plaintext' }));
    expect(await run(key, `k1:${secret()}, plaintext`, path)).toMatchObject({ kind: 'response', replayed: true });
    expect(await originCalls(key)).toBe(1);
  });

  it('`plaintext` never seals: it may not come first, nor twice', () => {
    expect(() => readKeyring(`plaintext,k1:${secret()}`)).toThrow(SealConfigError);
    expect(() => readKeyring(`k1:${secret()},plaintext,plaintext`)).toThrow(SealConfigError);
    expect(readKeyring(`k1:${secret()},plaintext`)).toMatchObject({ sealingId: 'k1', plaintext: true, ids: ['k1'] });
    expect(readKeyring(`k1:${secret()}`).plaintext).toBe(false);
  });
});
