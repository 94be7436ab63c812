/**
 * Per-route policy (`IDEMPOTENCY_ROUTES`), JSON-aware fingerprints, data residency and placement, and the
 * proxy deployed on the API's own route (`ORIGIN_URL = "request"`), issue #13.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import {
  type ProblemBody,
  expectProblem,
  newKey,
  originCalls,
  originPathCalls,
  originUrl,
  recordStub,
  sendTo,
  sendWith,
  storedRecord,
  until,
  whole,
} from './helpers';

const ROUTES = [
  { pattern: '/pay/*', mode: 'required', ttl_seconds: 2_592_000 },
  { pattern: '/hooks/*', ttl_seconds: 1, timeout_ms: 500, lease_ms: 500 },
  { pattern: '/search/*', mode: 'off' },
  { pattern: '/json/:id/submit', fingerprint: 'json', ignore_fields: ['/client_timestamp', '/meta/trace_id'] },
  { pattern: '/json/*', methods: ['POST'], mode: 'required' },
];
/** The table as wrangler passes a TOML array of tables under [vars]: an array of objects. */
const vars = { IDEMPOTENCY_ROUTES: ROUTES };

describe('IDEMPOTENCY_ROUTES', () => {
  it('a "required" route answers a write without a key with 400 and never calls the origin; other paths keep the globals', async () => {
    const path = `/echo/pay/${newKey()}`;
    await expectProblem(await sendWith(vars, `/pay/${newKey()}`, { body: 'x' }), 400, 'idempotency_key_missing');
    expect((await sendWith(vars, path, { body: 'x' })).status).toBe(200);
    expect(await originPathCalls(path)).toBe(1);
  });

  it('an "off" route forwards the key and calls the origin every time, storing nothing', async () => {
    const key = newKey();
    for (let i = 0; i < 2; i++) {
      const res = await sendWith({ ...vars, ORIGIN_URL: `${originUrl}/echo` }, `/search/q`, { key, body: 'same' });
      expect(res.headers.get('idempotent-replay')).toBeNull();
      expect(((await res.json()) as { headers: Record<string, string> }).headers['idempotency-key']).toBe(key);
    }
    expect(await originCalls(key)).toBe(2);
    expect(await storedRecord(key)).toBeUndefined();
  });

  it('a "json" route replays a re-serialised body with reordered keys, other white space and a changed ignored field', async () => {
    const key = newKey();
    const route = { ...vars, ORIGIN_URL: `${originUrl}/echo` };
    const send = (body: string) => sendWith(route, '/json/42/submit', { key, body, headers: { 'content-type': 'application/json' } });
    expect((await send('{"amount":500,"currency":"EUR","client_timestamp":1,"meta":{"trace_id":"a","tenant":"t"}}')).status).toBe(200);
    const replay = await send('{ "meta": { "tenant": "t", "trace_id": "b" },\n  "client_timestamp": 2, "currency": "EUR", "amount": 500 }');
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
    // A field that counts changed: a different request.
    await expectProblem(
      await send('{"amount":501,"currency":"EUR","client_timestamp":3,"meta":{"trace_id":"c","tenant":"t"}}'),
      409,
      'idempotency_key_reused',
    );
    // Numbers are compared by value as RFC 8785 serialises them: 5e2 is 500.
    expect((await send('{"amount":5e2,"currency":"EUR","meta":{"tenant":"t"}}')).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('a "json" route falls back to the exact bytes for a body that is not JSON', async () => {
    const key = newKey();
    const route = { ...vars, ORIGIN_URL: `${originUrl}/echo` };
    await whole(sendWith(route, '/json/7/submit', { key, body: 'not json' }));
    expect((await sendWith(route, '/json/7/submit', { key, body: 'not json' })).headers.get('idempotent-replay')).toBe('true');
    await expectProblem(await sendWith(route, '/json/7/submit', { key, body: 'not  json' }), 409, 'idempotency_key_reused');
  });

  it('the first route that matches decides, by pattern and method', async () => {
    const route = { ...vars, ORIGIN_URL: `${originUrl}/echo` };
    // /json/9/submit matches the json route first: keys are optional there.
    expect((await sendWith(route, '/json/9/submit', { body: '{}' })).status).toBe(200);
    // /json/other matches only the required route.
    await expectProblem(await sendWith(route, '/json/other', { body: '{}' }), 400, 'idempotency_key_missing');
    // PUT is not among that route's methods: the globals apply (keys optional).
    expect((await sendWith(route, '/json/other', { method: 'PUT', body: '{}' })).status).toBe(200);
  });

  it("a route's TTL expires its keys while the global TTL still holds others", async () => {
    const route = { ...vars, ORIGIN_URL: `${originUrl}/echo` };
    const [short, long] = [newKey(), newKey()];
    await whole(sendWith(route, '/hooks/h', { key: short, body: 'x' }));
    await whole(sendWith(route, '/other/o', { key: long, body: 'x' }));
    const { expires_at: expiresAt } = (await storedRecord(short))!;
    expect((await storedRecord(long))!.expires_at - expiresAt).toBeGreaterThan(86_000_000);
    await until(() => Date.now() > expiresAt);
    expect((await sendWith(route, '/hooks/h', { key: short, body: 'x' })).headers.get('idempotent-replay')).toBeNull();
    expect((await sendWith(route, '/other/o', { key: long, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect([await originCalls(short), await originCalls(long)]).toEqual([2, 1]);
  });

  it('reads the table from a JSON string as from a TOML array', async () => {
    await expectProblem(
      await sendWith({ IDEMPOTENCY_ROUTES: JSON.stringify(ROUTES) }, `/pay/${newKey()}`, { body: 'x' }),
      400,
      'idempotency_key_missing',
    );
  });

  it.each([
    [[{ pattern: '/a/*', ttl_seconds: 'soon' }], 'IDEMPOTENCY_ROUTES[0].ttl_seconds'],
    [[{ pattern: '/a/*' }, { pattern: '/b/*', ttl_seconds: 0 }], 'IDEMPOTENCY_ROUTES[1].ttl_seconds'],
    [[{ pattern: 'no-slash' }], 'IDEMPOTENCY_ROUTES[0].pattern'],
    [[{ pattern: '/a/*', mode: 'sometimes' }], 'IDEMPOTENCY_ROUTES[0].mode'],
    [[{ pattern: '/a/*', fingerprint: 'xml' }], 'IDEMPOTENCY_ROUTES[0].fingerprint'],
    [[{ pattern: '/a/*', ignore_fields: ['/x'] }], 'IDEMPOTENCY_ROUTES[0].ignore_fields'],
    [[{ pattern: '/a/*', fingerprint: 'json', ignore_fields: ['no-slash'] }], 'IDEMPOTENCY_ROUTES[0].ignore_fields'],
    [[{ pattern: '/a/*', ttl: 5 }], 'IDEMPOTENCY_ROUTES[0].ttl'],
    [[{ pattern: '/a/*', methods: [] }], 'IDEMPOTENCY_ROUTES[0].methods'],
    [[{ pattern: '/a/*', methods: ['PO ST'] }], 'IDEMPOTENCY_ROUTES[0].methods'],
    [[{ pattern: '/a/*', methods: 'POST' }], 'IDEMPOTENCY_ROUTES[0].methods'],
    [[{ pattern: '/a/*', on_unknown: 'sometimes' }], 'IDEMPOTENCY_ROUTES[0].on_unknown'],
    [[{ pattern: '/a/*', on_unknown: 'hold', reconcile_url: '/r/{key}' }], 'IDEMPOTENCY_ROUTES[0].reconcile_url'],
    [[{ pattern: '/a/*', reconcile_url: '/r/{key}' }], 'IDEMPOTENCY_ROUTES[0].reconcile_url'],
    [[{ pattern: '/a/*', on_unknown: 'reconcile' }], 'IDEMPOTENCY_ROUTES[0].on_unknown'],
    [[{ pattern: '/a/*', on_unknown: 'reconcile', reconcile_url: 'https://elsewhere/{key}' }], 'IDEMPOTENCY_ROUTES[0].reconcile_url'],
    ['[{"pattern": ', 'IDEMPOTENCY_ROUTES'],
  ])('refuses an invalid table %j, naming %s', async (table, field) => {
    const body = await expectProblem(
      await sendWith({ IDEMPOTENCY_ROUTES: table }, '/a/x', { method: 'GET' }),
      500,
      'configuration_invalid',
    );
    expect(body.detail).toContain(field);
  });

  it("names both sides when a route's value contradicts a global one the user set, and adapts defaults otherwise", async () => {
    const table = [{ pattern: '/a/*', lease_ms: 1000 }];
    const body = await expectProblem(
      await sendWith({ IDEMPOTENCY_ROUTES: table, ORIGIN_TIMEOUT_MS: '5000', ORIGIN_LEASE_MS: undefined }, '/a/x', { method: 'GET' }),
      500,
      'configuration_invalid',
    );
    expect(body.detail).toContain('IDEMPOTENCY_ROUTES[0].lease_ms');
    expect(body.detail).toContain('ORIGIN_TIMEOUT_MS');
    // The global wait was not set: it adapts to the route's lease.
    expect(
      (
        await sendWith(
          { IDEMPOTENCY_ROUTES: table, ORIGIN_TIMEOUT_MS: undefined, ORIGIN_LEASE_MS: undefined, ORIGIN_URL: `${originUrl}/echo` },
          '/a/x',
          { key: newKey(), body: 'x' },
        )
      ).status,
    ).toBe(200);
  });
});

/**
 * The real namespace seen through a stand-in for the platform's jurisdictions and placement (workerd has
 * neither): it records the jurisdiction asked for and the options of every `get`, in the jurisdiction or not.
 */
function platformEdge() {
  const seen = { jurisdictions: [] as string[], gets: [] as { jurisdiction: string | undefined; options: unknown }[] };
  const real = env.IDEMPOTENCY;
  const namespace = (jurisdiction?: string) =>
    ({
      idFromName: (name: string) => real.idFromName(name),
      get: (id: DurableObjectId, options?: DurableObjectNamespaceGetDurableObjectOptions) => {
        seen.gets.push({ jurisdiction, options });
        return real.get(id);
      },
      jurisdiction: (name: DurableObjectJurisdiction) => {
        seen.jurisdictions.push(name);
        return namespace(name);
      },
    }) as unknown as DurableObjectNamespace;
  return { namespace: namespace(), seen };
}

describe('data residency and placement', () => {
  it('creates every record object in IDEMPOTENCY_JURISDICTION (shown at the binding edge, the one stand-in for the platform)', async () => {
    const { namespace, seen } = platformEdge();
    const vars = { IDEMPOTENCY: namespace, IDEMPOTENCY_JURISDICTION: 'eu' };
    const key = newKey();
    await whole(sendWith(vars, '/echo/eu', { key, body: 'x' }));
    await whole(sendWith(vars, '/echo/eu', { key, body: 'y' }));
    await whole(sendWith(vars, `/_idempotency/keys/${key}`, { method: 'GET' }));
    // Every object (the writes', the lookup's) was reached through the jurisdiction's namespace, never outside it.
    expect(new Set(seen.jurisdictions)).toEqual(new Set(['eu']));
    expect(seen.gets.length).toBeGreaterThanOrEqual(3);
    expect(seen.gets.every((get) => get.jurisdiction === 'eu')).toBe(true);
  });

  it('places new objects by IDEMPOTENCY_LOCATION_HINT, and refuses an unknown hint', async () => {
    const { namespace, seen } = platformEdge();
    expect(
      (await sendWith({ IDEMPOTENCY: namespace, IDEMPOTENCY_LOCATION_HINT: 'weur' }, '/echo/hint', { key: newKey(), body: 'x' })).status,
    ).toBe(200);
    expect(seen.gets).toEqual([{ jurisdiction: undefined, options: { locationHint: 'weur' } }]);
    // Locally the hint is accepted by the real binding and ignored.
    expect((await sendWith({ IDEMPOTENCY_LOCATION_HINT: 'enam' }, '/echo/hint', { key: newKey(), body: 'x' })).status).toBe(200);
    const body = await expectProblem(
      await sendWith({ IDEMPOTENCY_LOCATION_HINT: 'moon' }, '/echo/hint', { method: 'GET' }),
      500,
      'configuration_invalid',
    );
    expect(body.detail).toContain('IDEMPOTENCY_LOCATION_HINT');
  });

  it('fails closed on a runtime without jurisdictions: keyed writes are refused naming IDEMPOTENCY_JURISDICTION, nothing runs or is stored', async () => {
    const vars = { IDEMPOTENCY_JURISDICTION: 'eu' };
    const key = newKey();
    const body: ProblemBody = await expectProblem(await sendWith(vars, '/echo/no-eu', { key, body: 'x' }), 500, 'configuration_invalid');
    expect(body.detail).toContain('IDEMPOTENCY_JURISDICTION');
    expect(await originCalls(key)).toBe(0);
    // Never a silent fall back to an unpinned namespace: the object the key would have outside the jurisdiction is untouched.
    expect(await (await recordStub(key)).inspect()).toBeNull();
    // Requests that store nothing are not affected.
    expect((await sendWith(vars, '/echo/no-eu', { method: 'GET' })).status).toBe(200);
  });

  it('fails closed the same where the runtime refuses a jurisdiction only once a name is used in it (binding-edge stand-in)', async () => {
    const real = env.IDEMPOTENCY;
    const refusing = {
      idFromName: () => {
        throw new Error('jurisdiction not supported here');
      },
    };
    const namespace = {
      idFromName: (name: string) => real.idFromName(name),
      get: (id: DurableObjectId) => real.get(id),
      jurisdiction: () => refusing,
    };
    const key = newKey();
    const res = await sendWith({ IDEMPOTENCY: namespace, IDEMPOTENCY_JURISDICTION: 'eu' }, '/echo/no-eu', { key, body: 'x' });
    expect((await expectProblem(res, 500, 'configuration_invalid')).detail).toContain('IDEMPOTENCY_JURISDICTION');
    expect(await originCalls(key)).toBe(0);
  });
});

describe('ORIGIN_URL = "request": forwarding to the request\'s own URL', () => {
  it("forwards to the request's own URL with the proxy's Via entry", async () => {
    const key = newKey();
    const res = await sendTo({ ORIGIN_URL: 'request', ORIGIN_HOSTS: originUrl }, `${originUrl}/echo/own-route?q=1`, {
      key,
      body: 'x',
      headers: { via: '1.1 cdn' },
    });
    const seen = (await res.json()) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe('/echo/own-route?q=1');
    expect(seen.headers['via']).toBe('1.1 cdn, 1.1 idempotency-proxy');
    expect(
      (await sendTo({ ORIGIN_URL: 'request', ORIGIN_HOSTS: originUrl }, `${originUrl}/echo/own-route?q=1`, { key, body: 'x' })).headers.get(
        'idempotent-replay',
      ),
    ).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('answers a request that already carries its mark with 508 loop_detected, never forwarding it', async () => {
    const key = newKey();
    for (const init of [{ key, body: 'x' }, { method: 'GET' }]) {
      const res = await sendTo({ ORIGIN_URL: 'request', ORIGIN_HOSTS: originUrl }, `${originUrl}/echo/loop`, {
        ...init,
        headers: { via: '1.0 edge, 1.1 idempotency-proxy' },
      });
      await expectProblem(res, 508, 'loop_detected');
    }
    expect(await originPathCalls('/echo/loop')).toBe(0);
  });

  it('keeps a normal ORIGIN_URL exactly as before: no Via added', async () => {
    const seen = (await (await sendWith({}, '/echo/no-via', { method: 'GET' })).json()) as { headers: Record<string, string> };
    expect(seen.headers['via']).toBeUndefined();
  });
});
