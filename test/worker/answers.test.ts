/**
 * Answers that real clients understand (issue #17): retry advice on every problem, the `error_object` envelope,
 * the conflict status, `Idempotency-Expires` on first answers and replays, and CORS for pages on listed origins.
 * Through the real proxy Worker, its real objects and the real counting origin.
 */
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../../src/middleware';
import { EXPOSED_HEADERS } from '../../src/middleware/answer';
import { PROBLEMS, type ProblemCode, problem } from '../../src/shared/problem';
import { codeOf, expectProblem, newHold, newKey, originCalls, release, send, sendWith, storedRecord, until } from './helpers';

const ERROR_OBJECT = { IDEMPOTENCY_ERROR_FORMAT: 'error_object' };
const CONFLICT_422 = { IDEMPOTENCY_CONFLICT_STATUS: '422' };
const PAGE = 'https://app.example.com';
const LISTED = { IDEMPOTENCY_CORS_ORIGINS: `https://other.example.org, ${PAGE}` };
const ANY = { IDEMPOTENCY_CORS_ORIGINS: '*' };
const SMALL = { MAX_BODY_BYTES: '1000' };
const DOWN = { ORIGIN_URL: 'http://127.0.0.1:9' };

/** The retry advice of an answer, as both SDK families read it. */
function advice(res: Response): string | null {
  expect(res.headers.get('stripe-should-retry')).toBe(res.headers.get('x-should-retry'));
  return res.headers.get('x-should-retry');
}

/** Sends the same keyed write twice with different bodies: the second is a reused key. */
async function reused(vars: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  const key = newKey();
  await (await sendWith(vars, '/echo/answers-reused', { key, body: 'one', headers })).arrayBuffer();
  return sendWith(vars, '/echo/answers-reused', { key, body: 'two', headers });
}

describe('retry advice', () => {
  it('is a yes or no for every code, and every problem says it in x-should-retry and Stripe-Should-Retry', async () => {
    const retryable = Object.entries(PROBLEMS)
      .filter(([, spec]) => spec.retry)
      .map(([code]) => code)
      .sort();
    // The codes where the same request may succeed later; every other one never will.
    expect(retryable).toEqual([
      'idempotency_key_in_progress',
      'idempotency_unavailable',
      'origin_timeout',
      'origin_unreachable',
      'rate_limited',
      'request_body_invalid',
    ]);
    for (const code of Object.keys(PROBLEMS) as ProblemCode[]) {
      expect(advice(problem(code, 'detail'))).toBe(String(PROBLEMS[code].retry));
    }
  });

  it('says false for a reused key, an invalid key and a response too large to store, and the origin runs once', async () => {
    expect(advice(await reused({}))).toBe('false');
    expect(advice(await send('/echo/answers-invalid', { key: 'a b', body: 'x' }))).toBe('false');
    const key = newKey();
    // The first client gets the whole answer; the retries hear it cannot be replayed.
    expect((await (await sendWith(SMALL, '/bytes/5000/answers-large', { key, body: 'x' })).arrayBuffer()).byteLength).toBe(5000);
    for (let i = 0; i < 2; i++) {
      const res = await sendWith(SMALL, '/bytes/5000/answers-large', { key, body: 'x' });
      await expectProblem(res.clone(), 502, 'response_too_large');
      expect(advice(res)).toBe('false');
    }
    expect(await originCalls(key)).toBe(1);
  });

  it('says true for an unreachable origin and a key in progress, with Retry-After and retry-after-ms', async () => {
    expect(advice(await sendWith(DOWN, '/echo/answers-down', { key: newKey(), body: 'x' }))).toBe('true');
    const key = newKey();
    const hold = newHold();
    const first = send(`/hold/${hold}/answers-in-progress`, { key, body: 'x' });
    await until(async () => (await originCalls(key)) === 1, 'the first request to reach the origin');
    // The origin holds the first request: the duplicate waits ORIGIN_TIMEOUT_MS (1.5 s), then hears it is still running.
    const duplicate = await send(`/hold/${hold}/answers-in-progress`, { key, body: 'x' });
    await expectProblem(duplicate.clone(), 409, 'idempotency_key_in_progress');
    expect(advice(duplicate)).toBe('true');
    const seconds = Number(duplicate.headers.get('retry-after'));
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(duplicate.headers.get('retry-after-ms')).toBe(String(seconds * 1000));
    await release(hold);
    await (await first).arrayBuffer();
  });

  it('says false on key API errors', async () => {
    const res = await send(`/_idempotency/keys/${newKey()}`, { method: 'GET' });
    await expectProblem(res.clone(), 404, 'idempotency_key_not_found');
    expect(advice(res)).toBe('false');
  });
});

describe('IDEMPOTENCY_ERROR_FORMAT = "error_object"', () => {
  it('answers a reused key in the { error } envelope that SDKs read', async () => {
    const res = await reused(ERROR_OBJECT);
    expect(res.status).toBe(409);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(['error']);
    expect(body.error).toEqual({
      type: 'idempotency_error',
      code: 'idempotency_key_reused',
      message: expect.stringContaining('different request'),
      status: 409,
    });
  });

  it('is followed by the key API and by configuration_invalid', async () => {
    const lookup = await sendWith(ERROR_OBJECT, `/_idempotency/keys/${newKey()}`, { method: 'GET' });
    expect(lookup.headers.get('content-type')).toBe('application/json');
    expect(await lookup.json()).toMatchObject({ error: { code: 'idempotency_key_not_found', status: 404 } });
    const broken = await sendWith({ ...ERROR_OBJECT, IDEMPOTENCY_TTL_SECONDS: 'soon' }, '/echo/x', { key: newKey(), body: 'x' });
    expect(broken.status).toBe(500);
    expect(broken.headers.get('content-type')).toBe('application/json');
    expect(await broken.json()).toMatchObject({ error: { code: 'configuration_invalid', status: 500 } });
  });

  it('is only what the default RFC 9457 problem document also carries (#28)', async () => {
    const body = await expectProblem(await reused({}), 409, 'idempotency_key_reused');
    // The members of RFC 9457, `code`, and the `error` member that stripe-node needs to raise at all.
    expect(Object.keys(body)).toEqual(['type', 'title', 'status', 'detail', 'code', 'error']);
    expect(body.error).toEqual({ type: 'idempotency_error', code: 'idempotency_key_reused', message: body.detail });
  });
});

describe('IDEMPOTENCY_CONFLICT_STATUS = "422"', () => {
  it('answers a reused key with 422 and only that code', async () => {
    const body = await expectProblem(await reused(CONFLICT_422), 422, 'idempotency_key_reused');
    expect(body.status).toBe(422);
    const res = await sendWith({ ...CONFLICT_422, ...ERROR_OBJECT }, `/_idempotency/keys/${newKey()}`, { method: 'GET' });
    expect(res.status).toBe(404);
  });
});

describe('Idempotency-Expires', () => {
  it('is on the first answer and on every replay, object and isolate cache alike, and is the stored expiry', async () => {
    const key = newKey();
    const answers: Response[] = [];
    for (let i = 0; i < 3; i++) answers.push(await send('/echo/answers-expires', { key, body: 'x' }));
    const expires = new Date((await storedRecord(key))!.expires_at).toUTCString();
    expect(answers.map((res) => [res.headers.get('idempotent-replay'), res.headers.get('idempotency-expires')])).toEqual([
      [null, expires],
      ['true', expires],
      ['true', expires],
    ]);
    expect(await originCalls(key)).toBe(1);
  });

  it('is not on an answer that is not stored (5xx): the key is free at once', async () => {
    const res = await send('/status/503/answers-not-stored', { key: newKey(), body: 'x' });
    expect(res.status).toBe(503);
    expect(res.headers.get('idempotency-expires')).toBeNull();
  });

  it('is on the first answer and replays of a handler in a Hono app', async () => {
    const app = new Hono();
    app.use(idempotency());
    app.post('/charge', (c) => c.json({ id: crypto.randomUUID() }, 201));
    const key = newKey();
    const headers = { authorization: 'Bearer app-user', 'idempotency-key': key };
    const first = await app.request('/charge', { method: 'POST', headers, body: 'x' }, env);
    const replay = await app.request('/charge', { method: 'POST', headers, body: 'x' }, env);
    const expires = first.headers.get('idempotency-expires');
    expect(expires).not.toBeNull();
    expect(Date.parse(expires!)).toBeGreaterThan(Date.now() + 86_000_000);
    expect(replay.headers.get('idempotency-expires')).toBe(expires);
  });
});

describe('IDEMPOTENCY_CORS_ORIGINS', () => {
  const cors = (res: Response) => ({
    allow: res.headers.get('access-control-allow-origin'),
    vary: res.headers.get('vary'),
    expose: res.headers.get('access-control-expose-headers'),
  });
  const readable = { allow: PAGE, vary: 'Origin', expose: EXPOSED_HEADERS };

  it('lets a listed page read problems, replays and key API answers; the first answer only gets the exposed headers', async () => {
    const headers = { origin: PAGE };
    expect(cors(await reused(LISTED, headers))).toEqual(readable);
    const key = newKey();
    const first = await sendWith(LISTED, '/echo/answers-cors', { key, body: 'x', headers });
    // The origin's own answer: whether the page may read it is the origin's decision (this one allows nobody).
    expect(cors(first)).toEqual({ allow: null, vary: null, expose: EXPOSED_HEADERS });
    for (let i = 0; i < 2; i++) expect(cors(await sendWith(LISTED, '/echo/answers-cors', { key, body: 'x', headers }))).toEqual(readable);
    const lookup = await sendWith(LISTED, `/_idempotency/keys/${key}`, { method: 'GET', headers });
    expect(lookup.status).toBe(200);
    expect(cors(lookup)).toEqual(readable);
    expect(cors(await sendWith(LISTED, `/_idempotency/keys/${newKey()}`, { method: 'GET', headers }))).toEqual(readable);
  });

  it('adds nothing for a page that is not listed, or when unset', async () => {
    const none = { allow: null, vary: null, expose: null };
    expect(cors(await reused(LISTED, { origin: 'https://evil.example' }))).toEqual(none);
    expect(cors(await reused({}, { origin: PAGE }))).toEqual(none);
    const key = newKey();
    for (let i = 0; i < 2; i++)
      expect(cors(await send('/echo/answers-no-cors', { key, body: 'x', headers: { origin: PAGE } }))).toEqual(none);
  });

  it('with "*" answers any page with its own origin, never a wildcard', async () => {
    expect(cors(await reused(ANY, { origin: 'https://anyone.example:8443' }))).toEqual({
      ...readable,
      allow: 'https://anyone.example:8443',
    });
    expect(cors(await reused(ANY))).toEqual({ allow: null, vary: null, expose: null });
  });

  it('leaves preflight OPTIONS requests to the origin', async () => {
    const res = await sendWith(LISTED, '/echo/answers-preflight', { method: 'OPTIONS', key: null, headers: { origin: PAGE } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { method: string }).method).toBe('OPTIONS');
  });
});

describe('configuration of the answers', () => {
  it.each([
    ['IDEMPOTENCY_ERROR_FORMAT', 'xml-please'],
    ['IDEMPOTENCY_CONFLICT_STATUS', '400'],
    ['IDEMPOTENCY_CONFLICT_STATUS', 'conflict'],
    ['IDEMPOTENCY_CORS_ORIGINS', 'app.example.net'],
    ['IDEMPOTENCY_CORS_ORIGINS', 'https://app.example.com/path'],
    ['IDEMPOTENCY_CORS_ORIGINS', 'ftp://files.example.com'],
  ])('refuses %s = %j with configuration_invalid naming the variable, never the value', async (name, value) => {
    const res = await sendWith({ [name]: value }, '/echo/x', { key: newKey(), body: 'x' });
    const body = await expectProblem(res, 500, 'configuration_invalid');
    expect(body.detail).toContain(name);
    expect(body.detail).not.toContain(value);
    expect(await codeOf(await sendWith({ [name]: value }, '/echo/x'))).toBe('configuration_invalid');
  });
});
