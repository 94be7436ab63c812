/**
 * A body over 1 MiB is stored as the record row plus one `body_chunk` row per MiB, in one transaction: a real
 * SQLite failure midway (a trigger that refuses the second chunk row) leaves no half record behind.
 */
import { runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { expectProblem, newKey, originCalls, recordStub, send, storedRecord } from './helpers';

afterEach(() => vi.restoreAllMocks());

describe('a chunked body is stored atomically', () => {
  it('leaves no half record when SQLite refuses the second chunk row: the key is held as lost, never replayed short', async () => {
    const errors: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: unknown) => void errors.push(String(line)));
    const key = newKey();
    const stub = await recordStub(key);
    // Before the first request: the chunk table as the object creates it, and a trigger that refuses its 2nd row.
    await runInDurableObject(stub, (_, state) => {
      state.storage.sql.exec(`CREATE TABLE IF NOT EXISTS body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)`);
      state.storage.sql.exec(
        `CREATE TRIGGER refuse_second_chunk BEFORE INSERT ON body_chunk WHEN NEW.seq = 1 BEGIN SELECT RAISE(ABORT, 'disk full'); END`,
      );
    });
    const path = `/bytes/${3 * 1024 * 1024}/atomic`;
    const first = await send(path, { key, body: 'x' });
    // The client still gets the origin's answer, whole.
    expect(first.status).toBe(200);
    expect((await first.arrayBuffer()).byteLength).toBe(3 * 1024 * 1024);
    expect(errors.some((line) => line.includes('"event":"store_failed"'))).toBe(true);
    // Nothing of the answer was kept, no chunk row: only its status, as lost (issue #29: the write ran).
    expect(await storedRecord(key)).toMatchObject({ state: 'lost', status: 200, chunks: 0 });
    const chunkRows = await runInDurableObject(
      stub,
      (_, state) => state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM body_chunk`).one().n,
    );
    expect(chunkRows).toBe(0);
    // The retry is held (the write ran), never answered with a truncated replay.
    await expectProblem(await send(path, { key, body: 'x' }), 502, 'origin_response_lost');
    expect(await originCalls(key)).toBe(1);
  });
});
