/**
 * What a security review of the proxy found (issue #11), one finding per block. Each test fails without its fix.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { idempotency } from '../../src/middleware';
import type { AttemptSpec } from '../../src/record/api';
import { sha256Hex } from '../../src/shared/bytes';
import { codeOf, expectProblem, newKey, originCalls, originPathCalls, originUrl, recordStub, send, sendWith, whole } from './helpers';

afterEach(() => vi.restoreAllMocks());

/** A Hono app with its own handler made idempotent, counting its runs, on the proxy's namespace binding. */
function appWith(options: Parameters<typeof idempotency>[0] = {}) {
  let runs = 0;
  const app = new Hono();
  app.use(idempotency({ reporter: false, ...options }));
  app.post('*', (c) => c.json({ app: true, run: ++runs }, 201));
  return {
    runs: () => runs,
    request: (path: string, init: { key: string; auth?: string; body?: string; headers?: Record<string, string> }) =>
      Promise.resolve(
        app.request(
          path,
          {
            method: 'POST',
            headers: { authorization: init.auth ?? 'Bearer test-token', 'idempotency-key': init.key, ...init.headers },
            body: init.body ?? 'x',
          },
          env,
        ),
      ),
  };
}

describe('record names are separated by who uses them and by kind of scope', () => {
  it('keeps the proxy and an app that shares its namespace apart, for the same credential, key and request', async () => {
    const key = newKey();
    expect((await send('/echo/shared', { key, body: 'x' })).status).toBe(200);
    const app = appWith();
    const res = await app.request('/echo/shared', { key });
    expect(res.status).toBe(201);
    expect(res.headers.get('idempotent-replay')).toBeNull();
    expect(app.runs()).toBe(1);
  });

  it('keeps two apps with their own namespace apart', async () => {
    const key = newKey();
    const billing = appWith({ namespace: 'billing' });
    const ledger = appWith({ namespace: 'ledger' });
    await billing.request('/charge', { key });
    expect((await ledger.request('/charge', { key })).headers.get('idempotent-replay')).toBeNull();
    expect([billing.runs(), ledger.runs()]).toEqual([1, 1]);
  });

  it('never lets a custom scope value plant a record under a credential with the same text', async () => {
    const key = newKey();
    // A non-secret custom scope (a user id) whose value equals another client's whole Authorization value.
    const custom = appWith({ scope: (c) => c.req.header('x-user') });
    await custom.request('/plant', { key, headers: { 'x-user': 'Bearer victim' } });
    const victim = appWith();
    const res = await victim.request('/plant', { key, auth: 'Bearer victim' });
    expect(res.headers.get('idempotent-replay')).toBeNull();
    expect(victim.runs()).toBe(1);
  });
});

describe('transient refusals are not stored', () => {
  it.each([408, 425, 429])('frees the key after a %i, so the next request runs again; other 4xx stay stored', async (status) => {
    const key = newKey();
    // Read to its end, so the next request finds the key freed rather than joining this attempt.
    expect((await whole(send(`/status/${status}/transient`, { key, body: 'x' }))).status).toBe(status);
    const again = await send(`/status/${status}/transient`, { key, body: 'x' });
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(await originCalls(key)).toBe(2);
  });

  it('still stores a 404', async () => {
    const key = newKey();
    await whole(send('/status/404/kept', { key, body: 'x' }));
    expect((await send('/status/404/kept', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('IDEMPOTENCY_SCOPE_HEADERS', () => {
  it('scopes keys by an API-key header, and refuses a keyed write without it (credential_missing)', async () => {
    const vars = { IDEMPOTENCY_SCOPE_HEADERS: 'x-api-key' };
    const key = newKey();
    const as = (apiKey: string | undefined) =>
      sendWith(vars, '/echo/api-key', { key, auth: null, body: 'x', headers: apiKey ? { 'x-api-key': apiKey } : {} });
    expect((await as('key-a')).headers.get('idempotent-replay')).toBeNull();
    expect((await as('key-a')).headers.get('idempotent-replay')).toBe('true');
    expect((await as('key-b')).headers.get('idempotent-replay')).toBeNull();
    await expectProblem(await as(undefined), 401, 'credential_missing');
    expect(await originCalls(key)).toBe(2);
  });

  it('scopes keys by one cookie, whatever other cookies come and go', async () => {
    const vars = { IDEMPOTENCY_SCOPE_HEADERS: 'cookie:session' };
    const key = newKey();
    const as = (cookie: string) => sendWith(vars, '/echo/cookie-scope', { key, auth: null, body: 'x', headers: { cookie } });
    await as('session=s1; _ga=1');
    expect((await as('_ga=2; session=s1')).headers.get('idempotent-replay')).toBe('true');
    expect((await as('session=s2')).headers.get('idempotent-replay')).toBeNull();
    expect(await originCalls(key)).toBe(2);
  });

  it('matches the cookie name exactly (cookie names are case-sensitive), the header name in any case', async () => {
    const vars = { IDEMPOTENCY_SCOPE_HEADERS: 'Cookie:JSESSIONID' };
    const key = newKey();
    const as = (cookie: string) => sendWith(vars, '/echo/cookie-case', { key, auth: null, body: 'x', headers: { cookie } });
    await as('JSESSIONID=s1');
    expect((await as('JSESSIONID=s1')).headers.get('idempotent-replay')).toBe('true');
    // Another cookie, not the scope: the keyed write has no credential.
    await expectProblem(await as('jsessionid=s1'), 401, 'credential_missing');
    expect(await originCalls(key)).toBe(1);
  });

  it('makes every named header part of the scope, without ambiguity', async () => {
    const vars = { IDEMPOTENCY_SCOPE_HEADERS: 'x-tenant, x-user' };
    const key = newKey();
    const as = (headers: Record<string, string>) => sendWith(vars, '/echo/multi-scope', { key, auth: null, body: 'x', headers });
    await as({ 'x-tenant': 'a,b' });
    // Joined naively, ("a,b", none) and ("a", "b") would be the same scope.
    expect((await as({ 'x-tenant': 'a', 'x-user': 'b' })).headers.get('idempotent-replay')).toBeNull();
    expect((await as({ 'x-tenant': 'a,b' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(2);
  });

  it('refuses a hop-by-hop or malformed list with configuration_invalid naming the variable', async () => {
    for (const value of ['proxy-authorization', 'bad header', 'cookie:']) {
      const body = await expectProblem(
        await sendWith({ IDEMPOTENCY_SCOPE_HEADERS: value }, '/echo/x', { key: newKey(), body: 'x' }),
        500,
        'configuration_invalid',
      );
      expect(body.detail).toContain('IDEMPOTENCY_SCOPE_HEADERS');
    }
  });
});

describe('headers named by Connection', () => {
  it('are not forwarded, so they neither scope nor key the request: a keyed write under Connection: authorization has no credential', async () => {
    const key = newKey();
    for (let i = 0; i < 2; i++) {
      const res = await sendWith({}, '/echo/conn-auth', { key, body: 'x', headers: { connection: 'authorization' } });
      // Read from the headers the origin would get: no credential, so refused (#28), nothing stored or forwarded.
      await expectProblem(res, 401, 'credential_missing');
    }
    expect(await originCalls(key)).toBe(0);
    // The credential's own record of this key is untouched: a normal request runs.
    expect((await sendWith({}, '/echo/conn-auth', { key, body: 'x' })).headers.get('idempotent-replay')).toBeNull();
  });
});

describe('a per-credential rate limit on keyed writes', () => {
  // The real Workers rate-limiting binding (miniflare), limit 3 per 60 s, bound under the proxy's name.
  const vars = { IDEMPOTENCY_RATE_LIMITER: (env as unknown as Record<string, unknown>)['TEST_RATE_LIMITER'] };

  it('answers 429 rate_limited with Retry-After past the limit, before any object is created', async () => {
    const auth = `Bearer limited-${newKey()}`;
    for (let i = 0; i < 3; i++) expect((await sendWith(vars, '/echo/limited', { key: newKey(), auth, body: 'x' })).status).toBe(200);
    const key = newKey();
    const res = await sendWith(vars, '/echo/limited', { key, auth, body: 'x' });
    expect(res.headers.get('retry-after')).toBe('60');
    await expectProblem(res, 429, 'rate_limited');
    expect(await originCalls(key)).toBe(0);
    // No table at all (not even the KV API's `_cf_KV`) and no KV key: nothing was written.
    const tables = await runInDurableObject(await recordStub(key, auth), (_, state) => [
      ...state.storage.sql.exec(`SELECT name FROM sqlite_master WHERE type = 'table'`).toArray(),
      ...state.storage.kv.list(),
    ]);
    expect(tables).toEqual([]);
    // Another credential is not limited, and writes without a key never count.
    expect((await sendWith(vars, '/echo/limited', { key: newKey(), auth: `Bearer other-${newKey()}`, body: 'x' })).status).toBe(200);
    expect((await sendWith(vars, '/echo/limited', { auth, body: 'x' })).status).toBe(200);
  });
});

describe('encoded separators under a base path', () => {
  it.each(['/..%2Fadmin', '/a%2fb', '/a%5Cb', '/a/%2e%2e%2Fadmin'])(
    'refuses %s with 400 path_invalid without calling the origin',
    async (path) => {
      const res = await sendWith({ ORIGIN_URL: `${originUrl}/echo/base` }, path, { method: 'GET' });
      await expectProblem(res, 400, 'path_invalid');
      expect(await originPathCalls(`/echo/base${path}`)).toBe(0);
    },
  );

  it('forwards them as they are when ORIGIN_URL has no path (nothing to leave)', async () => {
    const res = await sendWith({}, '/echo/a%2Fb', { method: 'GET' });
    expect(((await res.json()) as { url: string }).url).toBe('/echo/a%2Fb');
  });
});

describe('the object checks what it is given over RPC', () => {
  const spec = (overrides: Partial<Omit<AttemptSpec, 'origin'>> & { origin?: Partial<AttemptSpec['origin']> } = {}): AttemptSpec => ({
    fingerprint: 'fp',
    timeoutMs: 1000,
    leaseMs: 1000,
    ttlMs: 60_000,
    ...overrides,
    origin: { method: 'POST', url: `${originUrl}/echo/rpc`, headers: [], body: null, maxBodyBytes: 1024, ...overrides.origin },
  });

  it.each([
    ['a lease over 15 minutes', spec({ leaseMs: 16 * 60_000 })],
    ['a TTL over 30 days', spec({ ttlMs: 31 * 86_400_000 })],
    ['a wait longer than the lease', spec({ timeoutMs: 2000 })],
    ['a non-http origin', spec({ origin: { url: 'file:///etc/passwd' } })],
    ['a header name HTTP does not allow', spec({ origin: { headers: [['bad header', 'x']] } })],
    ['a header value with a line break', spec({ origin: { headers: [['x-a', 'a\r\nb']] } })],
    ['a body limit over 24 MiB', spec({ origin: { maxBodyBytes: 25 * 1024 * 1024 } })],
  ])('refuses %s, and stores nothing', async (_, bad) => {
    const key = newKey();
    const stub = await recordStub(key);
    await expect(stub.execute(bad)).rejects.toThrow(/IdempotencyRecord/);
    expect(await stub.inspect()).toBeNull();
  });

  it('refuses a handler result a Response could not replay, so no stored record fails on every replay', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const begun = await stub.begin({ fingerprint: 'fp', timeoutMs: 1000, leaseMs: 1000, ttlMs: 60_000 });
    if (begun.kind !== 'acquired') throw new Error('expected to acquire the key');
    const response = (status: number, headers: [string, string][] = []) => ({
      kind: 'response' as const,
      response: { status, headers, body: new ArrayBuffer(1) },
    });
    await expect(stub.complete(begun.attempt, response(99))).rejects.toThrow(/status/);
    await expect(stub.complete(begun.attempt, response(600))).rejects.toThrow(/status/);
    await expect(stub.complete(begun.attempt, response(200, [['x', 'a\nb']]))).rejects.toThrow(/header/);
    expect(await stub.inspect()).toMatchObject({ state: 'in_flight' });
    // A valid result is still accepted.
    await stub.complete(begun.attempt, response(201));
    expect(await stub.inspect()).toMatchObject({ state: 'complete', status: 201 });
  });
});

describe('LOG_HASH_SECRET', () => {
  it('turns the scope hash into an HMAC: without the secret, a guess of the credential cannot be checked against the logs', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    const auth = 'Basic dXNlcjpwYXNzd29yZA=='; // a weak password
    const key = newKey();
    await whole(sendWith({}, '/echo/log-plain', { key, auth, body: 'x' }));
    await whole(sendWith({ LOG_HASH_SECRET: 'a-long-random-secret-value' }, '/echo/log-keyed', { key, auth, body: 'x' }));
    const [plain, keyed] = lines.map((line) => JSON.parse(line) as { scope_hash: string; key_hash: string });
    const guess = (await sha256Hex(auth)).slice(0, 16);
    expect(plain!.scope_hash).toBe(guess);
    expect(keyed!.scope_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(keyed!.scope_hash).not.toBe(guess);
    // The key hash is the record's object id, which the platform derives from the name with a secret of its own:
    // it cannot be computed from a key, with or without LOG_HASH_SECRET.
    const objectId = (await recordStub(key, auth)).id.toString();
    expect(keyed!.key_hash).toBe(objectId.slice(0, 16));
    expect(plain!.key_hash).toBe(objectId.slice(0, 16));
    expect(plain!.key_hash).not.toBe((await sha256Hex(key)).slice(0, 16));
  });

  it('refuses a short secret, naming the variable and not the value', async () => {
    const body = await expectProblem(
      await sendWith({ LOG_HASH_SECRET: 'short' }, '/echo/x', { key: newKey(), body: 'x' }),
      500,
      'configuration_invalid',
    );
    expect(body.detail).toContain('LOG_HASH_SECRET');
    expect(body.detail).not.toContain('short');
  });
});

describe('a configuration error shows no configuration value', () => {
  it('names an unknown IDEMPOTENCY_JURISDICTION without echoing it', async () => {
    const res = await sendWith({ IDEMPOTENCY_JURISDICTION: 'mars-colony' }, '/echo/x', { key: newKey(), body: 'x' });
    expect(await codeOf(res.clone())).toBe('configuration_invalid');
    const text = await res.text();
    expect(text).toContain('IDEMPOTENCY_JURISDICTION');
    expect(text).not.toContain('mars-colony');
  });
});
