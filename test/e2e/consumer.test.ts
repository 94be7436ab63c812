/**
 * Issue #5: another Worker reuses the layer, as two `wrangler dev` sessions linked by wrangler's dev
 * registry, as in production: through the `IdempotencyService` entrypoint (service binding) and through
 * the `IdempotencyRecord` class bound by `script_name` behind the consumer's own `idempotency()` handlers.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestOrigin, type TestOrigin } from '../origin/server';
import { keyInfo, newStateDir, originCount, removeDir, type RunningProxy, send, startProxy, until } from './harness';

let origin: TestOrigin;
let proxy: RunningProxy;
let consumer: RunningProxy;
const dirs: string[] = [];

beforeAll(async () => {
  origin = await startTestOrigin();
  dirs.push(newStateDir(), newStateDir());
  proxy = await startProxy({
    originUrl: origin.url,
    stateDir: dirs[0]!,
    vars: { IDEMPOTENCY_TTL_SECONDS: '3', ORIGIN_LEASE_MS: '2000', ORIGIN_TIMEOUT_MS: '1500' },
  });
  consumer = await startProxy({ originUrl: null, config: 'examples/consumer/wrangler.toml', stateDir: dirs[1]! });
});
afterAll(async () => {
  await consumer?.stop();
  await proxy?.stop();
  await origin?.close();
  dirs.forEach(removeDir);
});

describe('a consumer Worker through the IdempotencyService service binding', () => {
  it('gets replay, conflict and bursts with one origin call', async () => {
    const key = randomUUID();
    const burst = await Promise.all(
      Array.from({ length: 40 }, () => send(consumer.url, '/via-service/slow/300/svc', { key, body: 'same' })),
    );
    expect(burst.every((r) => r.status === 200)).toBe(true);
    expect(new Set(await Promise.all(burst.map((r) => r.text()))).size).toBe(1);
    expect((await send(consumer.url, '/via-service/slow/300/svc', { key, body: 'same' })).headers.get('idempotent-replay')).toBe('true');
    const conflict = await send(consumer.url, '/via-service/slow/300/svc', { key, body: 'other' });
    expect(conflict.status).toBe(409);
    expect(await originCount(origin.url, { key })).toBe(1);
  });

  it('lets the key run again after the TTL', async () => {
    const key = randomUUID();
    expect((await send(consumer.url, '/via-service/status/201/ttl', { key, body: 'x' })).status).toBe(201);
    expect((await send(consumer.url, '/via-service/status/201/ttl', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    // The record's own expiry, as the proxy's key API reports it (the service shares the proxy's records).
    const { expires_at: expiresAt } = await keyInfo(proxy.url, key);
    expect(expiresAt).toBeDefined();
    await until(() => Date.now() > expiresAt!);
    expect((await send(consumer.url, '/via-service/status/201/ttl', { key, body: 'x' })).headers.get('idempotent-replay')).toBeNull();
    expect(await originCount(origin.url, { key })).toBe(2);
  });
});

describe('a consumer Worker with the IdempotencyRecord class bound by script_name', () => {
  it('runs its own handler once per key, replays, and answers conflicts', async () => {
    const runs = async () => ((await (await fetch(`${consumer.url}/local/runs`)).json()) as { runs: number }).runs;
    const before = await runs();
    const key = randomUUID();
    const burst = await Promise.all(
      Array.from({ length: 20 }, () =>
        send(consumer.url, '/local/adjust', { key, body: '{"delta":5}', headers: { 'content-type': 'application/json' } }),
      ),
    );
    expect(burst.every((r) => r.status === 201)).toBe(true);
    expect(burst.filter((r) => r.headers.get('idempotent-replay') === null)).toHaveLength(1);
    const conflict = await send(consumer.url, '/local/adjust', {
      key,
      body: '{"delta":6}',
      headers: { 'content-type': 'application/json' },
    });
    expect(conflict.status).toBe(409);
    expect((await runs()) - before).toBe(1);
  });
});
