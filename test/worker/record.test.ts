/**
 * `IdempotencyRecord` directly: restarts, resets mid-flight, leases, expiry and the alarm, against real
 * Durable Object storage in workerd.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { AttemptLimits, AttemptSpec } from '../../src/record/api';
import { newKey, originCalls, originUrl, recordStub, send } from './helpers';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function spec(key: string, path: string, overrides: Partial<AttemptLimits> & { maxBodyBytes?: number } = {}): AttemptSpec {
  const { maxBodyBytes = 1024 * 1024, ...limits } = overrides;
  return {
    fingerprint: `fp:${path}`,
    timeoutMs: 3000,
    leaseMs: 4000,
    ttlMs: 60_000,
    ...limits,
    origin: {
      method: 'POST',
      url: `${originUrl}${path}`,
      headers: [
        ['idempotency-key', key],
        ['authorization', 'Bearer test-token'],
      ],
      body: new TextEncoder().encode('body').buffer as ArrayBuffer,
      maxBodyBytes,
    },
  };
}

/** User tables and the alarm: what the object still holds. */
async function storageOf(key: string) {
  return runInDurableObject(await recordStub(key), async (_, state) => ({
    tables: state.storage.sql
      .exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'`)
      .toArray()
      .map((t) => t.name),
    records: state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM sqlite_master WHERE name = 'record'`).one().n
      ? state.storage.sql.exec(`SELECT state FROM record`).toArray()
      : [],
    alarm: await state.storage.getAlarm(),
  }));
}

/** Resets the object as a deploy or crash would: in-memory state is lost, storage stays. */
async function resetObject(key: string): Promise<void> {
  await runInDurableObject(await recordStub(key), (_, state) => {
    try {
      state.abort('test reset');
    } catch {
      // abort() throws to unwind the caller; the reset has happened.
    }
  }).catch(() => undefined);
}

describe('IdempotencyRecord: state survives a restart', () => {
  it('replays from storage after the object is evicted', async () => {
    const key = newKey();
    expect((await send('/echo/evict', { key, body: 'x' })).status).toBe(200);
    await evictDurableObject(await recordStub(key));
    const replay = await send('/echo/evict', { key, body: 'x' });
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('IdempotencyRecord: an attempt that dies mid-flight', () => {
  it('holds the key until the lease ends, then runs again with the same Idempotency-Key', async () => {
    const key = newKey();
    const started = Date.now();
    // Settled right away so the rejection caused by the reset is handled when it happens.
    const first = Promise.allSettled([(await recordStub(key)).execute(spec(key, '/slow/1000/reset', { leaseMs: 2500, timeoutMs: 2500 }))]);
    await sleep(300);
    // A reset while the origin is being called: in-memory state is gone, the in-flight row stays.
    await resetObject(key);
    expect((await first)[0].status).toBe('rejected');

    const during = await (await recordStub(key)).execute(spec(key, '/slow/1000/reset', { leaseMs: 2500, timeoutMs: 2500 }));
    expect(during.kind).toBe('in_progress');
    if (during.kind === 'in_progress') {
      expect(during.retryAfterMs).toBeGreaterThan(0);
      expect(during.retryAfterMs).toBeLessThanOrEqual(2500 - (Date.now() - started) + 50);
    }
    // A different request with the same key is still a conflict, not a take-over.
    expect((await (await recordStub(key)).execute(spec(key, '/slow/1000/other'))).kind).toBe('conflict');

    await sleep(Math.max(0, started + 2600 - Date.now()));
    const after = await (await recordStub(key)).execute(spec(key, '/slow/1000/reset', { leaseMs: 2500, timeoutMs: 2500 }));
    expect(after).toMatchObject({ kind: 'response', replayed: false });
    expect(await originCalls(key)).toBe(2);
    const last = (await (await fetch(`${originUrl}/__last?key=${key}`)).json()) as { headers: Record<string, string> };
    expect(last.headers['idempotency-key']).toBe(key);
  });

  it('answers the client of a reset attempt with 503, and its retry with 409 in_progress until the lease ends', async () => {
    const key = newKey();
    const first = send('/slow/1200/worker-reset', { key, body: 'x' });
    await sleep(300);
    await resetObject(key);
    // The reset surfaces as a non-retryable error on the Worker's stub: it fails closed.
    const res = await first;
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    const retry = await send('/slow/1200/worker-reset', { key, body: 'x' });
    expect(retry.status).toBe(409);
    expect(((await retry.json()) as { code: string }).code).toBe('idempotency_key_in_progress');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('IdempotencyRecord: expiry', () => {
  it('lets the key run again once the TTL has passed, even before the alarm ran', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    expect(await stub.execute(spec(key, '/echo/ttl', { ttlMs: 300, leaseMs: 200, timeoutMs: 200 }))).toMatchObject({ replayed: false });
    expect(await stub.execute(spec(key, '/echo/ttl', { ttlMs: 300, leaseMs: 200, timeoutMs: 200 }))).toMatchObject({ replayed: true });
    await sleep(350);
    expect(await stub.execute(spec(key, '/echo/ttl', { ttlMs: 300, leaseMs: 200, timeoutMs: 200 }))).toMatchObject({ replayed: false });
    expect(await originCalls(key)).toBe(2);
  });

  it('keeps a live record when the alarm runs early; at expiry the alarm deletes everything, alarm included', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    await stub.execute(spec(key, '/echo/alarm', { ttlMs: 500, leaseMs: 200, timeoutMs: 200 }));
    const before = await storageOf(key);
    expect(before.records).toEqual([{ state: 'complete' }]);
    expect(before.alarm).not.toBeNull();

    // An early (or repeated) alarm must not delete a record that is still valid: it re-arms instead.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await storageOf(key)).records).toEqual([{ state: 'complete' }]);
    expect((await storageOf(key)).alarm).not.toBeNull();

    // The re-armed alarm fires by itself at expiry and removes everything.
    for (let i = 0; i < 40 && (await storageOf(key)).tables.length > 0; i++) await sleep(100);
    expect(await storageOf(key)).toEqual({ tables: [], records: [], alarm: null });
    // Running the handler again on the empty object is harmless and leaves nothing behind.
    await runInDurableObject(stub, (instance) => instance.alarm());
    expect(await storageOf(key)).toEqual({ tables: [], records: [], alarm: null });
  });

  it('deletes storage when the real alarm fires on its own', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    await stub.execute(spec(key, '/echo/real-alarm', { ttlMs: 400, leaseMs: 200, timeoutMs: 200 }));
    expect((await storageOf(key)).records).toHaveLength(1);
    for (let i = 0; i < 40 && (await storageOf(key)).tables.length > 0; i++) await sleep(100);
    expect(await storageOf(key)).toEqual({ tables: [], records: [], alarm: null });
  });

  it('cleans up after a failed attempt (5xx is not stored)', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const outcome = await stub.execute(spec(key, '/status/503/gc'));
    expect(outcome).toMatchObject({ kind: 'response', response: { status: 503 } });
    expect((await storageOf(key)).records).toEqual([]);
    for (let i = 0; i < 40 && (await storageOf(key)).tables.length > 0; i++) await sleep(50);
    expect(await storageOf(key)).toEqual({ tables: [], records: [], alarm: null });
    // And the object works again afterwards.
    expect(await stub.execute(spec(key, '/echo/gc'))).toMatchObject({ kind: 'response', replayed: false });
  });
});

describe('IdempotencyRecord: origin timeout', () => {
  it('abandons an attempt at the end of its lease and frees the key', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const outcome = await stub.execute(spec(key, '/slow/1500/lease', { timeoutMs: 300, leaseMs: 600 }));
    expect(outcome.kind).toBe('origin_timeout');
    await sleep(500);
    expect((await storageOf(key)).records).toEqual([]);
    expect(await stub.execute(spec(key, '/echo/after-lease'))).toMatchObject({ kind: 'response', replayed: false });
  });
});

describe('IdempotencyRecord: storage never holds a half-written response', () => {
  it('keeps a body up to 1 MiB in the record row', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    await stub.execute(spec(key, `/bytes/${1024 * 1024}/inline`, { maxBodyBytes: 4 * 1024 * 1024 }));
    const row = await runInDurableObject(stub, (_, state) => ({
      record: state.storage.sql.exec<{ size: number; chunks: number }>(`SELECT length(body) AS size, chunks FROM record`).one(),
      chunkTable: state.storage.sql.exec(`SELECT name FROM sqlite_master WHERE name = 'body_chunk'`).toArray().length,
    }));
    expect(row).toEqual({ record: { size: 1024 * 1024, chunks: 0 }, chunkTable: 0 });
  });

  it('writes the record and its chunks in one transaction', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    await stub.execute(spec(key, `/bytes/${3 * 1024 * 1024}/tx`, { maxBodyBytes: 4 * 1024 * 1024 }));
    const rows = await runInDurableObject(stub, (_, state) =>
      state.storage.sql
        .exec<{ chunks: number; stored: number; size: number }>(
          `SELECT chunks, (SELECT count(*) FROM body_chunk) AS stored, (SELECT sum(length(data)) FROM body_chunk) AS size FROM record`,
        )
        .one(),
    );
    expect(rows).toEqual({ chunks: 3, stored: 3, size: 3 * 1024 * 1024 });
  });
});

describe('IdempotencyRecord: an attempt is never overtaken', () => {
  it('does not expire the row of an attempt still running here: a duplicate joins it, no second origin call', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    // The TTL ends while the origin is still answering (only possible for a take-over near the end of
    // the TTL in practice, which is why the record's expiry now covers the new lease too).
    const first = stub.execute(spec(key, '/slow/700/overtake', { ttlMs: 200, leaseMs: 3000, timeoutMs: 3000 }));
    await sleep(350);
    const duplicate = await (
      await recordStub(key)
    ).execute(spec(key, '/slow/700/overtake', { ttlMs: 200, leaseMs: 3000, timeoutMs: 3000 }));
    expect(duplicate).toMatchObject({ kind: 'response', replayed: true });
    expect(await first).toMatchObject({ kind: 'response', replayed: false });
    expect(await originCalls(key)).toBe(1);
  });

  it('ignores a repeated or late complete() once the attempt has ended', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const limits = { fingerprint: 'fp:complete', timeoutMs: 1000, leaseMs: 2000, ttlMs: 60_000 };
    const begun = await stub.begin(limits);
    if (begun.kind !== 'acquired') throw new Error(`expected to acquire the key, got ${begun.kind}`);
    const answer = {
      status: 201,
      headers: [['content-type', 'text/plain']] as [string, string][],
      body: new TextEncoder().encode('first').buffer as ArrayBuffer,
    };
    await stub.complete(begun.attempt, { kind: 'response', response: answer });
    await stub.complete(begun.attempt, { kind: 'response', response: { ...answer, status: 503 } });
    await stub.complete(begun.attempt, { kind: 'origin_unreachable' });
    const replay = await stub.begin(limits);
    expect(replay).toMatchObject({ kind: 'response', replayed: true, response: { status: 201 } });
  });
});
