/**
 * Issue #28: a keyed write without a credential is never silently unprotected. Without a scope its key cannot be kept
 * apart from other clients' keys, so it used to pass through and run on every retry (three sends, three runs, a
 * payment charged twice under `required: true`). Now it gets `401 credential_missing` before anything runs, in the
 * proxy (origin mode) and the middleware (handler mode) alike, `required` or not; `allowAnonymous` (the proxy's
 * `IDEMPOTENCY_ALLOW_ANONYMOUS`, a route's `allow_anonymous`) puts it in one shared anonymous scope instead.
 */
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { idempotency, type IdempotencyOptions } from '../../src/middleware';
import { expectProblem, newKey, originCalls, originPathCalls, sendWith, storedRecord, whole } from './helpers';

/** A payment route in handler mode that counts its runs. */
function payments(options: IdempotencyOptions) {
  let runs = 0;
  const app = new Hono();
  app.use('/payments/*', idempotency({ reporter: false, ...options }));
  app.post('/payments/charge', (c) => {
    runs++;
    return c.json({ charged: 500, run: runs }, 201);
  });
  const charge = (key: string | undefined, headers: Record<string, string> = {}) =>
    Promise.resolve(
      app.request(
        '/payments/charge',
        { method: 'POST', headers: { ...headers, ...(key === undefined ? {} : { 'idempotency-key': key }) }, body: '{"amount":500}' },
        env,
      ),
    );
  return { charge, runs: () => runs };
}

describe('idempotency() (handler mode): a keyed write without a credential', () => {
  for (const required of [true, false]) {
    it(`is refused with 401 credential_missing before the handler runs (required: ${required})`, async () => {
      const { charge, runs } = payments({ required });
      const key = newKey();
      for (let i = 0; i < 3; i++) {
        const res = await charge(key);
        expect(res.headers.get('x-should-retry')).toBe('false');
        expect(res.headers.get('www-authenticate')).toBe('Bearer');
        const body = await expectProblem(res, 401, 'credential_missing');
        expect(body.detail).toContain('none of the headers that scope keys (authorization)');
      }
      expect(runs()).toBe(0);
      // Nothing was stored under any scope, the anonymous one included.
      expect(await storedRecord(key, '', 'app', 'anonymous')).toBeUndefined();
    });
  }

  it('names a cookie scope as a cookie, and says when a custom scope found none', async () => {
    const cookie = payments({ scope: { headers: ['x-api-key', 'cookie:session'] } });
    const named = await expectProblem(await cookie.charge(newKey(), { cookie: 'other=1' }), 401, 'credential_missing');
    expect(named.detail).toContain('(x-api-key, the session cookie)');
    const custom = payments({ scope: (c) => c.req.header('x-tenant') ?? null });
    const none = await expectProblem(await custom.charge(newKey()), 401, 'credential_missing');
    expect(none.detail).toContain('the app found no scope');
    expect([cookie.runs(), custom.runs()]).toEqual([0, 0]);
  });

  it('without a key still passes through, as before', async () => {
    const { charge, runs } = payments({});
    expect((await charge(undefined)).status).toBe(201);
    expect((await charge(undefined)).status).toBe(201);
    expect(runs()).toBe(2);
  });

  it('with allowAnonymous runs once in the shared anonymous scope, apart from every credential', async () => {
    const { charge, runs } = payments({ allowAnonymous: true });
    const key = newKey();
    const first = await charge(key);
    expect(first.status).toBe(201);
    const replay = await charge(key);
    expect([replay.status, replay.headers.get('idempotent-replay')]).toEqual([201, 'true']);
    expect(runs()).toBe(1);
    // The same key under a credential is another key: the handler runs for it.
    expect((await charge(key, { authorization: 'Bearer t' })).headers.get('idempotent-replay')).toBeNull();
    expect(runs()).toBe(2);
    expect(await storedRecord(key, '', 'app', 'anonymous')).toMatchObject({ state: 'complete', status: 201 });
    // A custom scope that finds none is anonymous too.
    const custom = payments({ scope: () => undefined, allowAnonymous: true });
    await custom.charge(key);
    expect((await custom.charge(key)).headers.get('idempotent-replay')).toBe('true');
  });
});

describe('the proxy: a keyed write without a credential', () => {
  for (const vars of [{}, { REQUIRE_IDEMPOTENCY_KEY: 'true' }]) {
    it(`never reaches the origin: 401 credential_missing (${JSON.stringify(vars)})`, async () => {
      const key = newKey();
      for (let i = 0; i < 3; i++) {
        const res = await sendWith(vars, '/echo/no-credential', { key, auth: null, body: 'x' });
        expect(res.headers.get('x-should-retry')).toBe('false');
        expect((await expectProblem(res, 401, 'credential_missing')).detail).toContain('(authorization)');
      }
      expect(await originCalls(key)).toBe(0);
    });
  }

  it('names the scope headers the deployment uses', async () => {
    const res = await sendWith({ IDEMPOTENCY_SCOPE_HEADERS: 'x-api-key' }, '/echo/x', {
      key: newKey(),
      auth: 'Bearer not-the-scope',
      body: 'x',
    });
    expect((await expectProblem(res, 401, 'credential_missing')).detail).toContain('(x-api-key)');
  });

  it('without a key still passes through', async () => {
    const path = `/echo/unkeyed-anonymous-${newKey()}`;
    expect((await sendWith({}, path, { auth: null, body: 'x' })).status).toBe(200);
    expect((await sendWith({}, path, { auth: null, body: 'x' })).status).toBe(200);
    expect(await originPathCalls(path)).toBe(2);
  });

  it('with IDEMPOTENCY_ALLOW_ANONYMOUS runs once, and the key API finds it without a credential or as "anonymous"', async () => {
    const token = 'admin-token-for-tests-0123456789';
    const vars = { IDEMPOTENCY_ALLOW_ANONYMOUS: 'true', IDEMPOTENCY_ADMIN_TOKEN: token };
    const key = newKey();
    expect((await sendWith(vars, '/echo/anonymous', { key, auth: null, body: 'x' })).headers.get('idempotent-replay')).toBeNull();
    expect((await sendWith(vars, '/echo/anonymous', { key, auth: null, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
    // Apart from every credential's records: the anonymous record's name has its own kind of scope.
    expect(await storedRecord(key, '', 'proxy', 'anonymous')).toMatchObject({ state: 'complete' });
    expect(await storedRecord(key, '')).toBeUndefined();
    const lookup = await sendWith(vars, `/_idempotency/keys/${key}`, { method: 'GET', auth: null });
    expect(((await lookup.json()) as { state: string }).state).toBe('complete');
    const purge = await sendWith(vars, `/_idempotency/admin/keys/${key}`, {
      method: 'DELETE',
      auth: `Bearer ${token}`,
      headers: { 'idempotency-scope': 'anonymous' },
    });
    expect(purge.status).toBe(204);
    expect(await storedRecord(key, '', 'proxy', 'anonymous')).toBeUndefined();
    // Without the setting, a lookup without a credential is still refused.
    await expectProblem(await sendWith({}, `/_idempotency/keys/${key}`, { method: 'GET', auth: null }), 401, 'unauthorized');
  });

  it('a route with allow_anonymous opts in for its paths only', async () => {
    const vars = { IDEMPOTENCY_ROUTES: [{ pattern: '/echo/public/*', allow_anonymous: true }] };
    const key = newKey();
    await whole(sendWith(vars, '/echo/public/a', { key, auth: null, body: 'x' }));
    expect((await sendWith(vars, '/echo/public/a', { key, auth: null, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    await expectProblem(await sendWith(vars, '/echo/private/a', { key: newKey(), auth: null, body: 'x' }), 401, 'credential_missing');
    const bad = await expectProblem(
      await sendWith({ IDEMPOTENCY_ROUTES: [{ pattern: '/x/*', allow_anonymous: 'yes' }] }, '/x/a', { key: newKey(), body: 'x' }),
      500,
      'configuration_invalid',
    );
    expect(bad.detail).toContain('IDEMPOTENCY_ROUTES[0].allow_anonymous');
    expect(await originCalls(key)).toBe(1);
  });
});
