/**
 * Per-route policy and the proxy on its own route, under `wrangler dev` with the table passed as a JSON string
 * (`--var IDEMPOTENCY_ROUTES:[...]`), against the counting origin (issue #13).
 */
import { randomUUID } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { listen } from '../../scripts/lib/processes.ts';
import { startTestOrigin, type TestOrigin } from '../origin/server';
import {
  keyInfo,
  newStateDir,
  originCount,
  problemCode,
  proxyForFile,
  removeDir,
  type RunningProxy,
  send,
  startProxy,
  until,
} from './harness';

const ROUTES = [
  { pattern: '/pay/*', mode: 'required' },
  { pattern: '/hooks/*', ttl_seconds: 2, timeout_ms: 1000, lease_ms: 1000 },
  { pattern: '/search/*', mode: 'off' },
  { pattern: '/orders/:id', fingerprint: 'json', ignore_fields: ['/client_timestamp'] },
];
const shared = proxyForFile({ IDEMPOTENCY_ROUTES: JSON.stringify(ROUTES) });

describe('IDEMPOTENCY_ROUTES under wrangler dev', () => {
  it('"required" refuses a write without a key and never calls the origin; "off" calls it every time', async () => {
    const path = `/pay/${randomUUID()}`;
    expect(await problemCode(await send(shared.proxy.url, path, { body: 'x' }))).toBe('idempotency_key_missing');
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    const key = randomUUID();
    for (let i = 0; i < 3; i++)
      expect((await send(shared.proxy.url, '/search/q', { key, body: 'same' })).headers.get('idempotent-replay')).toBeNull();
    expect(await originCount(shared.origin.url, { key })).toBe(3);
  });

  it('"json" replays a re-serialised body once and answers 409 when a field that counts changes', async () => {
    const key = randomUUID();
    const order = (body: string) => send(shared.proxy.url, '/orders/42', { key, body, headers: { 'content-type': 'application/json' } });
    expect((await order('{"sku":"a","qty":2,"client_timestamp":1}')).status).toBe(200);
    expect((await order('{ "qty": 2, "client_timestamp": 99, "sku": "a" }')).headers.get('idempotent-replay')).toBe('true');
    expect(await problemCode(await order('{"sku":"a","qty":3,"client_timestamp":1}'))).toBe('idempotency_key_reused');
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it("expires a route's keys on its own TTL while the global TTL holds the others", async () => {
    const [hook, other] = [randomUUID(), randomUUID()];
    await send(shared.proxy.url, '/hooks/h', { key: hook, body: 'x' });
    await send(shared.proxy.url, '/other/o', { key: other, body: 'x' });
    const { expires_at: expiresAt } = await keyInfo(shared.proxy.url, hook);
    expect(expiresAt).toBeDefined();
    await until(() => Date.now() > expiresAt!);
    expect((await send(shared.proxy.url, '/hooks/h', { key: hook, body: 'x' })).headers.get('idempotent-replay')).toBeNull();
    expect((await send(shared.proxy.url, '/other/o', { key: other, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect([await originCount(shared.origin.url, { key: hook }), await originCount(shared.origin.url, { key: other })]).toEqual([2, 1]);
  });
});

describe('a proxy whose table is invalid, and one forwarding to its own URL', () => {
  let origin: TestOrigin;
  const running: RunningProxy[] = [];
  const dirs: string[] = [];
  const start = async (vars: Record<string, string>, originUrl: string) => {
    dirs.push(newStateDir());
    const proxy = await startProxy({ originUrl, stateDir: dirs.at(-1)!, vars });
    running.push(proxy);
    return proxy;
  };
  beforeAll(async () => {
    origin = await startTestOrigin();
  });
  afterAll(async () => {
    for (const proxy of running) await proxy.stop();
    await origin?.close();
    dirs.forEach(removeDir);
  });

  it('names the field of an invalid table in every answer', async () => {
    const proxy = await start(
      { IDEMPOTENCY_ROUTES: JSON.stringify([{ pattern: '/a/*' }, { pattern: '/b/*', lease_ms: 'soon' }]) },
      origin.url,
    );
    const body = (await (await send(proxy.url, '/a/x', { method: 'GET' })).json()) as { code: string; detail: string };
    expect(body.code).toBe('configuration_invalid');
    expect(body.detail).toContain('IDEMPOTENCY_ROUTES[1].lease_ms');
  });

  it('answers 508 loop_detected when ORIGIN_URL = "request" sends a request back to the proxy itself', async () => {
    // ORIGIN_HOSTS pins the port (issue #29), which wrangler dev picks itself: a TCP relay on a port known first
    // passes every connection on to the proxy, so the request's own URL (its Host) is the relay's, and comes back.
    let proxyPort = 0;
    const relay = createServer((socket) => socket.pipe(connect(proxyPort, '127.0.0.1').on('error', () => socket.destroy())).pipe(socket));
    const relayPort = await listen(relay);
    const proxy = await start({ ORIGIN_HOSTS: `http://127.0.0.1:${relayPort}` }, 'request');
    proxyPort = proxy.port;
    onTestFinished(() => new Promise<void>((resolve) => relay.close(() => resolve())));
    const key = randomUUID();
    for (const init of [{ key, body: 'x' }, { method: 'GET' }]) {
      const res = await send(`http://127.0.0.1:${relayPort}`, '/loop/me', init);
      expect(res.status).toBe(508);
      expect(await problemCode(res)).toBe('loop_detected');
    }
    // Nothing was stored for the key: the 508 is a server error, so the key is free.
    expect(await problemCode(await send(`http://127.0.0.1:${relayPort}`, `/_idempotency/keys/${key}`, { method: 'GET' }))).toBe(
      'idempotency_key_not_found',
    );
  });
});
