/**
 * "What happened to my key?": the key API under IDEMPOTENCY_API_PREFIX and the IdempotencyService RPC methods
 * (issue #9), against the real objects and the counting origin.
 */
import { runInDurableObject } from 'cloudflare:test';
import { exports } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '../../src/shared/bytes';
import {
  expectProblem,
  newHold,
  newKey,
  originCalls,
  originPathCalls,
  recordStub,
  release,
  send,
  sendWith,
  storedRecord,
  until,
  whole,
} from './helpers';

afterEach(() => vi.restoreAllMocks());

const ADMIN = 'admin-token-for-tests-0123456789';
const vars = { IDEMPOTENCY_ADMIN_TOKEN: ADMIN };
const auth = 'Bearer test-token';

const lookup = (key: string, as: string | null = auth) =>
  sendWith(vars, `/_idempotency/keys/${encodeURIComponent(key)}`, { method: 'GET', auth: as });
const admin = async (method: 'GET' | 'DELETE', key: string, options: { token?: string | null; scope?: string | null } = {}) => {
  const headers: Record<string, string> = {};
  const scope = options.scope === undefined ? await sha256Hex(auth) : options.scope;
  if (scope !== null) headers['idempotency-scope'] = scope;
  const token = options.token === undefined ? ADMIN : options.token;
  return sendWith(vars, `/_idempotency/admin/keys/${encodeURIComponent(key)}`, {
    method,
    auth: token === null ? null : `Bearer ${token}`,
    headers,
  });
};

/**
 * What the object of `(auth, key)` holds: its tables, the runtime's own (`_cf_KV` of the KV API, `_cf_METADATA` of the
 * alarm) included, and its KV keys as `kv:<key>`. Empty: nothing was ever written.
 */
async function tablesOf(key: string, as = auth): Promise<string[]> {
  return runInDurableObject(await recordStub(key, as), (_, state) => [
    ...state.storage.sql
      .exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table'`)
      .toArray()
      .map((row) => row.name),
    ...[...state.storage.kv.list()].map(([name]) => `kv:${name}`),
  ]);
}

describe('GET {prefix}/keys/{key}: a client looks up its own key', () => {
  it('describes a stored key (never its body), not cached', async () => {
    const key = newKey();
    const before = Date.now();
    // The answer is stored when its body ends, and it ends once read (#28: looked up before, it could be in_flight).
    await (await send('/status/422/lookup', { key, body: 'secret body' })).arrayBuffer();
    const res = await lookup(key);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const info = (await res.json()) as Record<string, unknown>;
    expect(info).toMatchObject({ key, state: 'complete', status: 422, method: 'POST', path: '/status/422/lookup', lease_until: null });
    expect(info['created_at']).toBeGreaterThanOrEqual(before);
    expect(info['expires_at']).toBe((info['created_at'] as number) + 86_400_000);
    // Exactly these fields: nothing of the stored answer's body or headers.
    expect(Object.keys(info).sort()).toEqual(['created_at', 'expires_at', 'key', 'lease_until', 'method', 'path', 'state', 'status']);
  });

  it('describes an attempt in flight with its lease', async () => {
    const key = newKey();
    const hold = newHold();
    // The origin holds the call until the lookup has been answered.
    const first = send(`/hold/${hold}/lookup-inflight`, { key, body: 'x' });
    await until(async () => (await storedRecord(key))?.state === 'in_flight');
    const info = (await (await lookup(key)).json()) as Record<string, unknown>;
    expect(info).toMatchObject({ key, state: 'in_flight', status: null });
    expect(info['lease_until']).toBe((await storedRecord(key))!.lease_until);
    await release(hold);
    await (await first).arrayBuffer();
    expect(((await (await lookup(key)).json()) as { state: string }).state).toBe('complete');
  });

  it('answers 404 for an unknown key and writes nothing', async () => {
    const key = newKey();
    await expectProblem(await lookup(key), 404, 'idempotency_key_not_found');
    expect(await tablesOf(key)).toEqual([]);
  });

  it('refuses a missing, empty or malformed credential as a keyed write does (401, 400 authorization_invalid)', async () => {
    const key = newKey();
    await expectProblem(await lookup(key, null), 401, 'unauthorized');
    for (const as of ['', 'Bearer a\x01b', 'Bearer caf\xe9']) await expectProblem(await lookup(key, as), 400, 'authorization_invalid');
  });

  it('answers 404 for an expired key, even before the alarm removed it', async () => {
    const key = newKey();
    const short = { ...vars, IDEMPOTENCY_TTL_SECONDS: '1', ORIGIN_TIMEOUT_MS: '500', ORIGIN_LEASE_MS: '500' };
    await whole(sendWith(short, '/echo/expiring', { key, body: 'x' }));
    const { expires_at: expiresAt } = (await storedRecord(key))!;
    await until(() => Date.now() > expiresAt);
    await expectProblem(await sendWith(short, `/_idempotency/keys/${key}`, { method: 'GET' }), 404, 'idempotency_key_not_found');
  });

  it("never answers with another credential's record", async () => {
    const key = newKey();
    await whole(send('/echo/mine', { key, body: 'x' }));
    await expectProblem(await lookup(key, 'Bearer someone-else'), 404, 'idempotency_key_not_found');
    const res = await lookup(key, null);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    await expectProblem(res, 401, 'unauthorized');
  });

  it('answers a DELETE of the client’s own key 405 method_not_allowed, naming the admin API; the record stays (#28)', async () => {
    const key = newKey();
    await (await send('/echo/own-delete', { key, body: 'x' })).arrayBuffer();
    for (const [path, headers] of [
      [`/_idempotency/keys/${key}`, {}],
      ['/_idempotency/key', { 'idempotency-key': key }],
    ] as const) {
      const res = await sendWith(vars, path, { method: 'DELETE', headers });
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      expect((await expectProblem(res, 405, 'method_not_allowed')).detail).toContain('DELETE /_idempotency/admin/keys/{key}');
    }
    expect((await storedRecord(key))?.state).toBe('complete');
  });

  it('parses the key exactly as Idempotency-Key: the quoted form names the same key', async () => {
    const key = newKey();
    await whole(send('/echo/quoted-lookup', { key, body: 'x' }));
    expect(((await (await lookup(`"${key}"`)).json()) as { key: string }).key).toBe(key);
  });

  it.each([
    ['an encoded slash', 'a%2Fb'],
    ['an encoded backslash', 'a%5Cb'],
    ['an encoded dot segment', '%2E%2E'],
    ['a dot segment', '..'],
    ['129 characters', 'k'.repeat(129)],
    ['a control byte', 'a%01b'],
    ['a space', 'a%20b'],
    ['non-ASCII', 'caf%C3%A9'],
    ['broken percent-encoding', '%E0%A4%A'],
    ['nothing', ''],
  ])('refuses a key with %s in the path with 400 idempotency_key_invalid', async (_, segment) => {
    await expectProblem(await sendWith(vars, `/_idempotency/keys/${segment}`, { method: 'GET' }), 400, 'idempotency_key_invalid');
  });
});

describe('GET and DELETE {prefix}/admin/keys/{key}: the operator', () => {
  it('looks up any client by its scope hash', async () => {
    const key = newKey();
    await whole(send('/echo/admin-lookup', { key, body: 'x' }));
    expect(((await (await admin('GET', key)).json()) as { state: string }).state).toBe('complete');
  });

  it('purges a stored 422 so the next identical request reaches the origin exactly once more, and logs the purge', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    const key = newKey();
    const poisoned = () => sendWith(vars, '/status/422/poisoned', { key, body: 'x' });
    await whole(poisoned());
    // Replayed twice: the second from this isolate's replay cache.
    expect((await poisoned()).headers.get('idempotent-replay')).toBe('true');
    expect((await poisoned()).headers.get('idempotent-replay')).toBe('true');
    const res = await admin('DELETE', key);
    expect(res.status).toBe(204);
    expect(await tablesOf(key)).toEqual([]);
    expect((await poisoned()).headers.get('idempotent-replay')).toBeNull();
    expect((await poisoned()).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(2);
    const purges = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line['outcome'] === 'purged');
    expect(purges).toHaveLength(1);
    expect(purges[0]).toMatchObject({ event: 'idempotency', method: 'DELETE', status: 204 });
    expect(purges[0]!['key_hash']).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(lines)).not.toContain(key);
  });

  it('leaves an attempt in flight alone (409 with Retry-After); it still completes and replays', async () => {
    const key = newKey();
    const hold = newHold();
    // The origin holds the call until the purge has been refused (a wait that cannot end before that).
    const long = { ...vars, ORIGIN_TIMEOUT_MS: '20000', ORIGIN_LEASE_MS: '20000' };
    const first = sendWith(long, `/hold/${hold}/purge-live`, { key, body: 'x' });
    await until(async () => (await storedRecord(key))?.state === 'in_flight');
    const refused = await admin('DELETE', key);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await expectProblem(refused, 409, 'idempotency_key_in_progress');
    await release(hold);
    expect((await whole(first)).status).toBe(200);
    expect((await sendWith(long, `/hold/${hold}/purge-live`, { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('answers 404 for a key that has no record', async () => {
    await expectProblem(await admin('DELETE', newKey()), 404, 'idempotency_key_not_found');
  });

  it('fails closed on a wrong or absent admin token, and a missing or malformed scope, revealing nothing', async () => {
    const key = newKey();
    await whole(send('/echo/guarded', { key, body: 'x' }));
    for (const method of ['GET', 'DELETE'] as const) {
      await expectProblem(await admin(method, key, { token: 'wrong-token' }), 401, 'unauthorized');
      await expectProblem(await admin(method, key, { token: null }), 401, 'unauthorized');
      await expectProblem(await admin(method, key, { scope: null }), 400, 'idempotency_scope_invalid');
      const malformed = await expectProblem(await admin(method, key, { scope: 'Bearer test-token' }), 400, 'idempotency_scope_invalid');
      // What the value must be (#28: a `sha256sum` output with its trailing "  -" was refused without a word why).
      expect(malformed.detail).toContain('64 lower-case hex characters');
    }
    // Unset token: the admin API does not exist.
    const unset = await sendWith({}, `/_idempotency/admin/keys/${key}`, {
      method: 'DELETE',
      auth: `Bearer ${ADMIN}`,
      headers: { 'idempotency-scope': await sha256Hex(auth) },
    });
    await expectProblem(unset, 404, 'not_found');
    expect((await storedRecord(key))?.state).toBe('complete');
  });
});

describe('the reserved prefix', () => {
  it('never reaches the origin, whatever the path and method', async () => {
    for (const [method, path, status, code] of [
      ['POST', '/_idempotency/keys/x', 405, 'method_not_allowed'],
      ['GET', '/_idempotency/other', 404, 'not_found'],
      ['PUT', '/_idempotency/admin/keys/x', 404, 'not_found'],
    ] as const) {
      const res = await sendWith(vars, path, method === 'GET' ? { method } : { method, key: newKey(), body: 'x' });
      await expectProblem(res, status, code);
    }
    await expectProblem(await sendWith(vars, '/_idempotency', { method: 'GET' }), 400, 'idempotency_key_invalid');
    expect(await originPathCalls('/_idempotency')).toBe(0);
    expect(await originPathCalls('/_idempotency/other')).toBe(0);
  });

  it('is the same prefix percent-encoded: the admin token never travels to the origin', async () => {
    const key = newKey();
    await whole(send('/echo/encoded', { key, body: 'x' }));
    const paths = [`/%5Fidempotency/keys/${key}`, `/_idempotency/%6Beys/${key}`, `/%5Fidempotency/admin/keys/${key}`];
    expect((await sendWith(vars, paths[0]!, { method: 'GET' })).status).toBe(200);
    expect((await sendWith(vars, paths[1]!, { method: 'GET' })).status).toBe(200);
    await expectProblem(await sendWith(vars, paths[2]!, { method: 'GET', auth: `Bearer ${ADMIN}` }), 400, 'idempotency_scope_invalid');
    for (const path of paths) expect(await originPathCalls(path)).toBe(0);
  });

  it('takes exactly one path segment as the key, under any prefix', async () => {
    const key = newKey();
    await whole(send('/echo/segment', { key, body: 'x' }));
    const res = await sendWith(vars, `/_idempotency/keys/${key}/keys/${newKey()}`, { method: 'GET', auth });
    await expectProblem(res, 400, 'idempotency_key_invalid');
    expect((await sendWith({ IDEMPOTENCY_API_PREFIX: '/v1/keys' }, `/v1/keys/keys/${key}`, { method: 'GET' })).status).toBe(200);
  });

  it('moves with IDEMPOTENCY_API_PREFIX, and "off" gives the path back to the origin', async () => {
    const key = newKey();
    await whole(send('/echo/moved', { key, body: 'x' }));
    expect((await sendWith({ IDEMPOTENCY_API_PREFIX: '/ops/idem' }, `/ops/idem/keys/${key}`, { method: 'GET' })).status).toBe(200);
    expect((await sendWith({ IDEMPOTENCY_API_PREFIX: 'off' }, `/echo/_idempotency/keys/${key}`, { method: 'GET' })).status).toBe(200);
    expect(await originPathCalls(`/echo/_idempotency/keys/${key}`)).toBe(1);
  });
});

describe('IdempotencyService.inspect() and purge() over RPC', () => {
  it('look up and purge by scope hash and key', async () => {
    const key = newKey();
    const scopeHash = await sha256Hex(auth);
    await whole(send('/status/409/rpc', { key, body: 'x' }));
    expect(await exports.IdempotencyService.inspect(scopeHash, key)).toMatchObject({ key, state: 'complete', status: 409 });
    expect(await exports.IdempotencyService.purge(scopeHash, key)).toEqual({ kind: 'purged', state: 'complete' });
    expect(await exports.IdempotencyService.inspect(scopeHash, key)).toBeNull();
    expect(await exports.IdempotencyService.purge(scopeHash, key)).toEqual({ kind: 'not_found' });
    expect((await send('/status/409/rpc', { key, body: 'x' })).headers.get('idempotent-replay')).toBeNull();
  });

  it('refuses a malformed scope hash or key', async () => {
    await expect(exports.IdempotencyService.inspect('not-a-hash', 'k')).rejects.toThrow(/scopeHash/);
    await expect(exports.IdempotencyService.purge(await sha256Hex(auth), 'a b')).rejects.toThrow(/key/);
  });
});
