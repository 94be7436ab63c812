/**
 * The key API cannot be turned against the records it describes (issue #20, second security review): a `HEAD`
 * never purges, the admin token never reaches the origin in any spelling of the prefix, a short admin token is a
 * configuration error, and a key can be looked up without putting it in the URL.
 */
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/shared/bytes';
import { expectProblem, newKey, originCalls, sendWith, storedRecord, whole } from './helpers';

const ADMIN = 'admin-token-for-tests-0123456789';
const vars = { IDEMPOTENCY_ADMIN_TOKEN: ADMIN };
const auth = 'Bearer test-token';

/** A request to the admin key API for the test credential's `key`. */
async function adminSend(method: string, key: string): Promise<Response> {
  const headers = { 'idempotency-scope': await sha256Hex(auth) };
  return sendWith(vars, `/_idempotency/admin/keys/${key}`, { method, auth: `Bearer ${ADMIN}`, headers });
}

describe('HEAD on the key API (issue #20, finding 1)', () => {
  it('answers an admin HEAD like GET without a body, and purges nothing', async () => {
    const key = newKey();
    await whole(sendWith(vars, '/echo/head-admin', { key, body: 'x' }));
    const res = await adminSend('HEAD', key);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.text()).toBe('');
    expect((await storedRecord(key))?.state).toBe('complete');
    // The next retry is still a replay: the write does not run again.
    expect((await sendWith(vars, '/echo/head-admin', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('answers a client HEAD like GET without a body (404 for an unknown key), writing nothing', async () => {
    const key = newKey();
    await whole(sendWith(vars, '/echo/head-client', { key, body: 'x' }));
    const res = await sendWith(vars, `/_idempotency/keys/${key}`, { method: 'HEAD', auth });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    expect((await storedRecord(key))?.state).toBe('complete');
    expect((await sendWith(vars, `/_idempotency/keys/${newKey()}`, { method: 'HEAD', auth })).status).toBe(404);
  });

  it('still purges on DELETE', async () => {
    const key = newKey();
    await whole(sendWith(vars, '/echo/head-delete', { key, body: 'x' }));
    const res = await adminSend('DELETE', key);
    expect(res.status).toBe(204);
    expect(await storedRecord(key)).toBeUndefined();
  });

  it('refuses a HEAD naming no key like GET does', async () => {
    // What "/admin/keys/.." becomes once the URL parser has resolved the dot segment away.
    const res = await sendWith(vars, '/_idempotency/admin', { method: 'HEAD', auth });
    expect(res.status).toBe(400);
  });
});

describe('IDEMPOTENCY_ADMIN_TOKEN (issue #20, finding 8)', () => {
  it('turns the admin API off for a token under 32 characters: configuration_invalid there, naming the variable and not the value', async () => {
    const short = 'admin-token-for-tests-012345678'; // 31 characters
    const vars = { IDEMPOTENCY_ADMIN_TOKEN: short };
    for (const method of ['GET', 'DELETE']) {
      const res = await sendWith(vars, `/_idempotency/admin/keys/${newKey()}`, { method, auth: `Bearer ${short}` });
      const body = await expectProblem(res, 500, 'configuration_invalid');
      expect(body.detail).toContain('IDEMPOTENCY_ADMIN_TOKEN');
      expect(body.detail).not.toContain(short);
    }
    // An optional feature (#28): every other route still works, keyed writes and a client's own lookups included.
    const key = newKey();
    expect((await sendWith(vars, '/echo/short-admin', { method: 'GET' })).status).toBe(200);
    expect((await sendWith(vars, '/echo/short-admin', { key, body: 'x' })).status).toBe(200);
    expect((await sendWith(vars, `/_idempotency/keys/${key}`, { method: 'GET' })).status).toBe(200);
    // 32 characters are enough.
    const token = `${short}9`;
    const admin = await sendWith({ IDEMPOTENCY_ADMIN_TOKEN: token }, `/_idempotency/admin/keys/${key}`, {
      method: 'GET',
      auth: `Bearer ${token}`,
      headers: { 'idempotency-scope': await sha256Hex('Bearer test-token') },
    });
    expect(admin.status).toBe(200);
  });
});

describe('the admin token never reaches the origin (issue #20, finding 5)', () => {
  it.each([
    '//_idempotency/admin/keys/K',
    '///_idempotency/admin/keys/K',
    '/_IDEMPOTENCY/admin/keys/K',
    '/_Idempotency/keys/K',
    '/_idempotency;x=1/admin/keys/K',
    '/%255Fidempotency/admin/keys/K',
    '/%5F%49dempotency/admin/keys/K',
    '/x/%252e%252e/_idempotency/admin/keys/K',
    '/_idempotency%20/admin/keys/K',
  ])('refuses %s with 400 path_invalid, read or keyed write, and forwards nothing', async (path) => {
    for (const method of ['GET', 'POST', 'DELETE']) {
      const key = newKey();
      const init = { method, key, auth: `Bearer ${ADMIN}`, ...(method === 'POST' ? { body: 'x' } : {}) };
      await expectProblem(await sendWith(vars, path, init), 400, 'path_invalid');
      expect(await originCalls(key)).toBe(0);
    }
  });

  it('still forwards a path that only contains the prefix further on, or a longer first segment', async () => {
    for (const path of ['/echo/_idempotency/admin', '/echo/x/_IDEMPOTENCY', '/_idempotency2/echo']) {
      const key = newKey();
      expect((await sendWith(vars, path, { method: 'GET', key })).status).not.toBe(400);
      expect(await originCalls(key)).toBe(1);
    }
  });
});

describe('lookups with the key in the Idempotency-Key header (issue #20, finding 8)', () => {
  it('GET {prefix}/key looks up the client’s own key without the key in the URL', async () => {
    const key = newKey();
    await whole(sendWith(vars, '/echo/header-lookup', { key, body: 'x' }));
    const res = await sendWith(vars, '/_idempotency/key', { method: 'GET', key: `"${key}"` });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ key, state: 'complete', path: '/echo/header-lookup' });
    await expectProblem(
      await sendWith(vars, '/_idempotency/key', { method: 'GET', key, auth: 'Bearer other' }),
      404,
      'idempotency_key_not_found',
    );
    await expectProblem(await sendWith(vars, '/_idempotency/key', { method: 'GET' }), 400, 'idempotency_key_missing');
    await expectProblem(await sendWith(vars, '/_idempotency/key', { method: 'GET', key: 'a b' }), 400, 'idempotency_key_invalid');
  });

  it('GET, HEAD and DELETE {prefix}/admin/key do what the path forms do; only DELETE purges', async () => {
    const key = newKey();
    await whole(sendWith(vars, '/echo/header-admin', { key, body: 'x' }));
    const headers = { 'idempotency-scope': await sha256Hex(auth) };
    const as = (method: string) => sendWith(vars, '/_idempotency/admin/key', { method, key, auth: `Bearer ${ADMIN}`, headers });
    expect(((await (await as('GET')).json()) as { state: string }).state).toBe('complete');
    expect((await as('HEAD')).status).toBe(200);
    expect((await storedRecord(key))?.state).toBe('complete');
    expect((await as('DELETE')).status).toBe(204);
    expect(await storedRecord(key)).toBeUndefined();
    await expectProblem(await sendWith(vars, '/_idempotency/admin/key', { method: 'GET', key, headers }), 401, 'unauthorized');
  });
});
