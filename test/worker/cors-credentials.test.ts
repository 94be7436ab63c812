/**
 * Issue #29, finding 9: with `IDEMPOTENCY_CORS_ORIGINS = "*"` the layer echoes any page's origin on the answers it
 * produces itself, so it must never pair that origin with allowed credentials: a replay drops the
 * `Access-Control-Allow-Credentials` stored with the origin's answer. A listed origin keeps it (the operator named that
 * page). Through the real middleware and object, and the proxy's variable.
 */
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { idempotency, type IdempotencyOptions } from '../../src/middleware';
import { newKey, sendWith, whole } from './helpers';

/** An app whose handler answers with credentials allowed for the page that asked (as a CORS origin server may). */
function credentialed(cors: NonNullable<IdempotencyOptions['cors']>) {
  const app = new Hono();
  app.use(idempotency({ reporter: false, cors }));
  app.post('*', (c) =>
    c.json({ ok: true }, 201, {
      'access-control-allow-origin': c.req.header('origin') ?? '',
      'access-control-allow-credentials': 'true',
    }),
  );
  return (key: string, origin: string) =>
    Promise.resolve(
      app.request('/charges', { method: 'POST', headers: { authorization: 'Bearer t', 'idempotency-key': key, origin }, body: 'x' }, env),
    );
}

describe('a replay under IDEMPOTENCY_CORS_ORIGINS = "*"', () => {
  it('never pairs the echoed origin with the stored Access-Control-Allow-Credentials', async () => {
    const send = credentialed('*');
    const key = newKey();
    const first = await send(key, 'https://app.example');
    expect(first.headers.get('access-control-allow-credentials')).toBe('true');
    const replay = await send(key, 'https://evil.example');
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(replay.headers.get('access-control-allow-origin')).toBe('https://evil.example');
    expect(replay.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('keeps it for an origin the operator listed', async () => {
    const send = credentialed(['https://app.example']);
    const key = newKey();
    await whole(send(key, 'https://app.example'));
    const replay = await send(key, 'https://app.example');
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(replay.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(replay.headers.get('access-control-allow-credentials')).toBe('true');
  });

  it('does the same in the proxy, replaying an origin answer that allowed credentials', async () => {
    const vars = { IDEMPOTENCY_CORS_ORIGINS: '*' };
    const key = newKey();
    const send = (origin: string) => sendWith(vars, '/cors/credentials?allow_credentials=true', { key, body: 'x', headers: { origin } });
    expect((await send('https://app.example')).headers.get('access-control-allow-credentials')).toBe('true');
    const replay = await send('https://evil.example');
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(replay.headers.get('access-control-allow-origin')).toBe('https://evil.example');
    expect(replay.headers.get('access-control-allow-credentials')).toBeNull();
  });
});
