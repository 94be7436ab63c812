/**
 * Issue #21: one header rule for requests passed through untouched. Whatever path a pass-through takes (the
 * fast path without the app, or the app; headers forwarded as they are, or copied because they carry a hop-by-hop
 * header), the origin sees the same headers and the client gets the same answer. Against the counting origin's
 * echo, which reports the headers it received.
 */
import { describe, expect, it } from 'vitest';
import { type SendOptions, type Vars, sendWith } from './helpers';

/** Forces every request through the app (the fast path is off when every request is logged). */
const THROUGH_APP: Vars = { LOG_REQUESTS: 'all' };
const FAST: Vars = {};

/** What the origin saw of a pass-through, and what the client got, without what differs per request. */
async function passedThrough(vars: Vars, path: string, options: SendOptions) {
  const response = await sendWith(vars, path, { method: 'GET', key: null, ...options });
  const echo = (await response.json()) as { headers: Record<string, string>; url: string };
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    url: echo.url,
    headers: Object.fromEntries(
      Object.entries(echo.headers).filter(([name]) => !['cf-ray', 'cf-connecting-ip', 'x-forwarded-for'].includes(name)),
    ),
  };
}

describe('pass-through headers', () => {
  const plain = { 'accept-encoding': 'gzip, br', 'x-custom': 'kept', accept: 'application/json' };
  const withHop = { ...plain, connection: 'x-hop', 'x-hop': 'dropped', te: 'trailers' };

  it('forwards the same end-to-end headers whether or not the request carries a hop-by-hop header', async () => {
    const direct = await passedThrough(FAST, '/echo/pt-headers', { headers: plain });
    const copied = await passedThrough(FAST, '/echo/pt-headers', { headers: withHop });
    expect(copied.headers).toEqual(direct.headers);
    expect(direct.headers).toMatchObject({ 'accept-encoding': 'gzip, br', 'x-custom': 'kept' });
    expect(copied.headers['x-hop']).toBeUndefined();
    expect(copied.headers['te']).toBeUndefined();
  });

  it('answers through the fast path exactly as through the app', async () => {
    for (const headers of [plain, withHop]) {
      expect(await passedThrough(FAST, '/echo/pt-same?q=1', { headers })).toEqual(
        await passedThrough(THROUGH_APP, '/echo/pt-same?q=1', { headers }),
      );
    }
  });
});
