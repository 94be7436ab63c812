/**
 * Issue #18 end to end: a runtime SIGKILLed mid-flight, restarted on the same persisted state. After the lease,
 * `hold` answers 409 idempotency_outcome_unknown and the origin is never called again; `reconcile` replays the
 * reconcile URL's answer (one POST), or runs once more when it answers 404 (two POSTs). Time bounds come from the
 * stored lease (key API), never from a guess.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyInfo, newStateDir, originCount, problemCode, proxyForFile, release, removeDir, send, startProxy, until } from './harness';

const VARS = { ORIGIN_TIMEOUT_MS: '1000', ORIGIN_LEASE_MS: '3000', IDEMPOTENCY_ON_UNKNOWN: 'hold' };
const shared = proxyForFile(VARS);

describe('unknown outcomes after a crash', () => {
  it('hold: SIGKILL mid-flight, restart on the same state; after the lease 409 idempotency_outcome_unknown, no second call', async () => {
    const dir = newStateDir();
    let crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars: VARS });
    try {
      const key = randomUUID();
      const hold = randomUUID();
      const path = `/hold/${hold}/hold-crash`;
      // Killed while the origin holds the call; from then on the origin answers at once.
      const inflight = send(crashing.url, path, { key, body: 'x' }).catch((error: unknown) => error);
      await until(async () => (await originCount(shared.origin.url, { key })) === 1);
      await crashing.kill();
      expect(await inflight).toBeInstanceOf(Error);
      await release(shared.origin.url, hold);

      crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars: VARS });
      const { state, lease_until: leaseUntil } = await keyInfo(crashing.url, key);
      expect(state).toBe('in_flight');
      await until(() => Date.now() > leaseUntil!);
      for (let i = 0; i < 2; i++) {
        const held = await send(crashing.url, path, { key, body: 'x' });
        expect(held.status).toBe(409);
        expect(await problemCode(held)).toBe('idempotency_outcome_unknown');
      }
      expect((await keyInfo(crashing.url, key)).state).toBe('unknown');
      expect(await originCount(shared.origin.url, { key })).toBe(1);
    } finally {
      await crashing.stop();
      removeDir(dir);
    }
  });

  it.each([
    ['found', 1],
    ['missing', 2],
  ] as const)(
    'reconcile: SIGKILL mid-flight, restart; after the lease the reconcile URL answers %s: %i POST(s) in all',
    async (answer, posts) => {
      const dir = newStateDir();
      const vars = {
        ...VARS,
        IDEMPOTENCY_ON_UNKNOWN: 'reconcile',
        IDEMPOTENCY_RECONCILE_URL: `/reconcile/${answer}/charges?idempotency_key={key}`,
      };
      let crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars });
      try {
        const key = randomUUID();
        const hold = randomUUID();
        const path = `/hold/${hold}/reconcile-crash`;
        // Killed while the origin holds the call; from then on the origin answers at once.
        const inflight = send(crashing.url, path, { key, body: 'x' }).catch((error: unknown) => error);
        await until(async () => (await originCount(shared.origin.url, { key })) === 1);
        await crashing.kill();
        expect(await inflight).toBeInstanceOf(Error);
        await release(shared.origin.url, hold);

        crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars });
        const { lease_until: leaseUntil } = await keyInfo(crashing.url, key);
        await until(() => Date.now() > leaseUntil!);
        const after = await send(crashing.url, path, { key, body: 'x' });
        expect(after.status).toBe(200);
        const body = (await after.json()) as { reconciled?: boolean; method?: string };
        if (answer === 'found') {
          expect(after.headers.get('idempotent-replay')).toBe('true');
          expect(body).toMatchObject({ reconciled: true, key });
        } else {
          expect(after.headers.get('idempotent-replay')).toBeNull();
          expect(body.method).toBe('POST');
        }
        const replay = await send(crashing.url, path, { key, body: 'x' });
        expect(replay.headers.get('idempotent-replay')).toBe('true');
        expect(await originCount(shared.origin.url, { key })).toBe(posts);
      } finally {
        await crashing.stop();
        removeDir(dir);
      }
    },
  );
});
