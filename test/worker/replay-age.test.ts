/**
 * Issue #28: a replay tells its age. It repeats the first answer's stored `Date`, so a client that read
 * `Idempotency-Expires` against that `Date` alone thought time remained after the key had expired, retried, and ran the
 * write twice. Every replay (from the object, from the isolate's cache, in both modes) now carries `Age` (RFC 9111
 * §5.1): whole seconds since the record was created, rounded up, computed when it is sent. The stored `Date` stays.
 */
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { idempotentFetch } from '../../src/client';
import { idempotency } from '../../src/middleware';
import { answering, bindingEdge, newKey, recordStub, sendWith, until } from './helpers';

/** The `Age` a replay sent between `before` and `after` must carry for a record created at `createdAt`. */
function expectAge(res: Response, createdAt: number, before: number, after: number, stored = 0): number {
  const age = Number(res.headers.get('age'));
  expect(res.headers.get('age')).toMatch(/^\d+$/);
  expect(age).toBeGreaterThanOrEqual(stored + Math.ceil((before - createdAt) / 1000));
  expect(age).toBeLessThanOrEqual(stored + Math.ceil((after - createdAt) / 1000));
  return age;
}

describe('the Age of a replay', () => {
  it('from the object and from the isolate’s cache counts from the record’s creation at send time; the stored Date stays', async () => {
    let executes = 0;
    const vars = {
      IDEMPOTENCY: bindingEdge((method, call) => {
        if (method === 'execute') executes++;
        return call();
      }),
    };
    const key = newKey();
    const first = await sendWith(vars, '/echo/age', { key, body: 'x' });
    await first.arrayBuffer();
    // The first answer is the origin's own: its fresh Date, no Age.
    expect(first.headers.get('age')).toBeNull();
    const date = first.headers.get('date');
    expect(date).not.toBeNull();
    const createdAt = (await (await recordStub(key)).inspect())!.created_at!;

    let before = Date.now();
    const fromObject = await sendWith(vars, '/echo/age', { key, body: 'x' });
    expect([fromObject.headers.get('idempotent-replay'), executes]).toEqual(['true', 2]);
    expectAge(fromObject, createdAt, before, Date.now());
    expect(fromObject.headers.get('date')).toBe(date);

    // Later, from the cache: its age now, not the age it had when it was cached.
    await until(() => Date.now() - createdAt > 1500, 'the record to be 1.5 s old');
    before = Date.now();
    const fromCache = await sendWith(vars, '/echo/age', { key, body: 'x' });
    expect([fromCache.headers.get('idempotent-replay'), executes]).toEqual(['true', 2]);
    expect(expectAge(fromCache, createdAt, before, Date.now())).toBeGreaterThanOrEqual(2);
    expect(fromCache.headers.get('date')).toBe(date);
  });

  it('in handler mode: a stored answer without Date is replayed with its record’s creation as Date, and its own Age counts', async () => {
    const { request, runs } = answering(() => new Response('made', { status: 201, headers: { age: '100' } }), { reporter: false });
    const key = newKey();
    const before = Date.now();
    const first = await request(key);
    expect([first.status, first.headers.get('date'), first.headers.get('age')]).toEqual([201, null, '100']);
    const replay = await request(key);
    expect([replay.headers.get('idempotent-replay'), runs()]).toEqual(['true', 1]);
    const date = Date.parse(replay.headers.get('date') ?? '');
    // The record was created by the first request: its Date is that second (HTTP dates truncate to it).
    expect(date).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(date).toBeLessThanOrEqual(Date.now());
    expectAge(replay, date, Date.now() - 1000, Date.now() + 1000, 100);
  });
});

describe('idempotentFetch against idempotency() (handler mode)', () => {
  it('retries a stored 4xx marked retryable only while its key protects it: the handler runs once (#28)', async () => {
    let runs = 0;
    const app = new Hono();
    app.use(idempotency({ reporter: false, ttlSeconds: 3 }));
    // A handler that answers with its own Date (as one passing on an upstream answer does), and asks for a retry.
    app.post('*', () => {
      runs++;
      const headers = { date: new Date().toUTCString(), 'x-should-retry': 'true', 'retry-after-ms': '250' };
      return new Response('{"error":"not yet"}', { status: 400, headers: { ...headers, 'content-type': 'application/json' } });
    });
    const res = await idempotentFetch('https://app.test/charges', {
      method: 'POST',
      headers: { authorization: 'Bearer client' },
      body: '{"amount":500}',
      idempotency: { retries: 40, fetch: (request) => Promise.resolve(app.request(request, undefined, env)) },
    });
    expect(runs).toBe(1);
    const info = idempotentFetch.info(res)!;
    // It retried the stored answer (replays), then stopped before the key expired: 40 retries would take 10 s.
    expect(info).toMatchObject({ replayed: true });
    expect(info.attempts).toBeGreaterThan(1);
    expect(info.attempts).toBeLessThan(41);
  });
});
