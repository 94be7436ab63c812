/**
 * `idempotency()` in handler mode, inside a Hono app of its own (as a user would write it), backed by
 * the real `IdempotencyRecord` class: the contract (bursts, replay, conflict, expiry), the weaker
 * in-process guarantee, options validation, and the log lines.
 */
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import type { RequestLog } from '../../src/middleware/log';
import { fingerprintRequest } from '../../src/middleware/fingerprint';
import { idempotency, type IdempotencyOptions } from '../../src/middleware';
import { answering, expectProblem, newKey, recordStub, storedRecord, until } from './helpers';

/** A ledger app whose handler counts its executions; a request with `hold: true` waits in the handler until `release()`. */
function ledgerApp(options: IdempotencyOptions = {}) {
  const runs = new Map<string, number>();
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const logs: RequestLog[] = [];
  let balance = 0;
  const app = new Hono();
  app.use('/api/*', idempotency({ reporter: { report: (entry) => logs.push(entry) }, logPassThrough: true, ...options }));
  app.post('/api/adjust', async (c) => {
    const { delta, hold } = await c.req.json<{ delta: number; hold?: boolean }>();
    const key = c.req.header('idempotency-key') ?? '';
    runs.set(key, (runs.get(key) ?? 0) + 1);
    if (hold) await gate;
    balance += delta;
    c.header('set-cookie', 'seen=1');
    c.header('set-cookie', 'again=2', { append: true });
    return c.json({ balance, id: crypto.randomUUID() }, 201);
  });
  app.post('/api/fail', () => {
    runs.set('fail', (runs.get('fail') ?? 0) + 1);
    throw new Error('handler failed');
  });
  app.get('/api/balance', (c) => c.json({ balance }));
  const request = (
    path: string,
    init: { key?: string; auth?: string | null; body?: unknown; method?: string; headers?: Record<string, string> } = {},
  ) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...init.headers };
    if (init.key !== undefined) headers['idempotency-key'] = init.key;
    if (init.auth !== null) headers['authorization'] = init.auth ?? 'Bearer app-user';
    const body = init.body === undefined ? null : JSON.stringify(init.body);
    return Promise.resolve(app.request(path, { method: init.method ?? 'POST', headers, body }, env));
  };
  return { app, runs, logs, request, balance: () => balance, release: () => release() };
}

describe('idempotency() in a Hono app (handler mode)', () => {
  it('runs the handler once and replays its answer, cookies included', async () => {
    const { request, runs, balance } = ledgerApp();
    const key = newKey();
    const first = await request('/api/adjust', { key, body: { delta: 500 } });
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replay')).toBeNull();
    const firstBody = await first.text();
    const replay = await request('/api/adjust', { key, body: { delta: 500 } });
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(replay.headers.getSetCookie()).toEqual(['seen=1', 'again=2']);
    expect(await replay.text()).toBe(firstBody);
    expect(runs.get(key)).toBe(1);
    expect(balance()).toBe(500);
  });

  it('answers 409 idempotency_key_reused to the same key with another body', async () => {
    const { request, runs } = ledgerApp();
    const key = newKey();
    await request('/api/adjust', { key, body: { delta: 1 } });
    const res = await request('/api/adjust', { key, body: { delta: 2 } });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { code: string }).code).toBe('idempotency_key_reused');
    expect(runs.get(key)).toBe(1);
  });

  it('runs the handler once for a burst of 30 concurrent duplicates; the others wait in the object', async () => {
    const { request, runs, balance, release } = ledgerApp();
    const key = newKey();
    const sent = Promise.all(Array.from({ length: 30 }, () => request('/api/adjust', { key, body: { delta: 10, hold: true } })));
    await until(() => (runs.get(key) ?? 0) > 0, 'the first request to reach the handler');
    release();
    const responses = await sent;
    const bodies = await Promise.all(responses.map((r) => r.text()));
    expect(responses.every((r) => r.status === 201)).toBe(true);
    expect(new Set(bodies).size).toBe(1);
    expect(responses.filter((r) => r.headers.get('idempotent-replay') === null)).toHaveLength(1);
    expect(runs.get(key)).toBe(1);
    expect(balance()).toBe(10);
  });

  it('lets the key run again after the TTL', async () => {
    const { request, runs } = ledgerApp({ ttlSeconds: 1, leaseMs: 500, timeoutMs: 500 });
    const key = newKey();
    await request('/api/adjust', { key, body: { delta: 1 } });
    expect((await request('/api/adjust', { key, body: { delta: 1 } })).headers.get('idempotent-replay')).toBe('true');
    const { expires_at: expiresAt } = (await storedRecord(key, 'Bearer app-user', 'app'))!;
    await until(() => Date.now() > expiresAt);
    expect((await request('/api/adjust', { key, body: { delta: 1 } })).headers.get('idempotent-replay')).toBeNull();
    expect(runs.get(key)).toBe(2);
  });

  it('does not store a handler that throws (500): the next request runs again', async () => {
    const { app, request, runs } = ledgerApp();
    app.onError(() => new Response('boom', { status: 500 }));
    const key = newKey();
    for (let i = 0; i < 2; i++) {
      const res = await request('/api/fail', { key, body: {} });
      // The handler's own 500 both times: not a replay, and not a 409 in_progress either.
      expect(res.status).toBe(500);
      expect(await res.text()).toBe('boom');
      expect(res.headers.get('idempotent-replay')).toBeNull();
    }
    expect(runs.get('fail')).toBe(2);
  });

  it('passes through requests without a key (with or without a credential) and reads; refuses a key without a credential', async () => {
    const { request, runs } = ledgerApp();
    await request('/api/adjust', { body: { delta: 1 } });
    await request('/api/adjust', { auth: null, body: { delta: 1 } });
    expect(runs.get('')).toBe(2);
    const key = newKey();
    await expectProblem(await request('/api/adjust', { key, auth: null, body: { delta: 1 } }), 401, 'credential_missing');
    expect(runs.get(key)).toBeUndefined();
    expect((await request('/api/balance', { method: 'GET', key })).status).toBe(200);
  });

  it('uses a custom scope and fingerprint', async () => {
    const { request, runs } = ledgerApp({ scope: (c) => c.req.header('x-tenant'), fingerprint: (_, body) => `length:${body.byteLength}` });
    const key = newKey();
    const tenant = (name: string | undefined, delta: number) =>
      request('/api/adjust', { key, auth: null, body: { delta }, headers: name ? { 'x-tenant': name } : {} });
    expect((await tenant('t1', 1)).headers.get('idempotent-replay')).toBeNull();
    // Same length, so the same custom fingerprint: a replay.
    expect((await tenant('t1', 2)).headers.get('idempotent-replay')).toBe('true');
    expect((await tenant('t2', 1)).headers.get('idempotent-replay')).toBeNull();
    // No scope: refused (#28), the handler does not run.
    await expectProblem(await tenant(undefined, 1), 401, 'credential_missing');
    expect(runs.get(key)).toBe(2);
  });

  it('answers replays from the object after the Worker that ran the handler is gone (shared storage)', async () => {
    const first = ledgerApp();
    const key = newKey();
    await first.request('/api/adjust', { key, body: { delta: 7 } });
    const second = ledgerApp(); // a different isolate-level app instance, same object
    const replay = await second.request('/api/adjust', { key, body: { delta: 7 } });
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(second.runs.get(key)).toBeUndefined();
  });
});

describe('idempotency(): the weaker in-process guarantee', () => {
  it('holds a key whose handler never reported back (Worker cut off) until the lease ends, then runs it again', async () => {
    const { request, runs } = ledgerApp({ leaseMs: 800, timeoutMs: 300 });
    const key = newKey();
    const body = { delta: 3 };
    // Simulate a Worker cut off mid-handler: acquire the key exactly as the middleware does, never complete.
    const stub = await recordStub(key, 'Bearer app-user', 'app');
    const fp = await fingerprintRequest('POST', '/api/adjust', new TextEncoder().encode(JSON.stringify(body)).buffer as ArrayBuffer);
    const begun = await stub.begin({ fingerprint: fp, timeoutMs: 300, leaseMs: 800, ttlMs: 86_400_000 });
    expect(begun.kind).toBe('acquired');

    const during = await request('/api/adjust', { key, body });
    expect(during.status).toBe(409);
    expect(((await during.json()) as { code: string }).code).toBe('idempotency_key_in_progress');
    expect(runs.get(key)).toBeUndefined();

    const { lease_until: leaseUntil } = (await storedRecord(key, 'Bearer app-user', 'app'))!;
    await until(() => Date.now() > leaseUntil);
    const after = await request('/api/adjust', { key, body });
    expect(after.status).toBe(201);
    expect(after.headers.get('idempotent-replay')).toBeNull();
    expect(runs.get(key)).toBe(1);
  });
});

describe('idempotency() on overlapping paths', () => {
  it('lets the first one registered take a request: the specific policy applies and the general one stays out', async () => {
    let runs = 0;
    const app = new Hono();
    app.use('/api/payments/*', idempotency({ fingerprint: 'json', required: true, reporter: false }));
    app.use('/api/*', idempotency({ reporter: false }));
    app.post('/api/payments/charge', async (c) => {
      runs++;
      return c.json({ charged: await c.req.json(), id: crypto.randomUUID() }, 201);
    });
    const charge = (body: string, key?: string) =>
      Promise.resolve(
        app.request(
          '/api/payments/charge',
          {
            method: 'POST',
            headers: { authorization: 'Bearer payer', 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
            body,
          },
          env,
        ),
      );
    const key = newKey();
    const first = await charge('{"amount":5,"currency":"eur"}', key);
    expect(first.status).toBe(201);
    // The same JSON in another key order: the payments route's json fingerprint makes it the same request.
    const again = await charge('{ "currency": "eur", "amount": 5 }', key);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replay')).toBe('true');
    expect(await again.text()).toBe(await first.text());
    expect(runs).toBe(1);
    await expectProblem(await charge('{"amount":5}'), 400, 'idempotency_key_missing');
    expect(runs).toBe(1);
  });
});

describe('idempotency() options', () => {
  it.each([
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ timeoutMs: 5000, leaseMs: 1000 }, /leaseMs/],
    [{ ttlSeconds: 0 }, /ttlSeconds/],
    [{ ttlSeconds: 1.5 }, /ttlSeconds/],
    [{ maxBodyBytes: 100 * 1024 * 1024 }, /maxBodyBytes/],
    [{ methods: [] }, /methods/],
    [{ headerName: 'Bad Header' }, /headerName/],
  ] as [IdempotencyOptions, RegExp][])('rejects %j at construction with a TypeError', (options, message) => {
    expect(() => idempotency(options)).toThrow(TypeError);
    expect(() => idempotency(options)).toThrow(message);
  });

  it('adapts defaults to what was set instead of refusing them', () => {
    expect(() => idempotency({ ttlSeconds: 60 })).not.toThrow();
    expect(() => idempotency({ leaseMs: 1000 })).not.toThrow();
    expect(() => idempotency({ timeoutMs: 200_000 })).not.toThrow();
  });

  it('lets onError replace problem responses', async () => {
    const { request } = ledgerApp({ onError: (p) => new Response(`custom ${p.code}`, { status: p.status }) });
    const res = await request('/api/adjust', { key: 'bad key', body: { delta: 1 } });
    expect(res.status).toBe(400);
    expect(await res.text()).toBe('custom idempotency_key_invalid');
  });
});

describe('idempotency() logs', () => {
  it('logs one line per request with the outcome, and never the key or credential in plaintext', async () => {
    const { request, logs } = ledgerApp();
    const key = `plain-key-${newKey()}`;
    await request('/api/adjust', { key, body: { delta: 1 } });
    await request('/api/adjust', { key, body: { delta: 1 } });
    await request('/api/adjust', { key, body: { delta: 2 } });
    await request('/api/adjust', { key: 'bad key', body: { delta: 1 } });
    await request('/api/balance', { method: 'GET' });
    expect(logs.map((l) => l.outcome)).toEqual(['executed', 'replayed', 'conflict', 'rejected', 'passthrough']);
    expect(logs.map((l) => l.status)).toEqual([201, 201, 409, 400, 200]);
    expect(logs[0]!.key_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(logs[0]!.key_hash).toBe(logs[1]!.key_hash);
    const text = JSON.stringify(logs);
    expect(text).not.toContain(key);
    expect(text).not.toContain('app-user');
  });
});

describe('idempotency(): what a handler answers is stored and replayed exactly', () => {
  /** An app whose handler answers what the test says, counting its runs. */
  it.each([204, 304])('replays a %i without a body', async (status) => {
    const app = answering(() => new Response(null, { status, headers: { etag: '"v1"' } }));
    const key = newKey();
    await app.request(key);
    const replay = await app.request(key);
    expect(replay.status).toBe(status);
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(replay.headers.get('etag')).toBe('"v1"');
    expect(replay.body).toBeNull();
    expect(app.runs()).toBe(1);
  });

  it("replays a handler's encoded body byte for byte, with its Content-Encoding", async () => {
    const compressed = await new Response(
      new Blob(['hello '.repeat(500)]).stream().pipeThrough(new CompressionStream('gzip')),
    ).arrayBuffer();
    const app = answering(
      () => new Response(compressed, { headers: { 'content-encoding': 'gzip', 'content-type': 'text/plain' }, encodeBody: 'manual' }),
    );
    const key = newKey();
    await app.request(key);
    const replay = await app.request(key);
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(replay.headers.get('content-encoding')).toBe('gzip');
    expect(new Uint8Array(await replay.arrayBuffer())).toEqual(new Uint8Array(compressed));
    expect(app.runs()).toBe(1);
  });

  it('answers 502 response_too_large, and never runs the key again, for headers over 256 KiB', async () => {
    const headers = new Headers();
    for (let i = 0; i < 300; i++) headers.append('x-big', 'h'.repeat(1024));
    const app = answering(() => new Response('ok', { headers }));
    const key = newKey();
    // The first client gets the handler's answer; it is not stored.
    expect(await (await app.request(key)).text()).toBe('ok');
    await expectProblem(await app.request(key), 502, 'response_too_large');
    await expectProblem(await app.request(key), 502, 'response_too_large');
    expect(app.runs()).toBe(1);
  });

  it('answers 502 response_too_large for a body whose declared length is over the limit, and for one that only grows past it', async () => {
    const declared = answering(() => new Response(new Uint8Array(2000)), { maxBodyBytes: 1000 });
    const declaredKey = newKey();
    // The first client gets the whole answer, streamed; the key then holds it as too large.
    expect((await (await declared.request(declaredKey)).arrayBuffer()).byteLength).toBe(2000);
    await expectProblem(await declared.request(declaredKey), 502, 'response_too_large');
    const streamed = answering(
      () =>
        new Response(
          new ReadableStream({
            start(controller) {
              for (let i = 0; i < 20; i++) controller.enqueue(new Uint8Array(100));
              controller.close();
            },
          }),
        ),
      { maxBodyBytes: 1000 },
    );
    const streamedKey = newKey();
    expect((await (await streamed.request(streamedKey)).arrayBuffer()).byteLength).toBe(2000);
    await expectProblem(await streamed.request(streamedKey), 502, 'response_too_large');
    expect([declared.runs(), streamed.runs()]).toEqual([1, 1]);
  });
});

describe('idempotency(): a request body that cannot be read', () => {
  // Without a length the body is read chunk by chunk; with one, in one read by the runtime: both fail the same way.
  it.each([
    ['its length undeclared', {}],
    ['its length declared', { 'content-length': '100' }],
  ])('answers 400 request_body_invalid when the body stream fails midway (%s), storing nothing and running nothing', async (_, length) => {
    let runs = 0;
    const app = new Hono();
    app.use(idempotency({ reporter: false }));
    app.post('*', (c) => c.text(`run ${++runs}`));
    const key = newKey();
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('partial'));
        controller.error(new Error('connection reset by the client'));
      },
    });
    const headers = { authorization: 'Bearer t', 'idempotency-key': key, ...length };
    const res = await app.request('/x', { method: 'POST', headers, body, duplex: 'half' } as RequestInit, env);
    await expectProblem(res, 400, 'request_body_invalid');
    expect(runs).toBe(0);
    expect(await storedRecord(key, 'Bearer t', 'app')).toBeUndefined();
  });
  it('answers 413 request_too_large for a body longer than the length it declared, running nothing', async () => {
    let runs = 0;
    const app = new Hono();
    app.use(idempotency({ reporter: false, maxBodyBytes: 1000 }));
    app.post('*', (c) => c.text(`run ${++runs}`));
    const key = newKey();
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new Uint8Array(2000));
        controller.close();
      },
    });
    const headers = { authorization: 'Bearer t', 'idempotency-key': key, 'content-length': '10' };
    const res = await app.request('/x', { method: 'POST', headers, body, duplex: 'half' } as RequestInit, env);
    await expectProblem(res, 413, 'request_too_large');
    expect(runs).toBe(0);
    expect(await storedRecord(key, 'Bearer t', 'app')).toBeUndefined();
  });
});
