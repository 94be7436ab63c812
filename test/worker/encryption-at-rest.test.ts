/**
 * Encryption at rest wired into the object's storage (issue #20): with `IDEMPOTENCY_ENCRYPTION_KEYS` set, the
 * stored headers and body are AES-256-GCM sealed, carry the key id, replay byte-exact, survive a rotation, and a
 * row that no configured key opens answers 503 `idempotency_unavailable` without running the request again.
 *
 * The keyring is set per test on the object's own env (inside the real object, via runInDurableObject), not in
 * vitest.config.ts: a keyring bound for the whole worker project would change what every other test stores and
 * reads (they read plaintext rows directly). The object reads its keyring from `this.env` on every store and
 * replay (parsed once per value), as it does in production; an eviction or reset brings the bound env back, so
 * each test sets the keyring again before every call.
 */
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { Answers, outcomeProblem } from '../../src/middleware/answer';
import { RECORD_FORMAT } from '../../src/record/storage';
import {
  type ReadOutcome,
  chunkRows,
  expectProblem,
  newKey,
  newSecret,
  originCalls,
  recordStub,
  resetObject,
  runWithKeyring,
  sendWith,
} from './helpers';

const secret = newSecret;
const run = runWithKeyring;

type Raw = {
  key_id: string | null;
  format: number;
  state: string;
  headers: string | ArrayBuffer | null;
  body: ArrayBuffer | null;
};

/** The stored row as SQLite holds it, with its body chunks. */
async function raw(key: string): Promise<{ row: Raw; chunks: ArrayBuffer[] }> {
  return runInDurableObject(await recordStub(key), (_, state) => ({
    row: state.storage.kv.get<Raw>('record')!,
    chunks: chunkRows(state),
  }));
}

const text = (value: string | ArrayBuffer | null): string =>
  value === null ? '' : typeof value === 'string' ? value : new TextDecoder('latin1').decode(value);

const responseOf = (outcome: ReadOutcome) => {
  if (outcome.kind !== 'response') throw new Error(`expected a response, got ${outcome.kind}`);
  return outcome;
};

describe('encryption at rest: sealed rows', () => {
  it('stores no header value or body byte in plaintext, carries the key id, and replays byte-exact', async () => {
    const key = newKey();
    const keys = `k1:${secret()}`;
    const first = responseOf(await run(key, keys, '/cookies/plaintext-marker-7f3a'));
    expect(new TextDecoder().decode(first.response.body)).toContain('"call"');
    expect(first.response.headers).toContainEqual(['set-cookie', 'a=1; Path=/; HttpOnly']);
    const { row } = await raw(key);
    expect(row).toMatchObject({ key_id: 'k1', format: RECORD_FORMAT, state: 'complete' });
    const stored = text(row.headers) + text(row.body);
    expect(stored).not.toContain('"call"');
    expect(stored).not.toContain('set-cookie');
    expect(stored).not.toContain('HttpOnly');
    expect(stored).not.toContain('Oct 2037');

    await resetObject(key);
    const replay = responseOf(await run(key, keys, '/cookies/plaintext-marker-7f3a'));
    expect(replay.replayed).toBe(true);
    expect(new Uint8Array(replay.response.body)).toEqual(new Uint8Array(first.response.body));
    expect(replay.response.headers).toEqual(first.response.headers);
    expect(await originCalls(key)).toBe(1);
  });

  it('seals each chunk of a body over 1 MiB and replays it byte-exact', async () => {
    const key = newKey();
    const keys = `k1:${secret()}`;
    const first = responseOf(await run(key, keys, `/bytes/${1.5 * 1024 * 1024}/sealed-chunks`));
    const { row, chunks } = await raw(key);
    expect(row.key_id).toBe('k1');
    expect(chunks).toHaveLength(2);
    expect(chunks[0]!.byteLength).toBe(1024 * 1024 + 28);
    const replay = responseOf(await run(key, keys, `/bytes/${1.5 * 1024 * 1024}/sealed-chunks`));
    expect(new Uint8Array(replay.response.body)).toEqual(new Uint8Array(first.response.body));
    expect(await originCalls(key)).toBe(1);
  });

  it('rotates: with the new key first, rows of the old key replay and new rows use the new id', async () => {
    const [oldKey, newer] = [newKey(), newKey()];
    const [k1, k2] = [secret(), secret()];
    const before = responseOf(await run(oldKey, `k1:${k1}`, '/echo/rotate-old'));
    const rotated = `k2:${k2},k1:${k1}`;
    const replay = responseOf(await run(oldKey, rotated, '/echo/rotate-old'));
    expect(replay.replayed).toBe(true);
    expect(new Uint8Array(replay.response.body)).toEqual(new Uint8Array(before.response.body));
    responseOf(await run(newer, rotated, '/echo/rotate-new'));
    expect((await raw(newer)).row.key_id).toBe('k2');
    expect((await raw(oldKey)).row.key_id).toBe('k1');
  });
});

describe('encryption at rest: a row no configured key opens', () => {
  it('answers 503 idempotency_unavailable (logged), never calls the origin again, and keeps the row', async () => {
    const key = newKey();
    responseOf(await run(key, `k1:${secret()}`, '/echo/dropped-key'));
    const log = vi.spyOn(console, 'error');
    const outcome = await run(key, `k2:${secret()}`, '/echo/dropped-key');
    expect(outcome).toEqual({ kind: 'record_unreadable' });
    expect(log).toHaveBeenCalledWith(JSON.stringify({ event: 'record_unreadable', key_id: 'k1' }));
    log.mockRestore();
    const res = new Answers().problem(outcomeProblem(outcome)!, undefined);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { code: string }).code).toBe('idempotency_unavailable');
    // Without any keyring, too: a sealed row is never read as plaintext.
    expect(await run(key, undefined, '/echo/dropped-key')).toEqual({ kind: 'record_unreadable' });
    expect(await originCalls(key)).toBe(1);
    expect((await raw(key)).row).toMatchObject({ state: 'complete', key_id: 'k1' });
  });

  it('answers the same 503 when one stored byte was changed', async () => {
    const key = newKey();
    const keys = `k1:${secret()}`;
    responseOf(await run(key, keys, '/echo/tampered'));
    await runInDurableObject(await recordStub(key), (_, state) => {
      const record = state.storage.kv.get<{ body: ArrayBuffer }>('record')!;
      const bytes = new Uint8Array(record.body.slice(0));
      bytes[20] = bytes[20]! ^ 1;
      state.storage.kv.put('record', { ...record, body: bytes.buffer });
    });
    expect(await run(key, keys, '/echo/tampered')).toEqual({ kind: 'record_unreadable' });
    expect(await originCalls(key)).toBe(1);
  });
});

describe('encryption at rest: plaintext rows', () => {
  it('replays a row written without a keyring after one is configured that allows plaintext rows', async () => {
    const key = newKey();
    const first = responseOf(await run(key, undefined, '/echo/plaintext-then-keys'));
    expect((await raw(key)).row.key_id).toBeNull();
    // Issue #29: only while the keyring says `plaintext` (a migration); sealed-record.test.ts shows the 503 without it.
    const replay = responseOf(await run(key, `k1:${secret()},plaintext`, '/echo/plaintext-then-keys'));
    expect(replay.replayed).toBe(true);
    expect(new Uint8Array(replay.response.body)).toEqual(new Uint8Array(first.response.body));
    expect(await originCalls(key)).toBe(1);
  });
});

describe('encryption at rest: configuration', () => {
  it('refuses a malformed keyring with 500 configuration_invalid naming the variable, before any origin call, never showing the key', async () => {
    const short = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    // A 128-bit key, an entry without an id, a repeated id.
    for (const value of [`k1:${short}`, secret(), `k1:${secret()},k1:${secret()}`]) {
      const key = newKey();
      const res = await sendWith({ IDEMPOTENCY_ENCRYPTION_KEYS: value }, '/echo/bad-keyring', { key, body: 'x' });
      const body = await expectProblem(res, 500, 'configuration_invalid');
      expect(body.detail).toContain('IDEMPOTENCY_ENCRYPTION_KEYS');
      for (const part of value.split(/[,:]/)) expect(JSON.stringify(body)).not.toContain(part);
      expect(await originCalls(key)).toBe(0);
    }
  });

  it('accepts a valid keyring (and an empty value, which turns encryption off)', async () => {
    for (const keys of [`k2:${secret()},k1:${secret()}`, '']) {
      expect((await sendWith({ IDEMPOTENCY_ENCRYPTION_KEYS: keys }, '/echo/good-keyring', { key: newKey(), body: 'x' })).status).toBe(200);
    }
  });
});
