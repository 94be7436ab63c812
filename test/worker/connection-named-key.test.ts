/**
 * A header the request's `Connection` names is hop-by-hop (RFC 9110 §7.6.1): the proxy does not forward it, so it
 * cannot key the request either. A write whose `Idempotency-Key` is named by `Connection` is an unkeyed write.
 */
import { describe, expect, it } from 'vitest';
import { newKey, originPathCalls, sendWith, storedRecord } from './helpers';

describe('an Idempotency-Key named by Connection', () => {
  it('neither keys the request nor is forwarded: each send reaches the origin without it, nothing is stored', async () => {
    const key = newKey();
    const path = `/echo/connection-named-key/${key}`;
    for (const call of [1, 2]) {
      const res = await sendWith({}, path, { key, body: 'x', headers: { connection: 'Idempotency-Key' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('idempotent-replay')).toBeNull();
      const seen = (await res.json()) as { headers: Record<string, string | undefined> };
      expect(seen.headers['idempotency-key']).toBeUndefined();
      expect(seen.headers['connection']).toBeUndefined();
      expect(await originPathCalls(path)).toBe(call);
    }
    expect(await storedRecord(key)).toBeUndefined();
  });
});
