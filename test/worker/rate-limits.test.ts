/**
 * The rate limits cannot be dodged (issue #20, finding 2): the per-credential limit is keyed on the credential as
 * an origin reads it (scheme case, white space), covers key lookups too, and a per-address limit
 * (IDEMPOTENCY_IP_RATE_LIMITER, from CF-Connecting-IP) bounds clients that send a new credential every time.
 * Real Workers rate-limiting bindings (miniflare), limit 3 per 60 s each.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../../src/middleware/resolve';
import { sha256Hex } from '../../src/shared/bytes';
import { expectProblem, newKey, originCalls, sendWith } from './helpers';

const bindings = env as unknown as Record<string, unknown>;
const byCredential = { IDEMPOTENCY_RATE_LIMITER: bindings['TEST_RATE_LIMITER'], IDEMPOTENCY_ADMIN_TOKEN: 'a'.repeat(40) };
const byAddress = { IDEMPOTENCY_IP_RATE_LIMITER: bindings['TEST_IP_RATE_LIMITER'], IDEMPOTENCY_ADMIN_TOKEN: 'a'.repeat(40) };

/** A documentation address (RFC 3849) in a /64 of its own for each test (the limit counts a /64 as one client). */
const newAddress = () => `2001:db8:${[...crypto.getRandomValues(new Uint16Array(2))].map((g) => g.toString(16)).join(':')}::1`;

describe('the per-credential limit', () => {
  it('shares one bucket between spellings of one credential, while their records stay apart', async () => {
    const token = `limited-${newKey()}`;
    const key = newKey();
    const write = (auth: string, k = newKey()) => sendWith(byCredential, '/echo/normalised-limit', { key: k, auth, body: 'x' });
    expect((await write(`Bearer ${token}`, key)).status).toBe(200);
    // Another record name (the exact value scopes records: stored keys are not renamed), the same bucket.
    expect((await write(`bearer ${token}`, key)).headers.get('idempotent-replay')).toBeNull();
    expect(await originCalls(key)).toBe(2);
    expect((await write(`Bearer  ${token} `)).status).toBe(200);
    const last = newKey();
    await expectProblem(await write(`BEARER\t${token}`, last), 429, 'rate_limited');
    expect(await originCalls(last)).toBe(0);
  });

  it('counts key lookups too', async () => {
    const auth = `Bearer lookups-${newKey()}`;
    for (let i = 0; i < 3; i++) {
      const res = await sendWith(byCredential, `/_idempotency/keys/${newKey()}`, { method: 'GET', auth });
      await expectProblem(res, 404, 'idempotency_key_not_found');
    }
    const res = await sendWith(byCredential, `/_idempotency/keys/${newKey()}`, { method: 'GET', auth });
    expect(res.headers.get('retry-after')).toBe('60');
    await expectProblem(res, 429, 'rate_limited');
  });
});

describe('IDEMPOTENCY_IP_RATE_LIMITER', () => {
  const write = (ip: string | undefined, key = newKey()) =>
    sendWith(byAddress, '/echo/ip-limit', {
      key,
      auth: `Bearer random-${newKey()}`,
      body: 'x',
      headers: ip ? { 'cf-connecting-ip': ip } : {},
    });

  it('limits keyed writes from one address whatever credential each carries, before any origin call', async () => {
    const ip = newAddress();
    for (let i = 0; i < 3; i++) expect((await write(ip)).status).toBe(200);
    const key = newKey();
    const res = await write(ip, key);
    expect(res.headers.get('retry-after')).toBe('60');
    await expectProblem(res, 429, 'rate_limited');
    expect(await originCalls(key)).toBe(0);
    // Another address is not limited; a request without CF-Connecting-IP (a service binding) is not counted.
    expect((await write(newAddress())).status).toBe(200);
    expect((await write(undefined)).status).toBe(200);
  });

  it('limits key lookups and admin requests from one address, before the admin token is compared', async () => {
    const ip = newAddress();
    const headers = { 'cf-connecting-ip': ip, 'idempotency-scope': await sha256Hex('Bearer x') };
    const lookup = () => sendWith(byAddress, `/_idempotency/keys/${newKey()}`, { method: 'GET', headers });
    const guess = () => sendWith(byAddress, `/_idempotency/admin/keys/${newKey()}`, { method: 'GET', auth: 'Bearer guess', headers });
    await expectProblem(await lookup(), 404, 'idempotency_key_not_found');
    await expectProblem(await guess(), 401, 'unauthorized');
    await expectProblem(await guess(), 401, 'unauthorized');
    await expectProblem(await guess(), 429, 'rate_limited');
    await expectProblem(await lookup(), 429, 'rate_limited');
  });

  it('must be another binding than the per-credential limit (one bucket cannot count two things)', () => {
    const limits = { rateLimit: { binding: 'LIMITER' }, ipRateLimit: { binding: 'LIMITER' } };
    expect(() => resolveOptions(limits)).toThrow(/ipRateLimit.*rateLimit/);
  });
});
