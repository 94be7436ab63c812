/**
 * Configuration: wrangler variables mapped to options, defaults that adapt to what was set, refusals that
 * name every variable involved and never a value, and each variable's effect on the proxy.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_BODY_BYTES_LIMIT } from '../../src/shared/limits';
import { ConfigError, readConfig } from '../../src/proxy/config';
import { codeOf, expectProblem, newKey, originCalls, originPathCalls, originUrl, sendWith, storedRecord, until } from './helpers';

afterEach(() => vi.restoreAllMocks());

const ORIGIN = 'https://api.example.com';

/** The variables a refused configuration names, and its message. */
function refusal(vars: Record<string, unknown>): ConfigError {
  try {
    readConfig(vars);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(vars)} to be refused`);
}

describe('readConfig()', () => {
  it('applies the documented defaults', () => {
    const config = readConfig({ ORIGIN_URL: 'https://api.example.com/v1/' });
    expect(config.origin).toMatchObject({ mode: 'url', basePath: '/v1' });
    expect(config.logRequests).toBe('keyed');
    expect(config.resolved).toMatchObject({
      ttlMs: 86_400_000,
      timeoutMs: 30_000,
      leaseMs: 120_000,
      maxBodyBytes: 10 * 1024 * 1024,
      required: false,
    });
  });

  it('adapts the defaults to what was set, so an untouched variable never makes the configuration invalid', () => {
    // A TTL shorter than the default lease: an attempt still running at the TTL keeps its key until its lease ends.
    expect(readConfig({ ORIGIN_URL: ORIGIN, IDEMPOTENCY_TTL_SECONDS: '3' }).resolved).toMatchObject({
      ttlMs: 3000,
      leaseMs: 120_000,
      timeoutMs: 30_000,
    });
    // A lease shorter than the default wait: the wait follows it.
    expect(readConfig({ ORIGIN_URL: ORIGIN, ORIGIN_LEASE_MS: '1000' }).resolved).toMatchObject({ leaseMs: 1000, timeoutMs: 1000 });
    // A wait longer than the default lease: the lease follows it.
    expect(readConfig({ ORIGIN_URL: ORIGIN, ORIGIN_TIMEOUT_MS: '200000' }).resolved).toMatchObject({
      leaseMs: 200_000,
      timeoutMs: 200_000,
    });
  });

  it.each([
    ['true', true, 'keyed'],
    ['1', true, 'keyed'],
    [' FALSE ', false, 'none'],
    ['0', false, 'none'],
    [true, true, 'keyed'],
  ])('reads REQUIRE_IDEMPOTENCY_KEY and LOG_REQUESTS %j', (raw, required, logging) => {
    const config = readConfig({ ORIGIN_URL: ORIGIN, REQUIRE_IDEMPOTENCY_KEY: raw, LOG_REQUESTS: raw });
    expect(config.resolved.required).toBe(required);
    expect(config.logRequests).toBe(logging);
  });

  it('reads LOG_REQUESTS "all" (every request, pass-through ones too)', () => {
    expect(readConfig({ ORIGIN_URL: ORIGIN, LOG_REQUESTS: 'all' }).logRequests).toBe('all');
  });

  it('resolves once: the options the middleware gets are those of readConfig, origin mode and logging included', () => {
    const config = readConfig({ ORIGIN_URL: ORIGIN, LOG_REQUESTS: 'false', IDEMPOTENCY_JURISDICTION: 'eu' });
    expect(config.resolved).toMatchObject({ reporter: false, jurisdiction: 'eu', run: { mode: 'origin' } });
    expect(readConfig({ ORIGIN_URL: ORIGIN, LOG_REQUESTS: 'all' }).resolved).toMatchObject({ logPassThrough: true, logRepeats: true });
    expect(() => readConfig({ ORIGIN_URL: ORIGIN, LOG_REQUESTS: 'keyed' })).toThrow(/LOG_REQUESTS must be "true", "all" or "false"/);
  });

  it('reads a TOML number as it reads a string', () => {
    expect(readConfig({ ORIGIN_URL: ORIGIN, IDEMPOTENCY_TTL_SECONDS: 60 }).resolved.ttlMs).toBe(60_000);
  });

  it.each([
    [{}, ['ORIGIN_URL']],
    [{ ORIGIN_URL: 'not a url' }, ['ORIGIN_URL']],
    [{ ORIGIN_URL: 'ftp://x.example' }, ['ORIGIN_URL']],
    [{ ORIGIN_URL: 'https://x.example/?q=1' }, ['ORIGIN_URL']],
    [{ ORIGIN_URL: 'https://x.example/#top' }, ['ORIGIN_URL']],
    [{ ORIGIN_URL: 'https://user:secret@x.example' }, ['ORIGIN_URL']],
    [{ ORIGIN_URL: ORIGIN, IDEMPOTENCY_TTL_SECONDS: '1e3' }, ['IDEMPOTENCY_TTL_SECONDS']],
    [{ ORIGIN_URL: ORIGIN, IDEMPOTENCY_TTL_SECONDS: '0' }, ['IDEMPOTENCY_TTL_SECONDS']],
    [{ ORIGIN_URL: ORIGIN, IDEMPOTENCY_TTL_SECONDS: String(30 * 86_400 + 1) }, ['IDEMPOTENCY_TTL_SECONDS']],
    [{ ORIGIN_URL: ORIGIN, ORIGIN_TIMEOUT_MS: '-5' }, ['ORIGIN_TIMEOUT_MS']],
    [{ ORIGIN_URL: ORIGIN, ORIGIN_TIMEOUT_MS: '5000', ORIGIN_LEASE_MS: '1000' }, ['ORIGIN_LEASE_MS', 'ORIGIN_TIMEOUT_MS']],
    [{ ORIGIN_URL: ORIGIN, MAX_BODY_BYTES: String(MAX_BODY_BYTES_LIMIT + 1) }, ['MAX_BODY_BYTES']],
    [{ ORIGIN_URL: ORIGIN, REQUIRE_IDEMPOTENCY_KEY: 'yes' }, ['REQUIRE_IDEMPOTENCY_KEY']],
    [{ ORIGIN_URL: ORIGIN, LOG_REQUESTS: 'sometimes' }, ['LOG_REQUESTS']],
    [{ ORIGIN_URL: ORIGIN, IDEMPOTENCY_ON_UNKNOWN: 'maybe' }, ['IDEMPOTENCY_ON_UNKNOWN']],
    [{ ORIGIN_URL: ORIGIN, IDEMPOTENCY_ON_UNKNOWN: 'reconcile' }, ['IDEMPOTENCY_RECONCILE_URL', 'IDEMPOTENCY_ON_UNKNOWN']],
    [{ ORIGIN_URL: ORIGIN, IDEMPOTENCY_RECONCILE_URL: '/r/{key}' }, ['IDEMPOTENCY_RECONCILE_URL', 'IDEMPOTENCY_ON_UNKNOWN']],
  ])('refuses %j naming %j', (vars, variables) => {
    const error = refusal(vars);
    expect(error.variables).toEqual(variables);
    for (const variable of variables) expect(error.message).toContain(variable);
  });
});

describe('configuration through the proxy', () => {
  it('answers 500 configuration_invalid naming the variable, without its value or a stack trace', async () => {
    const secretHost = `internal-${newKey()}.corp.example`;
    const cases: [Record<string, string>, string, string][] = [
      [{ ORIGIN_TIMEOUT_MS: 'soon' }, 'ORIGIN_TIMEOUT_MS', 'soon'],
      [{ ORIGIN_URL: `ftp://${secretHost}/` }, 'ORIGIN_URL', secretHost],
      [{ ORIGIN_URL: `https://admin:hunter2@${secretHost}/` }, 'ORIGIN_URL', 'hunter2'],
    ];
    for (const [vars, variable, value] of cases) {
      const body = await expectProblem(await sendWith(vars, '/echo/cfg', { key: newKey(), body: 'x' }), 500, 'configuration_invalid');
      expect(body.detail).toContain(variable);
      expect(JSON.stringify(body)).not.toContain(value);
      expect(JSON.stringify(body)).not.toMatch(/at \w+ \(|\.ts:\d+/);
    }
  });

  it('IDEMPOTENCY_TTL_SECONDS alone (shorter than the default lease) gives a working proxy whose keys expire after the TTL', async () => {
    const vars = { IDEMPOTENCY_TTL_SECONDS: '2', ORIGIN_TIMEOUT_MS: undefined, ORIGIN_LEASE_MS: undefined };
    const key = newKey();
    expect((await sendWith(vars, '/echo/short-ttl', { key, body: 'x' })).status).toBe(200);
    expect((await sendWith(vars, '/echo/short-ttl', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    // Wait for the expiry the object stored, not a guessed time.
    const { expires_at: expiresAt } = (await storedRecord(key))!;
    await until(() => Date.now() > expiresAt);
    const again = await sendWith(vars, '/echo/short-ttl', { key, body: 'x' });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(await originCalls(key)).toBe(2);
  });

  it('REQUIRE_IDEMPOTENCY_KEY=true: a write without a key gets 400 idempotency_key_missing; reads still pass', async () => {
    const path = `/echo/${newKey()}`;
    await expectProblem(await sendWith({ REQUIRE_IDEMPOTENCY_KEY: 'true' }, path, { body: 'x' }), 400, 'idempotency_key_missing');
    expect(await originPathCalls(path)).toBe(0);
    expect((await sendWith({ REQUIRE_IDEMPOTENCY_KEY: 'true' }, path, { method: 'GET' })).status).toBe(200);
  });

  it('MAX_BODY_BYTES: one byte over is 413 request_too_large, with or without Content-Length; the limit itself passes', async () => {
    const vars = { MAX_BODY_BYTES: '1000' };
    const key = newKey();
    await expectProblem(await sendWith(vars, '/echo/limit', { key, body: new Uint8Array(1001) }), 413, 'request_too_large');
    // A streamed body has no Content-Length: the limit is enforced while reading.
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 11; i++) controller.enqueue(new Uint8Array(100));
        controller.close();
      },
    });
    await expectProblem(await sendWith(vars, '/echo/limit', { key, body: stream }), 413, 'request_too_large');
    expect(await originCalls(key)).toBe(0);
    expect((await sendWith(vars, '/echo/limit', { key, body: new Uint8Array(1000) })).status).toBe(200);
    expect(await originCalls(key)).toBe(1);
    // Writes without a key are held to the same limit.
    const path = `/echo/${newKey()}`;
    await expectProblem(await sendWith(vars, path, { body: new Uint8Array(1001) }), 413, 'request_too_large');
    expect(await originPathCalls(path)).toBe(0);
  });

  it('ORIGIN_URL with a base path: the request path is appended under it', async () => {
    const res = await sendWith({ ORIGIN_URL: `${originUrl}/echo` }, '/under/base?q=1', { method: 'GET' });
    expect(((await res.json()) as { url: string }).url).toBe('/echo/under/base?q=1');
  });

  it('answers 502 origin_unreachable when the origin refuses connections, and stores nothing', async () => {
    const key = newKey();
    // The test origin's /refuse path closes the connection without an answer.
    const vars = { ORIGIN_URL: `${originUrl}/refuse` };
    for (let i = 0; i < 2; i++) expect(await codeOf(await sendWith(vars, '/down', { key, body: 'x' }))).toBe('origin_unreachable');
    expect(await codeOf(await sendWith(vars, '/down', { method: 'GET' }))).toBe('origin_unreachable');
  });

  it('logs which origin it could not reach, keyed or not, and never says it to the client (#28)', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: unknown) => void lines.push(String(line)));
    // Nothing listens on port 9 (discard): the proxy's own default port being busy elsewhere would look the same.
    const vars = { ORIGIN_URL: 'http://127.0.0.1:9/api' };
    for (const init of [{ key: newKey(), body: 'x' }, { method: 'GET' }]) {
      const body = await expectProblem(await sendWith(vars, '/down', init), 502, 'origin_unreachable');
      expect(body.detail).not.toContain('127.0.0.1');
    }
    const logged = lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line['event'] === 'origin_unreachable');
    expect(logged).toEqual([
      { event: 'origin_unreachable', origin: 'http://127.0.0.1:9' },
      { event: 'origin_unreachable', origin: 'http://127.0.0.1:9' },
    ]);
  });
});
