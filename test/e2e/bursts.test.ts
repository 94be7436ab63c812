/** Bursts against the real `wrangler dev` process and a real origin that counts its calls. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { originCount, pool, proxyForFile, send } from './harness';

const shared = proxyForFile();

describe('bursts', () => {
  it('200 concurrent identical requests: one origin call, 200 identical answers', async () => {
    const key = randomUUID();
    const responses = await Promise.all(
      Array.from({ length: 200 }, () => send(shared.proxy.url, '/slow/500/burst', { key, body: '{"delta":500}' })),
    );
    const bodies = await Promise.all(responses.map((r) => r.text()));
    expect(responses.map((r) => r.status)).toEqual(Array(200).fill(200));
    expect(new Set(bodies).size).toBe(1);
    expect(responses.filter((r) => r.headers.get('idempotent-replay') !== 'true')).toHaveLength(1);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('200 concurrent requests, same key, different bodies: one origin call, 409 idempotency_key_reused for the rest', async () => {
    const key = randomUUID();
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) => send(shared.proxy.url, '/slow/300/mixed', { key, body: `{"delta":${i}}` })),
    );
    const codes = await Promise.all(
      responses.map(async (r) => (r.status === 409 ? ((await r.json()) as { code: string }).code : String(r.status))),
    );
    expect(codes.filter((c) => c === '200')).toHaveLength(1);
    expect(codes.filter((c) => c === 'idempotency_key_reused')).toHaveLength(199);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('1,000 distinct keys in parallel: each runs exactly once, and a second round replays each its own first answer', async () => {
    const keys = Array.from({ length: 1000 }, () => randomUUID());
    // /echo answers with what it received (the key, a hash of the body): every key's answer is its own. An answer
    // marked retryable (x-should-retry: true, e.g. a 502 when an overloaded machine drops a connection to the origin
    // before the request reaches it) is retried with the same key, as a client does: the origin's count below still
    // proves each key ran once.
    const answerOf = async (key: string, retries = 3): Promise<{ status: number; replay: string | null; body: string }> => {
      const r = await send(shared.proxy.url, '/echo/many', { key, body: key });
      const answer = { status: r.status, replay: r.headers.get('idempotent-replay'), body: await r.text() };
      return r.headers.get('x-should-retry') === 'true' && retries > 0 ? answerOf(key, retries - 1) : answer;
    };
    const round = () =>
      pool(
        200,
        keys.map((key) => () => answerOf(key)),
      );
    const first = await round();
    // Every first answer is the key's own run; anything else is listed with its body, so a failure says what it was.
    expect(first.filter(({ status, replay }) => status !== 200 || replay !== null)).toEqual([]);
    expect(new Set(first.map(({ body }) => body)).size).toBe(keys.length);
    const second = await round();
    for (const [i, answer] of second.entries()) expect(answer, keys[i]).toEqual({ status: 200, replay: 'true', body: first[i]!.body });
    const counts = await pool(
      50,
      keys.map((key) => () => originCount(shared.origin.url, { key })),
    );
    expect(counts.every((c) => c === 1)).toBe(true);
  });
});
