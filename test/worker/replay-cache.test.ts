/**
 * The per-isolate replay cache: a hot key's replays and conflicts skip the Durable Object, and the
 * cache never outlives the record (TTL) nor serves a record that was not read back from storage.
 */
import { describe, expect, it } from 'vitest';
import { ReplayCache } from '../../src/middleware/replay-cache';
import { interceptExecute, newKey, originCalls, sendWith } from './helpers';

/** The real namespace, counting the object calls the Worker makes. */
function countingNamespace() {
  const calls = { execute: 0 };
  const namespace = interceptExecute((spec, execute) => {
    calls.execute++;
    return execute(spec);
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

  it('does not outlive the record: near and after the TTL the object answers, and the key runs again', async () => {
    const { namespace, calls } = countingNamespace();
    const vars = { IDEMPOTENCY: namespace, IDEMPOTENCY_TTL_SECONDS: '2', ORIGIN_LEASE_MS: '600', ORIGIN_TIMEOUT_MS: '600' };
    const key = newKey();
    await sendWith(vars, '/echo/ttl-cache', { key, body: 'x' });
    await sendWith(vars, '/echo/ttl-cache', { key, body: 'x' });
    expect((await sendWith(vars, '/echo/ttl-cache', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    // Within the clock margin of the expiry, replays are not served from the cache.
    expect(calls.execute).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const again = await sendWith(vars, '/echo/ttl-cache', { key, body: 'x' });
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(calls.execute).toBe(4);
    expect(await originCalls(key)).toBe(2);
  });
});

describe('ReplayCache', () => {
  const response = (size: number) => ({ status: 200, headers: [] as [string, string][], body: new ArrayBuffer(size) });

  it('expires entries at expiresAt and evicts the least recently used beyond its size', () => {
    const cache = new ReplayCache(2500);
    const expires = 100_000;
    cache.set('a', 'fa', response(1000), expires);
    cache.set('b', 'fb', response(1000), expires);
    expect(cache.get('a', 50)?.fingerprint).toBe('fa'); // a is now the most recently used
    cache.set('c', 'fc', response(1000), expires); // over 2500 bytes: b goes
    expect(cache.get('b', 50)).toBeUndefined();
    expect(cache.get('a', 50)).toBeDefined();
    expect(cache.get('c', expires - 4_000)).toBeUndefined(); // within the clock margin of its expiry
  });

  it('does not cache large bodies', () => {
    const cache = new ReplayCache();
    cache.set('big', 'f', response(65 * 1024), Date.now() + 60_000);
    expect(cache.get('big', Date.now())).toBeUndefined();
  });
});
