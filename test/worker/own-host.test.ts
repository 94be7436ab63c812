/**
 * ORIGIN_URL = "request" (issue #20, findings 7 and 8): the request's host is part of each key's record and
 * fingerprint, only the hosts in ORIGIN_HOSTS are forwarded to, and `Connection: via` cannot remove the loop
 * guard's entry. With a fixed ORIGIN_URL, record names and fingerprints are exactly what they were.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { recordName } from '../../src/record/stub';
import { proxyFor } from '../../src/proxy/app';
import { sha256Hex } from '../../src/shared/bytes';
import { expectProblem, newKey, originCalls, originUrl, sendTo, sendWith, whole } from './helpers';

const port = new URL(originUrl).port;
/** Two hosts that both reach the test origin (plain http on its port: entries pin scheme, host and port). */
const hosts = { ORIGIN_URL: 'request', ORIGIN_HOSTS: `http://127.0.0.1:${port}, HTTP://LOCALHOST:${port}` };
const onlyIp = { ORIGIN_URL: 'request', ORIGIN_HOSTS: `http://127.0.0.1:${port}` };
const auth = 'Bearer test-token';

/** The fingerprint stored in the object named `name`. */
async function storedFingerprint(name: string): Promise<string | undefined> {
  const stub = env.IDEMPOTENCY.get(env.IDEMPOTENCY.idFromName(name));
  return runInDurableObject(stub, (_, state) => state.storage.kv.get<{ fingerprint: string }>('record')?.fingerprint);
}

describe('ORIGIN_HOSTS', () => {
  it('is required with ORIGIN_URL = "request", must hold host names, and is refused without it', async () => {
    for (const vars of [
      { ORIGIN_URL: 'request' },
      { ORIGIN_URL: 'request', ORIGIN_HOSTS: 'api.internal, ftp://db.internal' },
      { ORIGIN_URL: 'request', ORIGIN_HOSTS: 'api.internal/v1' },
      { ORIGIN_URL: 'request', ORIGIN_HOSTS: 'api.internal:99999' },
      { ORIGIN_URL: 'request', ORIGIN_HOSTS: 'a.internal,,b.internal' },
      { ORIGIN_HOSTS: '127.0.0.1' },
    ]) {
      const body = await expectProblem(await sendWith(vars, '/echo/hosts', { method: 'GET' }), 500, 'configuration_invalid');
      expect(body.detail).toContain('ORIGIN_HOSTS');
      expect(body.detail).not.toContain('internal');
    }
  });

  it('answers any other host with 421 host_not_allowed, for reads, keyed writes and the key API, forwarding nothing', async () => {
    const key = newKey();
    const url = `http://localhost:${port}/echo/other-host`;
    await expectProblem(await sendTo(onlyIp, url, { method: 'GET', key }), 421, 'host_not_allowed');
    await expectProblem(await sendTo(onlyIp, url, { key, body: 'x' }), 421, 'host_not_allowed');
    await expectProblem(
      await sendTo(onlyIp, `http://localhost:${port}/_idempotency/keys/${key}`, { method: 'GET' }),
      421,
      'host_not_allowed',
    );
    expect(await originCalls(key)).toBe(0);
  });
});

describe('ORIGIN_HOSTS pins scheme, host and port (issue #29, finding 2)', () => {
  it('answers another port, or plain http, of an allowed name with 421, forwarding nothing (reads, keyed writes, the key API)', async () => {
    const key = newKey();
    // `127.0.0.1` is https on 443: the test origin (plain http, on its own port) is another service to it.
    const named = { ORIGIN_URL: 'request', ORIGIN_HOSTS: '127.0.0.1' };
    const onPort = { ORIGIN_URL: 'request', ORIGIN_HOSTS: `127.0.0.1:${port}` };
    const otherPort = { ORIGIN_URL: 'request', ORIGIN_HOSTS: `http://127.0.0.1:${Number(port) === 65535 ? 1 : Number(port) + 1}` };
    for (const vars of [named, onPort, otherPort]) {
      const url = `http://127.0.0.1:${port}/echo/pinned`;
      await expectProblem(await sendTo(vars, url, { method: 'GET', key }), 421, 'host_not_allowed');
      await expectProblem(await sendTo(vars, url, { key, body: 'x' }), 421, 'host_not_allowed');
      await expectProblem(
        await sendTo(vars, `http://127.0.0.1:${port}/_idempotency/keys/${key}`, { method: 'GET' }),
        421,
        'host_not_allowed',
      );
    }
    expect(await originCalls(key)).toBe(0);
    // The entry that names exactly this scheme, host and port is served.
    expect((await sendTo(onlyIp, `http://127.0.0.1:${port}/echo/pinned`, { key, body: 'x' })).status).toBe(200);
    expect(await originCalls(key)).toBe(1);
  });
});

describe('the host is part of the record with ORIGIN_URL = "request"', () => {
  it('runs the same key and body again on another allowed host, and replays on each host its own answer', async () => {
    const key = newKey();
    const on = (host: string) => sendTo(hosts, `http://${host}:${port}/echo/two-hosts`, { key, body: 'x' });
    expect((await on('127.0.0.1')).headers.get('idempotent-replay')).toBeNull();
    expect((await on('localhost')).headers.get('idempotent-replay')).toBeNull();
    expect((await on('127.0.0.1')).headers.get('idempotent-replay')).toBe('true');
    expect((await on('localhost')).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(2);
    // The name has the host as a fifth part; the fingerprint covers it too.
    const name = recordName('proxy', 'headers:authorization', await sha256Hex(auth), key, `127.0.0.1:${port}`);
    const path = `127.0.0.1:${port}/echo/two-hosts`;
    expect(await storedFingerprint(name)).toBe(await sha256Hex(`POST\n${path}\nx`));
  });

  it('looks a key up on its own host only, over HTTP and over RPC', async () => {
    const key = newKey();
    await whole(sendTo(hosts, `http://127.0.0.1:${port}/echo/host-lookup`, { key, body: 'x' }));
    const lookup = (host: string) => sendTo(hosts, `http://${host}:${port}/_idempotency/keys/${key}`, { method: 'GET' });
    expect((await lookup('127.0.0.1')).status).toBe(200);
    await expectProblem(await lookup('localhost'), 404, 'idempotency_key_not_found');
    // IdempotencyService.inspect() and purge() take the host as a third argument, and require it here.
    const bindings = { ...env, ...hosts };
    const keys = proxyFor(bindings).keys!;
    const scopeHash = await sha256Hex(auth);
    expect((await keys.inspect(bindings, scopeHash, key, `127.0.0.1:${port}`))?.state).toBe('complete');
    expect(await keys.inspect(bindings, scopeHash, key, `localhost:${port}`)).toBeNull();
    await expect(keys.inspect(bindings, scopeHash, key)).rejects.toThrow(/host/);
  });
});

describe('with a fixed ORIGIN_URL, record names and fingerprints do not change', () => {
  it('stores under the four-part name and the fingerprint of method, path and body, exactly as before', async () => {
    const key = newKey();
    await whole(sendWith({}, '/echo/golden', { key, body: 'x' }));
    const name = JSON.stringify(['proxy', 'headers:authorization', await sha256Hex(auth), key]);
    // sha256("POST\n/echo/golden\nx"): the host of the request is not part of it.
    expect(await storedFingerprint(name)).toBe('de4f9a48070d6347aab5b9f4c9eb36814928999be69b8241c9615db91f0e7a89');
    expect((await exports.IdempotencyService.inspect(await sha256Hex(auth), key))?.state).toBe('complete');
  });
});

describe('Connection: via (issue #20, finding 8)', () => {
  it('cannot remove the loop guard entry: the origin still gets it, for a read and for a keyed write', async () => {
    const key = newKey();
    for (const init of [{ method: 'GET' }, { key, body: 'x' }]) {
      const res = await sendTo(onlyIp, `${originUrl}/echo/connection-via`, {
        ...init,
        headers: { connection: 'keep-alive, Via', via: '1.1 cdn' },
      });
      const seen = (await res.json()) as { headers: Record<string, string> };
      expect(seen.headers['via']).toBe('1.1 cdn, 1.1 idempotency-proxy');
    }
  });
});
