/**
 * The per-isolate replay cache: a hot key's replays and conflicts skip the Durable Object, and the
 * cache never outlives the record (TTL) nor serves a record that was not read back from storage.
 */
import { describe, expect, it } from 'vitest';
import { MAX_AGE_MS, ReplayCache } from '../../src/middleware/replay-cache';
import {
  bindingEdge,
  expectProblem,
  newHold,
  newKey,
  originCalls,
  originUrl,
  release,
  sendWith,
  storedRecord,
  until,
  whole,
} from './helpers';

/** The real namespace, counting the object calls the Worker makes. */
function countingNamespace() {
  const calls = { execute: 0 };
  const namespace = bindingEdge((method, call) => {
    if (method === 'execute') calls.execute++;
    return call();
  });
  return { namespace, calls };
}

describe('replay cache', () => {
  it('serves repeated replays and conflicts of a hot key without calling the object', async () => {
    const { namespace, calls } = countingNamespace();
    const vars = { IDEMPOTENCY: namespace };
    const key = newKey();
    const first = await (await sendWith(vars, '/echo/hot', { key, body: 'x' })).text();
    const fromObject = await sendWith(vars, '/echo/hot', { key, body: 'x' });
    expect(fromObject.headers.get('idempotent-replay')).toBe('true');
    expect(calls.execute).toBe(2);
    for (let i = 0; i < 3; i++) {
      const cached = await sendWith(vars, '/echo/hot', { key, body: 'x' });
      expect(cached.headers.get('idempotent-replay')).toBe('true');
      expect(await cached.text()).toBe(first);
    }
    const conflict = await sendWith(vars, '/echo/hot', { key, body: 'other' });
    expect(conflict.status).toBe(409);
    expect(calls.execute).toBe(2);
    expect(await originCalls(key)).toBe(1);
  });

  it('answers conflicts of a stored key from what the first conflict revealed, without a replay first', async () => {
    const { namespace, calls } = countingNamespace();
    const vars = { IDEMPOTENCY: namespace };
    const key = newKey();
    // Read to its end: stored, so the conflict below reveals the stored request (one in flight is never cached).
    await whole(sendWith(vars, '/echo/conflicts', { key, body: 'x' }));
    await expectProblem(await sendWith(vars, '/echo/conflicts', { key, body: 'other 1' }), 409, 'idempotency_key_reused');
    expect(calls.execute).toBe(2);
    await expectProblem(await sendWith(vars, '/echo/conflicts', { key, body: 'other 2' }), 409, 'idempotency_key_reused');
    expect(calls.execute).toBe(2);
    // The same request is a replay: the object answers it once (a conflict brought no response), then the cache.
    for (let i = 0; i < 2; i++)
      expect((await sendWith(vars, '/echo/conflicts', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(calls.execute).toBe(3);
    expect(await originCalls(key)).toBe(1);
  });

  it('never caches a conflict with an attempt still in flight (it may fail and free the key)', async () => {
    const { namespace, calls } = countingNamespace();
    // A wait for the origin's answer that outlasts the hold, however loaded the machine.
    const vars = { IDEMPOTENCY: namespace, ORIGIN_TIMEOUT_MS: '20000', ORIGIN_LEASE_MS: '20000' };
    const key = newKey();
    const hold = newHold();
    // A 503 that the origin holds until the conflict has been answered.
    const path = `/status/503/in-flight-conflict?hold=${hold}`;
    const first = sendWith(vars, path, { key, body: 'x' });
    await until(async () => (await storedRecord(key))?.state === 'in_flight');
    await expectProblem(await sendWith(vars, path, { key, body: 'y' }), 409, 'idempotency_key_reused');
    await release(hold);
    // The attempt fails (503), read to its end: the key is free, and the other request now runs (and fails too, but runs).
    expect((await whole(first)).status).toBe(503);
    expect((await sendWith(vars, path, { key, body: 'y' })).status).toBe(503);
    expect(await originCalls(key)).toBe(2);
    expect(calls.execute).toBe(3);
  });

  it('never caches a conflict with a key held as unknown (reconcile may run it again, and a 5xx then frees the key)', async () => {
    // Two configurations of one isolate, the same records (namespace, scope, key) and the same request path `/x`:
    // the first one's origin resets before its status line, the second one's answers 503.
    const reconcile = { IDEMPOTENCY_ON_UNKNOWN: 'reconcile', IDEMPOTENCY_RECONCILE_URL: '/reconcile/missing/{key}' };
    const resetting = { ...reconcile, ORIGIN_URL: `${originUrl}/reset-before-status/unknown-conflict` };
    const failing = { ...reconcile, ORIGIN_URL: `${originUrl}/status/503/unknown-conflict` };
    const key = newKey();
    await expectProblem(await sendWith(resetting, '/x', { key, body: 'x' }), 502, 'origin_unreachable');
    expect(await storedRecord(key)).toMatchObject({ state: 'unknown' });
    await expectProblem(await sendWith(resetting, '/x', { key, body: 'y' }), 409, 'idempotency_key_reused');
    // The origin says the first request never ran (404): it runs again, answers 503, and the key is free.
    expect((await whole(sendWith(failing, '/x', { key, body: 'x' }))).status).toBe(503);
    expect(await storedRecord(key)).toBeUndefined();
    expect((await whole(sendWith(failing, '/x', { key, body: 'y' }))).status).toBe(503);
    expect(await originCalls(key)).toBe(3);
  });

  it('does not outlive the record: near and after the TTL the object answers, and the key runs again', async () => {
    const { namespace, calls } = countingNamespace();
    const vars = { IDEMPOTENCY: namespace, IDEMPOTENCY_TTL_SECONDS: '2', ORIGIN_LEASE_MS: '600', ORIGIN_TIMEOUT_MS: '600' };
    const key = newKey();
    await whole(sendWith(vars, '/echo/ttl-cache', { key, body: 'x' }));
    await whole(sendWith(vars, '/echo/ttl-cache', { key, body: 'x' }));
    expect((await sendWith(vars, '/echo/ttl-cache', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    // Within the clock margin of the expiry, replays are not served from the cache.
    expect(calls.execute).toBe(3);
    const { expires_at: expiresAt } = (await storedRecord(key))!;
    await until(() => Date.now() > expiresAt);
    const again = await sendWith(vars, '/echo/ttl-cache', { key, body: 'x' });
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(calls.execute).toBe(4);
    expect(await originCalls(key)).toBe(2);
  });
});

describe('ReplayCache', () => {
  const response = (size: number) => ({ status: 200, headers: [] as [string, string][], body: new ArrayBuffer(size) });
  const now = 1_000_000;

  it('serves an entry until the expiry the object reported (minus a clock margin), at most MAX_AGE_MS after it was read', () => {
    const cache = new ReplayCache();
    cache.set('soon', { fingerprint: 'f', response: response(10), keyHash: 'kh', expiresAt: now + 8_000 }, now);
    expect(cache.get('soon', now + 2_999)).toBeDefined();
    expect(cache.get('soon', now + 3_000)).toBeUndefined(); // 5 s clock margin before its expiry
    cache.set('later', { fingerprint: 'f', response: response(10), keyHash: 'kh', expiresAt: now + 86_400_000 }, now);
    expect(cache.get('later', now + MAX_AGE_MS - 1)).toBeDefined();
    expect(cache.get('later', now + MAX_AGE_MS)).toBeUndefined(); // a purge elsewhere is seen within MAX_AGE_MS
  });

  it('evicts the least recently used entry beyond its memory budget, counting a fixed cost per entry', () => {
    const cache = new ReplayCache(2560);
    cache.set('a', { fingerprint: 'fa', response: response(500), keyHash: 'kh', expiresAt: now + 60_000 }, now);
    cache.set('b', { fingerprint: 'fb', response: response(500), keyHash: 'kh', expiresAt: now + 60_000 }, now);
    expect(cache.get('a', now)?.fingerprint).toBe('fa'); // a is now the most recently used
    cache.set('c', { fingerprint: 'fc', response: response(500), keyHash: 'kh', expiresAt: now + 60_000 }, now); // 3 x (500 + overhead) > 2560 bytes: b goes
    expect(cache.get('b', now)).toBeUndefined();
    expect(cache.get('a', now)).toBeDefined();
    expect(cache.get('c', now)).toBeDefined();
    expect(cache.bytes).toBeLessThanOrEqual(2560);
  });

  it('holds no more than its entry cap, however small the entries', () => {
    const cache = new ReplayCache(8 * 1024 * 1024, 100);
    for (let i = 0; i < 1000; i++)
      cache.set(`k${i}`, { fingerprint: 'f', response: response(0), keyHash: 'kh', expiresAt: now + 60_000 }, now);
    expect(cache.size).toBe(100);
    expect(cache.get('k999', now)).toBeDefined();
    expect(cache.get('k0', now)).toBeUndefined();
    // Each empty entry is still counted at its fixed cost, never as zero bytes.
    expect(cache.bytes).toBeGreaterThanOrEqual(100 * 256);
  });

  it('keeps a replayable entry when a conflict later reveals the same fingerprint', () => {
    const cache = new ReplayCache();
    cache.set('k', { fingerprint: 'f', response: response(10), keyHash: 'kh', expiresAt: now + 60_000 }, now);
    cache.set('k', { fingerprint: 'f', keyHash: 'kh', expiresAt: now + 60_000 }, now + 1);
    expect(cache.get('k', now + 2)?.response).toBeDefined();
  });

  it('does not cache large bodies, and forgets a purged entry', () => {
    const cache = new ReplayCache();
    cache.set('big', { fingerprint: 'f', response: response(65 * 1024), keyHash: 'kh', expiresAt: now + 60_000 }, now);
    expect(cache.get('big', now)).toBeUndefined();
    cache.set('small', { fingerprint: 'f', response: response(10), keyHash: 'kh', expiresAt: now + 60_000 }, now);
    cache.delete('small');
    expect(cache.get('small', now)).toBeUndefined();
    expect(cache.bytes).toBe(0);
  });
});
