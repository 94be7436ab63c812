/** Configuration: defaults, validation naming the variable, and each variable's effect on the proxy. */
import { describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES_LIMIT, parseConfig } from '../../src/core/config';
import { newKey, originCalls, originPathCalls, problemOf, sendWith } from './helpers';

describe('parseConfig()', () => {
  it('applies the documented defaults', () => {
    expect(parseConfig({ ORIGIN_URL: 'https://api.example.com/v1/' })).toMatchObject({
      originBasePath: '/v1',
      ttlMs: 86_400_000,
      originTimeoutMs: 30_000,
      leaseMs: 120_000,
      maxBodyBytes: 10 * 1024 * 1024,
      requireKey: false,
    });
  });

  it.each([
    [{}, 'ORIGIN_URL'],
    [{ ORIGIN_URL: 'not a url' }, 'ORIGIN_URL'],
    [{ ORIGIN_URL: 'ftp://x.example' }, 'ORIGIN_URL'],
    [{ ORIGIN_URL: 'https://x.example/?q=1' }, 'ORIGIN_URL'],
    [{ ORIGIN_URL: 'https://x.example', IDEMPOTENCY_TTL_SECONDS: '1e3' }, 'IDEMPOTENCY_TTL_SECONDS'],
    [{ ORIGIN_URL: 'https://x.example', IDEMPOTENCY_TTL_SECONDS: '0' }, 'IDEMPOTENCY_TTL_SECONDS'],
    [{ ORIGIN_URL: 'https://x.example', ORIGIN_TIMEOUT_MS: '-5' }, 'ORIGIN_TIMEOUT_MS'],
    [{ ORIGIN_URL: 'https://x.example', ORIGIN_TIMEOUT_MS: '5000', ORIGIN_LEASE_MS: '1000' }, 'ORIGIN_LEASE_MS'],
    [{ ORIGIN_URL: 'https://x.example', IDEMPOTENCY_TTL_SECONDS: '60' }, 'ORIGIN_LEASE_MS'],
    [{ ORIGIN_URL: 'https://x.example', MAX_BODY_BYTES: String(MAX_BODY_BYTES_LIMIT + 1) }, 'MAX_BODY_BYTES'],
    [{ ORIGIN_URL: 'https://x.example', REQUIRE_IDEMPOTENCY_KEY: 'yes' }, 'REQUIRE_IDEMPOTENCY_KEY'],
  ])('rejects %j naming %s', (vars, variable) => {
    expect(parseConfig(vars)).toMatchObject({ variable });
  });
});

describe('configuration through the proxy', () => {
  it('answers 500 configuration_invalid naming the variable, without a stack trace', async () => {
    const res = await sendWith({ ORIGIN_TIMEOUT_MS: 'soon' }, '/echo/cfg', { key: newKey(), body: 'x' });
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const body = await problemOf(res);
    expect(body.code).toBe('configuration_invalid');
    expect(body.detail).toContain('ORIGIN_TIMEOUT_MS');
    expect(JSON.stringify(body)).not.toMatch(/at \w+ \(|\.ts:\d+/);
  });

  it('REQUIRE_IDEMPOTENCY_KEY=true: a write without a key gets 400 idempotency_key_missing; reads still pass', async () => {
    const path = `/echo/${newKey()}`;
    const res = await sendWith({ REQUIRE_IDEMPOTENCY_KEY: 'true' }, path, { body: 'x' });
    expect(res.status).toBe(400);
    expect((await problemOf(res)).code).toBe('idempotency_key_missing');
    expect(await originPathCalls(path)).toBe(0);
    expect((await sendWith({ REQUIRE_IDEMPOTENCY_KEY: 'true' }, path, { method: 'GET' })).status).toBe(200);
  });

  it('13. MAX_BODY_BYTES: one byte over is 413 request_too_large, with or without Content-Length; the limit itself passes', async () => {
    const vars = { MAX_BODY_BYTES: '1000' };
    const key = newKey();
    const over = await sendWith(vars, '/echo/limit', { key, body: new Uint8Array(1001) });
    expect(over.status).toBe(413);
    expect((await problemOf(over)).code).toBe('request_too_large');
    // A streamed body has no Content-Length: the limit is enforced while reading.
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 11; i++) controller.enqueue(new Uint8Array(100));
        controller.close();
      },
    });
    const streamed = await sendWith(vars, '/echo/limit', { key, body: stream });
    expect(streamed.status).toBe(413);
    expect(await originCalls(key)).toBe(0);
    expect((await sendWith(vars, '/echo/limit', { key, body: new Uint8Array(1000) })).status).toBe(200);
    expect(await originCalls(key)).toBe(1);
  });

  it('ORIGIN_URL with a base path: the request path is appended under it', async () => {
    const { originUrl } = await import('./helpers');
    const res = await sendWith({ ORIGIN_URL: `${originUrl}/echo` }, '/under/base?q=1', { method: 'GET' });
    expect(((await res.json()) as { url: string }).url).toBe('/echo/under/base?q=1');
  });

  it('answers 502 origin_unreachable when nothing listens at ORIGIN_URL, and stores nothing', async () => {
    const key = newKey();
    const vars = { ORIGIN_URL: 'http://127.0.0.1:9' };
    for (let i = 0; i < 2; i++) {
      const res = await sendWith(vars, '/down', { key, body: 'x' });
      expect(res.status).toBe(502);
      expect((await problemOf(res)).code).toBe('origin_unreachable');
    }
    const passthrough = await sendWith(vars, '/down', { method: 'GET' });
    expect((await problemOf(passthrough)).code).toBe('origin_unreachable');
  });
});
