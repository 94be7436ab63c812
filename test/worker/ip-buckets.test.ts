/**
 * Issue #29, finding 3: the per-address limit (IDEMPOTENCY_IP_RATE_LIMITER) groups IPv6 clients by their /64, which
 * one subscriber usually holds whole, so rotating through it buys nothing; IPv4 is limited by address, and an
 * IPv4-mapped IPv6 address counts as that IPv4 address. However an address is written (compressed, mixed case, with a
 * zone id, in brackets), its /64 is one bucket: for keyed writes, key lookups and admin token guesses alike. Through
 * the real Worker and a real rate-limiting binding (miniflare), limit 3 per 60 s.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { addressBucket } from '../../src/middleware/rate-limit';
import { expectProblem, newKey, originCalls, sendWith } from './helpers';

const bindings = env as unknown as Record<string, unknown>;
const byAddress = { IDEMPOTENCY_IP_RATE_LIMITER: bindings['TEST_IP_RATE_LIMITER'], IDEMPOTENCY_ADMIN_TOKEN: 'a'.repeat(40) };

/** A random 16-bit group in hex. */
const group = () => crypto.getRandomValues(new Uint16Array(1))[0]!.toString(16);
/** The first 64 bits of a documentation /64 (RFC 3849) of its own for each test. */
const newPrefix = () => `2001:db8:${group()}:${group()}`;

const write = (ip: string, key = newKey()) =>
  sendWith(byAddress, '/echo/ip-bucket', { key, auth: `Bearer random-${newKey()}`, body: 'x', headers: { 'cf-connecting-ip': ip } });

describe('the per-address limit over IPv6', () => {
  it('counts every address of one /64 as one client, however it is written; another /64 is another client', async () => {
    const prefix = newPrefix();
    for (const ip of [`${prefix}::1`, `${prefix.toUpperCase()}:FFFF:0:0:2`, `${prefix}:0:0:0:3%eth0`])
      expect((await write(ip)).status).toBe(200);
    const key = newKey();
    await expectProblem(await write(`[${prefix}:1234:5678:9abc:def0]`, key), 429, 'rate_limited');
    expect(await originCalls(key)).toBe(0);
    expect((await write(`${newPrefix()}::1`)).status).toBe(200);
  });

  it('counts an IPv4-mapped address as its IPv4 address, in either notation', async () => {
    const v4 = `198.51.100.${crypto.getRandomValues(new Uint8Array(1))[0]}`;
    const [c, d] = v4.split('.').slice(2).map(Number) as [number, number];
    expect((await write(v4)).status).toBe(200);
    expect((await write(`::ffff:${v4}`)).status).toBe(200);
    expect((await write(`::FFFF:c633:${((c << 8) | d).toString(16)}`)).status).toBe(200);
    await expectProblem(await write(v4), 429, 'rate_limited');
  });

  it('bounds key lookups and admin token guesses from rotating addresses of one /64', async () => {
    const prefix = newPrefix();
    const headers = (n: number) => ({ 'cf-connecting-ip': `${prefix}::${n.toString(16)}`, 'idempotency-scope': '0'.repeat(64) });
    const guess = (n: number) =>
      sendWith(byAddress, `/_idempotency/admin/keys/${newKey()}`, { method: 'GET', auth: 'Bearer guess', headers: headers(n) });
    await expectProblem(await guess(1), 401, 'unauthorized');
    await expectProblem(await guess(2), 401, 'unauthorized');
    await expectProblem(
      await sendWith(byAddress, `/_idempotency/keys/${newKey()}`, { method: 'GET', headers: headers(3) }),
      404,
      'idempotency_key_not_found',
    );
    await expectProblem(await guess(4), 429, 'rate_limited');
  });
});

describe('addressBucket', () => {
  it('gives one canonical bucket per IPv4 address and per IPv6 /64', () => {
    expect(addressBucket(' 192.0.2.7 ')).toBe('ip:192.0.2.7');
    expect(addressBucket('::ffff:192.0.2.7')).toBe('ip:192.0.2.7');
    expect(addressBucket('::FFFF:C000:0207')).toBe('ip:192.0.2.7');
    const bucket = addressBucket('2001:db8:0:1::1');
    for (const ip of ['2001:DB8:0:1:ffff:ffff:ffff:ffff', '[2001:db8::1:0:0:0:9]', '2001:0db8:0000:0001::%en0', '2001:db8:0:1::1%eth0'])
      expect(addressBucket(ip)).toBe(bucket);
    expect(addressBucket('2001:db8:0:2::1')).not.toBe(bucket);
    expect(addressBucket('::')).toBe(addressBucket('0:0:0:0:1:2:3:4'));
    expect(addressBucket('::1')).not.toBe(addressBucket('::ffff:0.0.0.1'));
    // Not an address: keyed as sent, so nothing is lost.
    expect(addressBucket('not-an-address')).toBe('ip:not-an-address');
  });
});
