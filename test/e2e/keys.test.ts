/**
 * The key API under `wrangler dev`, as a client and an operator use it (issue #9): lookups, purges, the admin
 * token and scope, the reserved prefix, hostile keys in the path over raw TCP, and a lookup that writes nothing
 * to the state directory.
 */
import { createHash, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type KeyInfo, keyInfo, originCount, problemCode, proxyForFile, release, send, until, whole } from './harness';
import { kvKeys, objectFiles, raw, rawProblemCode, userTables } from './wire';

const ADMIN = `admin-${randomUUID()}`;
const shared = proxyForFile({ IDEMPOTENCY_ADMIN_TOKEN: ADMIN, ORIGIN_TIMEOUT_MS: '1000', ORIGIN_LEASE_MS: '3000' });
const AUTH = 'Bearer e2e-token';
const scopeHash = createHash('sha256').update(AUTH).digest('hex');

const lookup = (key: string, auth: string | null = AUTH) =>
  send(shared.proxy.url, `/_idempotency/keys/${encodeURIComponent(key)}`, { method: 'GET', auth });
const admin = (
  method: 'GET' | 'DELETE',
  key: string,
  headers: Record<string, string> = { 'idempotency-scope': scopeHash },
  token: string | null = ADMIN,
) =>
  send(shared.proxy.url, `/_idempotency/admin/keys/${encodeURIComponent(key)}`, {
    method,
    auth: token === null ? null : `Bearer ${token}`,
    headers,
  });

describe('a client asks what happened to its key', () => {
  it('sees a stored answer, then one in flight, and nothing for an unknown key', async () => {
    const key = randomUUID();
    // Read to its end: the end comes once the answer is stored.
    await whole(send(shared.proxy.url, '/status/201/e2e-lookup', { key, body: 'x' }));
    expect(await lookup(key).then((r) => r.json())).toMatchObject({
      key,
      state: 'complete',
      status: 201,
      method: 'POST',
      path: '/status/201/e2e-lookup',
    });

    const slow = randomUUID();
    const hold = randomUUID();
    const sent = Date.now();
    // The origin holds the call until the lookup has seen it in flight.
    const first = send(shared.proxy.url, `/hold/${hold}/e2e-inflight`, { key: slow, body: 'x' });
    let info: KeyInfo = {};
    await until(async () => (info = await keyInfo(shared.proxy.url, slow)).state === 'in_flight');
    // The lease (ORIGIN_LEASE_MS, 3 s) runs from when the attempt started, after the request was sent.
    expect(info.lease_until).toBeGreaterThanOrEqual(sent + 3000);
    await release(shared.origin.url, hold);
    await (await first).arrayBuffer();

    expect(await problemCode(await lookup(randomUUID()))).toBe('idempotency_key_not_found');
    expect(await problemCode(await lookup(key, 'Bearer another-client'))).toBe('idempotency_key_not_found');
  });

  it('leaves no storage behind when it looks up a key that has none', async () => {
    const before = new Set(objectFiles(shared.stateDir));
    for (let i = 0; i < 3; i++) expect((await lookup(`never-used-${randomUUID()}`)).status).toBe(404);
    // Calling an object creates its (empty) SQLite file; the lookup itself writes no table and no KV key in it.
    const created = objectFiles(shared.stateDir).filter((file) => !before.has(file));
    expect(created.length).toBeGreaterThanOrEqual(3);
    for (const file of created) expect([userTables(file), kvKeys(file)]).toEqual([[], []]);
  });
});

describe('an operator purges a poisoned record', () => {
  it('makes the next identical request reach the origin exactly once more', async () => {
    const key = randomUUID();
    const poisoned = () => send(shared.proxy.url, '/status/422/e2e-poisoned', { key, body: 'x' });
    await whole(poisoned());
    expect((await poisoned()).headers.get('idempotent-replay')).toBe('true');
    expect(((await (await admin('GET', key)).json()) as { status: number }).status).toBe(422);
    expect((await admin('DELETE', key)).status).toBe(204);
    expect((await poisoned()).headers.get('idempotent-replay')).toBeNull();
    expect((await poisoned()).headers.get('idempotent-replay')).toBe('true');
    expect(await originCount(shared.origin.url, { key })).toBe(2);
    expect(shared.proxy.output()).toContain('"outcome":"purged"');
  });

  it('is refused during a live attempt, which still completes and replays', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    const path = `/hold/${hold}/e2e-purge-live`;
    // The origin holds the call until the purge has been refused.
    const first = send(shared.proxy.url, path, { key, body: 'x' });
    await until(async () => (await originCount(shared.origin.url, { key })) > 0);
    const refused = await admin('DELETE', key);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await problemCode(refused)).toBe('idempotency_key_in_progress');
    await release(shared.origin.url, hold);
    // Its first client may have been told 504 (ORIGIN_TIMEOUT_MS is 1 s here); the attempt itself goes on and is stored.
    await whole(first);
    await until(async () => (await keyInfo(shared.proxy.url, key)).state === 'complete', 'the attempt to be stored');
    expect((await send(shared.proxy.url, path, { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('fails closed on a wrong or absent admin token and a missing scope', async () => {
    const key = randomUUID();
    await send(shared.proxy.url, '/status/201/e2e-guarded', { key, body: 'x' });
    for (const method of ['GET', 'DELETE'] as const) {
      expect(await problemCode(await admin(method, key, undefined, 'wrong'))).toBe('unauthorized');
      expect(await problemCode(await admin(method, key, undefined, null))).toBe('unauthorized');
      expect(await problemCode(await admin(method, key, {}))).toBe('idempotency_scope_invalid');
    }
    expect((await send(shared.proxy.url, '/status/201/e2e-guarded', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });
});

describe('the reserved prefix', () => {
  it('never reaches the origin', async () => {
    for (const path of ['/_idempotency/anything', '/_idempotency/keys/k/extra', '/_idempotency']) {
      const res = await send(shared.proxy.url, path, { key: randomUUID(), body: 'x' });
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(await originCount(shared.origin.url, { path })).toBe(0);
    }
  });

  it.each([
    ['an encoded slash', '/_idempotency/keys/a%2Fb'],
    ['a dot segment', '/_idempotency/keys/..'],
    ['an encoded dot segment', '/_idempotency/keys/%2e%2e'],
    ['129 characters', `/_idempotency/keys/${'k'.repeat(129)}`],
    ['a control byte', '/_idempotency/keys/a%01b'],
  ])('refuses a key with %s in the path with 400 idempotency_key_invalid', async (_, target) => {
    const res = await raw(shared.proxy.port, [
      `GET ${target} HTTP/1.1`,
      `Host: 127.0.0.1:${shared.proxy.port}`,
      `Authorization: ${AUTH}`,
      'Connection: close',
    ]);
    expect(res?.status).toBe(400);
    expect(rawProblemCode(res)).toBe('idempotency_key_invalid');
  });
});
