/**
 * Issue #3: a bounded soak. A few thousand mixed requests (first calls, replays, conflicts,
 * pass-through reads) at steady concurrency. At the end the origin has been called exactly once per
 * distinct (token, key) pair that was used, every pair answered with one body, and no status outside
 * the contract appeared.
 */
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { originCount, pool, proxyForFile, send } from './harness';

const REQUESTS = 3000;
const CONCURRENCY = 32;
const TOKENS = ['Bearer soak-a', 'Bearer soak-b', 'Bearer soak-c'];
const KEYS_PER_TOKEN = 100;

const shared = proxyForFile();

/** A deterministic pseudo-random sequence, so a failing run can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) & 0x7fffffff;
    return state / 0x7fffffff;
  };
}

it(
  `${REQUESTS} mixed requests at concurrency ${CONCURRENCY}: one origin call per used (token, key), no unexpected status`,
  { timeout: 180_000 },
  async () => {
    const next = random(42);
    const run = randomUUID();
    const keyed = `/status/201/soak-${run}`;
    const reads = `/echo/soak-read-${run}`;
    const used = new Set<string>();
    const bodies = new Map<string, Set<string>>();
    const unexpected: string[] = [];
    let readCount = 0;

    const tasks = Array.from({ length: REQUESTS }, () => {
      const roll = next();
      const auth = TOKENS[Math.floor(next() * TOKENS.length)]!;
      const key = `soak-${run}-${Math.floor(next() * KEYS_PER_TOKEN)}`;
      return async () => {
        if (roll < 0.15) {
          readCount++;
          const res = await send(shared.proxy.url, reads, { method: 'GET', auth });
          await res.arrayBuffer();
          if (res.status !== 200) unexpected.push(`GET ${res.status}`);
          return;
        }
        // 10% conflicts: the same key with another body. Whichever request reaches a key first binds it.
        const body = roll < 0.25 ? `conflict-${next()}` : `body-${key}`;
        const pair = `${auth} ${key}`;
        used.add(pair);
        const res = await send(shared.proxy.url, keyed, { key, auth, body });
        const text = await res.text();
        if (res.status === 201) {
          const seen = bodies.get(pair) ?? new Set<string>();
          seen.add(text);
          bodies.set(pair, seen);
        } else if (!(res.status === 409 && text.includes('"idempotency_key_reused"'))) {
          unexpected.push(`POST ${res.status} ${text.slice(0, 120)}`);
        }
      };
    });

    await pool(CONCURRENCY, tasks);

    expect(unexpected).toEqual([]);
    expect(await originCount(shared.origin.url, { path: keyed })).toBe(used.size);
    expect(await originCount(shared.origin.url, { path: reads })).toBe(readCount);
    for (const [pair, seen] of bodies) expect(seen.size, pair).toBe(1);
  },
);
