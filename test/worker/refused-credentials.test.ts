/**
 * An answer that refused the credential (401, 403) is not a result of the write, so it is never stored, in either
 * mode (issue #20, finding 2): no write ran under that credential, and random credentials cannot fill storage.
 */
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../../src/middleware';
import { newKey, originCalls, send, whole } from './helpers';

describe('401 and 403 answers are not stored', () => {
  it.each([401, 403])('proxy mode: a %i frees the key, so the next request runs again', async (status) => {
    const key = newKey();
    // Read to its end, so the next request finds the key freed rather than joining this attempt.
    expect((await whole(send(`/status/${status}/refused`, { key, body: 'x' }))).status).toBe(status);
    const again = await send(`/status/${status}/refused`, { key, body: 'x' });
    expect(again.status).toBe(status);
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(await originCalls(key)).toBe(2);
  });

  it.each([401, 403])('handler mode: a %i from the handler is not stored either', async (status) => {
    let runs = 0;
    const app = new Hono();
    app.use(idempotency({ reporter: false }));
    app.post('*', (c) => c.json({ run: ++runs }, status as 401 | 403));
    const key = newKey();
    const request = () =>
      app.request('/refused', { method: 'POST', headers: { authorization: 'Bearer x', 'idempotency-key': key }, body: 'x' }, env);
    expect((await whole(request())).status).toBe(status);
    expect((await request()).headers.get('idempotent-replay')).toBeNull();
    expect(runs).toBe(2);
  });

  it('still stores a 400 or a 422: the credential was accepted and the origin answered', async () => {
    for (const status of [400, 422]) {
      const key = newKey();
      await whole(send(`/status/${status}/accepted`, { key, body: 'x' }));
      expect((await send(`/status/${status}/accepted`, { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
      expect(await originCalls(key)).toBe(1);
    }
  });
});
