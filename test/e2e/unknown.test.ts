/**
 * Issue #18 end to end: a runtime SIGKILLed mid-flight under `IDEMPOTENCY_ON_UNKNOWN=hold`, restarted on the same
 * persisted state. After the lease the key answers 409 idempotency_outcome_unknown and the origin is never called
 * again. Time bounds come from the stored lease (key API), never from a guess.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyInfo, newStateDir, originCount, problemCode, proxyForFile, removeDir, send, startProxy, until } from './harness';

const VARS = { ORIGIN_TIMEOUT_MS: '1000', ORIGIN_LEASE_MS: '3000', IDEMPOTENCY_ON_UNKNOWN: 'hold' };
const shared = proxyForFile(VARS);

describe('unknown outcomes after a crash', () => {
  it('hold: SIGKILL mid-flight, restart on the same state; after the lease 409 idempotency_outcome_unknown, no second call', async () => {
    const dir = newStateDir();
    let crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars: VARS });
    try {
      const key = randomUUID();
      const inflight = send(crashing.url, '/slow/800/hold-crash', { key, body: 'x' }).catch((error: unknown) => error);
      await until(async () => (await originCount(shared.origin.url, { key })) === 1);
      await crashing.kill();
      expect(await inflight).toBeInstanceOf(Error);

      crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars: VARS });
      const { state, lease_until: leaseUntil } = await keyInfo(crashing.url, key);
      expect(state).toBe('in_flight');
      await until(() => Date.now() > leaseUntil!);
      for (let i = 0; i < 2; i++) {
        const held = await send(crashing.url, '/slow/800/hold-crash', { key, body: 'x' });
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
});
