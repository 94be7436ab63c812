/**
 * `IdempotencyRecord` directly: restarts, resets mid-flight, leases, expiry and the alarm, against real Durable
 * Object storage in workerd. Waits poll for the state they need (the stored row, the origin's count), and time
 * bounds are read from what the object stored, never guessed.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '../../src/shared/bytes';
import type { Settled } from '../../src/record/api';
import {
  attemptSpec as spec,
  newHold,
  newKey,
  originCalls,
  originUrl,
  readOutcome,
  recordStub,
  release,
  resetObject,
  send,
  storedRecord,
  until,
} from './helpers';

afterEach(() => vi.restoreAllMocks());

/** User tables, KV keys (as `kv:<key>`) and the alarm: what the object still holds. */
async function storageOf(key: string) {
  return runInDurableObject(await recordStub(key), async (_, state) => ({
    tables: [
      ...state.storage.sql
        .exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'`)
        .toArray()
        .map((t) => t.name),
      ...[...state.storage.kv.list()].map(([name]) => `kv:${name}`),
    ],
    alarm: await state.storage.getAlarm(),
  }));
}

/** The object's chunk rows (`body_chunk`, 0 when it has none) and its alarm. */
async function chunksOf(key: string) {
  return runInDurableObject(await recordStub(key), async (_, state) => ({
    chunks:
      state.storage.sql.exec(`SELECT name FROM sqlite_master WHERE name = 'body_chunk'`).toArray().length === 0
        ? 0
        : state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM body_chunk`).one().n,
    alarm: await state.storage.getAlarm(),
  }));
}

/**
 * Holds the key's alarm back for an hour and moves its stored expiry into the past, in real storage, as a late or
 * backlogged alarm would leave it; returns when the alarm is now set for.
 */
async function heldBackAndExpired(key: string): Promise<number> {
  const later = Date.now() + 3_600_000;
  await runInDurableObject(await recordStub(key), async (_, state) => {
    await state.storage.setAlarm(later);
    const record = state.storage.kv.get<Record<string, unknown>>('record')!;
    state.storage.kv.put('record', { ...record, expires_at: Date.now() - 1000 });
  });
  return later;
}

/** Waits until the origin has received the request of `key` (so an attempt really is mid-flight). */
const reachedOrigin = (key: string) => until(async () => (await originCalls(key)) > 0);

const response = (status: number, text: string): Settled => ({
  kind: 'response',
  response: { status, headers: [['content-type', 'text/plain']], body: new TextEncoder().encode(text).buffer as ArrayBuffer },
});

describe('IdempotencyRecord: state survives a restart', () => {
  it('replays from storage after the object is evicted', async () => {
    const key = newKey();
    const first = await send('/echo/evict', { key, body: 'x' });
    expect(first.status).toBe(200);
    // Read to its end: the answer's end is sent only once it is stored.
    await first.text();
    await evictDurableObject(await recordStub(key));
    const replay = await send('/echo/evict', { key, body: 'x' });
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('IdempotencyRecord: an attempt that dies mid-flight', () => {
  it('holds the key until the stored lease ends, then runs again with the same Idempotency-Key', async () => {
    const key = newKey();
    const hold = newHold();
    const path = `/hold/${hold}/reset`;
    const limits = { leaseMs: 2500, timeoutMs: 2500 };
    // Settled right away so the rejection caused by the reset is handled when it happens.
    const first = Promise.allSettled([(await recordStub(key)).execute(spec(key, path, limits))]);
    await reachedOrigin(key);
    // A reset while the origin holds the call: in-memory state is gone, the in-flight row stays.
    await resetObject(key);
    expect((await first)[0].status).toBe('rejected');
    // From now on the origin answers at once: only the stored lease holds the key.
    await release(hold);
    const { lease_until: leaseUntil, state } = (await storedRecord(key))!;
    expect(state).toBe('in_flight');

    const asked = Date.now();
    const during = await (await recordStub(key)).execute(spec(key, path, limits));
    const answered = Date.now();
    expect(during.kind).toBe('in_progress');
    if (during.kind === 'in_progress') {
      // The rest of the stored lease, as the object saw it at some moment between the two clock readings.
      expect(during.retryAfterMs).toBeGreaterThanOrEqual(leaseUntil - answered);
      expect(during.retryAfterMs).toBeLessThanOrEqual(leaseUntil - asked);
    }
    // A different request with the same key is still a conflict, not a take-over.
    expect((await (await recordStub(key)).execute(spec(key, `/hold/${hold}/other`))).kind).toBe('conflict');

    await until(() => Date.now() > leaseUntil);
    const after = await (await recordStub(key)).execute(spec(key, path, limits));
    expect(after).toMatchObject({ kind: 'response', replayed: false });
    expect(await originCalls(key)).toBe(2);
    const last = (await (await fetch(`${originUrl}/__last?key=${key}`)).json()) as { headers: Record<string, string> };
    expect(last.headers['idempotency-key']).toBe(key);
  });

  it('holds the key until the lease ends even when the TTL is shorter: expiry and the alarm wait for the lease', async () => {
    const key = newKey();
    const hold = newHold();
    const path = `/hold/${hold}/short-ttl`;
    const limits = { ttlMs: 300, leaseMs: 2500, timeoutMs: 2500 };
    const first = Promise.allSettled([(await recordStub(key)).execute(spec(key, path, limits))]);
    await reachedOrigin(key);
    await resetObject(key);
    await first;
    await release(hold);
    const { lease_until: leaseUntil, expires_at: expiresAt } = (await storedRecord(key))!;
    expect(expiresAt).toBeLessThan(leaseUntil);
    await until(() => Date.now() > expiresAt);
    // Past the TTL, inside the lease: still held, and the alarm keeps the row (re-arming at the lease's end).
    expect((await (await recordStub(key)).execute(spec(key, path, limits))).kind).toBe('in_progress');
    await runDurableObjectAlarm(await recordStub(key));
    expect((await storedRecord(key))?.state).toBe('in_flight');
    expect((await storageOf(key)).alarm).toBeGreaterThanOrEqual(leaseUntil);
    await until(() => Date.now() > leaseUntil);
    expect(await (await recordStub(key)).execute(spec(key, path, limits))).toMatchObject({
      kind: 'response',
      replayed: false,
    });
    expect(await originCalls(key)).toBe(2);
  });

  it('holds the key for the lease, not the shorter wait: a retry after the wait but within the lease is refused, no second call', async () => {
    const key = newKey();
    const hold = newHold();
    const path = `/hold/${hold}/lease-not-wait`;
    // Clearly unequal: the caller waits 0.5 s for the answer to begin; the attempt may run for 10 s.
    const limits = { timeoutMs: 500, leaseMs: 10_000 };
    const first = Promise.allSettled([(await recordStub(key)).execute(spec(key, path, limits))]);
    await reachedOrigin(key);
    await resetObject(key);
    await first;
    const info = (await (await recordStub(key)).inspect())!;
    expect(info.state).toBe('in_flight');
    expect(info.lease_until! - info.created_at!).toBeGreaterThanOrEqual(limits.leaseMs);
    // Past the wait, within the lease: the attempt may still be running at the origin.
    await until(() => Date.now() > info.created_at! + limits.timeoutMs);
    expect((await (await recordStub(key)).execute(spec(key, path, limits))).kind).toBe('in_progress');
    expect(await originCalls(key)).toBe(1);
    await release(hold);
  });

  it('answers the client of a reset attempt with 503, and its retry with 409 in_progress until the lease ends', async () => {
    const key = newKey();
    const hold = newHold();
    const first = send(`/hold/${hold}/worker-reset`, { key, body: 'x' });
    await reachedOrigin(key);
    await resetObject(key);
    // The reset surfaces as a non-retryable error on the Worker's stub: it fails closed.
    const res = await first;
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    const retry = await send(`/hold/${hold}/worker-reset`, { key, body: 'x' });
    expect(retry.status).toBe(409);
    expect(((await retry.json()) as { code: string }).code).toBe('idempotency_key_in_progress');
    expect(await originCalls(key)).toBe(1);
    await release(hold);
  });

  it('records a complete() that arrives after a reset, while the row still names its attempt', async () => {
    const key = newKey();
    const limits = { fingerprint: 'fp:after-reset', timeoutMs: 1000, leaseMs: 3000, ttlMs: 60_000 };
    const begun = await (await recordStub(key)).begin(limits);
    if (begun.kind !== 'acquired') throw new Error(`expected to acquire the key, got ${begun.kind}`);
    await resetObject(key);
    await (await recordStub(key)).complete(begun.attempt, response(201, 'reported after the reset'));
    expect(await (await recordStub(key)).begin(limits)).toMatchObject({ kind: 'response', replayed: true, response: { status: 201 } });
  });

  it('never lets a late complete() of an abandoned attempt overwrite the attempt that took over', async () => {
    const key = newKey();
    const limits = { fingerprint: 'fp:take-over', timeoutMs: 500, leaseMs: 500, ttlMs: 60_000 };
    const abandoned = await (await recordStub(key)).begin(limits);
    if (abandoned.kind !== 'acquired') throw new Error('expected to acquire the key');
    await resetObject(key);
    const { lease_until: leaseUntil } = (await storedRecord(key))!;
    await until(() => Date.now() > leaseUntil);
    const takeOver = await (await recordStub(key)).begin(limits);
    if (takeOver.kind !== 'acquired') throw new Error(`expected the take-over to acquire the key, got ${takeOver.kind}`);
    await (await recordStub(key)).complete(abandoned.attempt, response(201, 'late'));
    expect((await storedRecord(key))?.state).toBe('in_flight');
    await (await recordStub(key)).complete(takeOver.attempt, response(202, 'take-over'));
    await (await recordStub(key)).complete(abandoned.attempt, response(201, 'later still'));
    expect(await (await recordStub(key)).begin(limits)).toMatchObject({ kind: 'response', response: { status: 202 } });
  });

  it('holds the key as lost when storage refuses the answer (store_failed): the write ran, so it never runs again', async () => {
    const errors: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: unknown) => void errors.push(String(line)));
    const key = newKey();
    const stub = await recordStub(key);
    // A real storage failure: SQLite itself refuses the answer's chunk rows (a 2 MiB body is stored in chunks).
    await runInDurableObject(stub, (_, state) => {
      state.storage.sql.exec(`CREATE TABLE body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)`);
      state.storage.sql.exec(`CREATE TRIGGER refuse_store BEFORE INSERT ON body_chunk BEGIN SELECT RAISE(ABORT, 'storage refused'); END`);
    });
    const path = `/bytes/${2 * 1024 * 1024}/refused`;
    const limits = { timeoutMs: 3000, leaseMs: 3000, maxBodyBytes: 4 * 1024 * 1024 };
    // The client still gets the origin's answer.
    const first = await readOutcome(await stub.execute(spec(key, path, limits)));
    expect(first).toMatchObject({ kind: 'response', replayed: false, response: { status: 200 } });
    expect(errors.some((line) => line.includes('"event":"store_failed"'))).toBe(true);
    // Issue #29: the status only, which storage takes where it refused the whole answer.
    expect(await storedRecord(key)).toMatchObject({ state: 'lost', status: 200 });
    expect(await stub.execute(spec(key, path, limits))).toEqual({ kind: 'response_lost', status: 200 });
    expect(await originCalls(key)).toBe(1);
  });
});

describe('IdempotencyRecord: expiry', () => {
  const short = { ttlMs: 300, leaseMs: 200, timeoutMs: 200 };

  it('lets the key run again once the TTL has passed, even before the alarm ran', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    expect(await stub.execute(spec(key, '/echo/ttl', short))).toMatchObject({ replayed: false });
    expect(await stub.execute(spec(key, '/echo/ttl', short))).toMatchObject({ replayed: true });
    const { expires_at: expiresAt } = (await storedRecord(key))!;
    await until(() => Date.now() > expiresAt);
    expect(await stub.execute(spec(key, '/echo/ttl', short))).toMatchObject({ replayed: false });
    expect(await originCalls(key)).toBe(2);
  });

  it('keeps a live record when the alarm runs early; at expiry the alarm deletes everything, alarm included', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    await readOutcome(await stub.execute(spec(key, '/echo/alarm', { ...short, ttlMs: 500 })));
    expect((await storedRecord(key))?.state).toBe('complete');
    expect((await storageOf(key)).alarm).not.toBeNull();

    // An early (or repeated) alarm must not delete a record that is still valid: it re-arms instead.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await storedRecord(key))?.state).toBe('complete');
    expect((await storageOf(key)).alarm).not.toBeNull();

    // The re-armed alarm fires by itself at expiry and removes everything.
    // The alarm the freed key set runs, and deletes everything, itself included.
    await until(async () => {
      const { tables, alarm } = await storageOf(key);
      return tables.length === 0 && alarm === null;
    }, 'the alarm to clean up the freed key');
    expect(await storageOf(key)).toEqual({ tables: [], alarm: null });
    // Running the handler again on the empty object is harmless and leaves nothing behind.
    await runInDurableObject(stub, (instance) => instance.alarm());
    expect(await storageOf(key)).toEqual({ tables: [], alarm: null });
  });

  it('re-arms instead of deleting when the alarm runs while an attempt is still running here', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const hold = newHold();
    const first = stub.execute(spec(key, `/hold/${hold}/alarm-in-flight`, { ttlMs: 100, leaseMs: 6000, timeoutMs: 6000 }));
    await reachedOrigin(key);
    const { expires_at: expiresAt } = (await storedRecord(key))!;
    // The real alarm fires at the expiry, mid-flight, and sets itself again for later instead of deleting. (Waiting
    // for that, rather than running the alarm by hand, does not race the runtime's own run on a slow machine.)
    await until(async () => ((await storageOf(key)).alarm ?? 0) > expiresAt, 'the alarm to run at expiry and set itself again');
    expect((await storedRecord(key))?.state).toBe('in_flight');
    await release(hold);
    expect(await first).toMatchObject({ kind: 'response', replayed: false });
    expect(await originCalls(key)).toBe(1);
  });

  it('expires a body stored in chunks before its alarm ran, then stores a new large body under the same key exactly', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const big = { leaseMs: 3000, timeoutMs: 3000, maxBodyBytes: 8 * 1024 * 1024 };
    await readOutcome(await stub.execute(spec(key, `/bytes/${4 * 1024 * 1024}/chunks-old`, big)));
    expect((await storedRecord(key))?.chunks).toBe(4);
    // Expired with its alarm an hour away: only the read path can find it expired, and it must drop the chunk rows too.
    const later = await heldBackAndExpired(key);
    expect(await chunksOf(key)).toEqual({ chunks: 4, alarm: later });
    const size = 2 * 1024 * 1024 + 5;
    const fresh = await readOutcome(await stub.execute(spec(key, `/bytes/${size}/chunks-new`, big)));
    expect(fresh).toMatchObject({ kind: 'response', replayed: false });
    const replay = await readOutcome(await stub.execute(spec(key, `/bytes/${size}/chunks-new`, big)));
    if (replay.kind !== 'response') throw new Error(`expected a replay, got ${replay.kind}`);
    expect(replay.replayed).toBe(true);
    const expected = new Uint8Array(size).map((_, i) => (i * 31 + 7) & 0xff);
    expect(replay.response.body.byteLength).toBe(size);
    expect(await sha256Hex(replay.response.body)).toBe(await sha256Hex(expected));
    expect(await chunksOf(key)).toEqual({ chunks: 3, alarm: expect.any(Number) });
    expect(await originCalls(key)).toBe(2);
  });

  it('cleans up after a failed attempt (5xx is not stored)', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    // Read to its end: the answer's end comes only once the attempt is over and its record freed (its status comes first).
    const outcome = await readOutcome(await stub.execute(spec(key, '/status/503/gc')));
    expect(outcome).toMatchObject({ kind: 'response', response: { status: 503 } });
    expect(await storedRecord(key)).toBeUndefined();
    // The alarm the freed key set runs, and deletes everything, itself included.
    await until(async () => {
      const { tables, alarm } = await storageOf(key);
      return tables.length === 0 && alarm === null;
    }, 'the alarm to clean up the freed key');
    expect(await storageOf(key)).toEqual({ tables: [], alarm: null });
    // And the object works again afterwards.
    expect(await stub.execute(spec(key, '/echo/gc'))).toMatchObject({ kind: 'response', replayed: false });
  });
});

describe('IdempotencyRecord: origin timeout', () => {
  it('abandons an attempt at the end of its lease and frees the key', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const hold = newHold();
    // The origin holds the call past the lease (released only at the end).
    const outcome = await stub.execute(spec(key, `/hold/${hold}/lease`, { timeoutMs: 300, leaseMs: 600 }));
    expect(outcome.kind).toBe('origin_timeout');
    await until(async () => (await storedRecord(key)) === undefined);
    expect(await stub.execute(spec(key, '/echo/after-lease'))).toMatchObject({ kind: 'response', replayed: false });
    await release(hold);
  });
});

describe('IdempotencyRecord: storage never holds a half-written response', () => {
  it('keeps a body up to 1 MiB in the record row', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    await readOutcome(await stub.execute(spec(key, `/bytes/${1024 * 1024}/inline`, { maxBodyBytes: 4 * 1024 * 1024 })));
    const row = await runInDurableObject(stub, (_, state) => ({
      record: (({ body, chunks }) => ({ size: body?.byteLength, chunks }))(
        state.storage.kv.get<{ body: ArrayBuffer | null; chunks: number }>('record')!,
      ),
      chunkTable: state.storage.sql.exec(`SELECT name FROM sqlite_master WHERE name = 'body_chunk'`).toArray().length,
    }));
    expect(row).toEqual({ record: { size: 1024 * 1024, chunks: 0 }, chunkTable: 0 });
  });

  it('writes the record and its chunks in one transaction', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    await readOutcome(await stub.execute(spec(key, `/bytes/${3 * 1024 * 1024}/tx`, { maxBodyBytes: 4 * 1024 * 1024 })));
    const rows = await runInDurableObject(stub, (_, state) => ({
      chunks: state.storage.kv.get<{ chunks: number }>('record')!.chunks,
      ...state.storage.sql
        .exec<{ stored: number; size: number }>(`SELECT count(*) AS stored, sum(length(data)) AS size FROM body_chunk`)
        .one(),
    }));
    expect(rows).toEqual({ chunks: 3, stored: 3, size: 3 * 1024 * 1024 });
  });
});

describe('IdempotencyRecord: an attempt is never overtaken', () => {
  it('does not expire the row of an attempt still running here: a duplicate joins it, no second origin call', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const hold = newHold();
    const path = `/hold/${hold}/overtake`;
    const limits = { ttlMs: 200, leaseMs: 5000, timeoutMs: 5000 };
    const first = stub.execute(spec(key, path, limits));
    await reachedOrigin(key);
    const { expires_at: expiresAt } = (await storedRecord(key))!;
    await until(() => Date.now() > expiresAt);
    // Past the TTL while the origin still holds the call: the duplicate joins (and, held, is told it is in progress once
    // its own short wait ends); a second attempt would have reached the origin and ended in origin_timeout.
    const duplicate = await (await recordStub(key)).execute(spec(key, path, { ...limits, timeoutMs: 300 }));
    expect(duplicate).toEqual({ kind: 'in_progress', retryAfterMs: 1000 });
    await release(hold);
    expect(await first).toMatchObject({ kind: 'response', replayed: false });
    expect(await originCalls(key)).toBe(1);
  });

  it('ignores a repeated or late complete() once the attempt has ended', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const limits = { fingerprint: 'fp:complete', timeoutMs: 1000, leaseMs: 2000, ttlMs: 60_000 };
    const begun = await stub.begin(limits);
    if (begun.kind !== 'acquired') throw new Error(`expected to acquire the key, got ${begun.kind}`);
    await stub.complete(begun.attempt, response(201, 'first'));
    await stub.complete(begun.attempt, response(503, 'second'));
    await stub.complete(begun.attempt, { kind: 'origin_unreachable' });
    expect(await stub.begin(limits)).toMatchObject({ kind: 'response', replayed: true, response: { status: 201 } });
  });
});
