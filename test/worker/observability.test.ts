/**
 * Operations: the proxy logs one JSON line per request it decides (every request with LOG_REQUESTS=all) and,
 * when an Analytics Engine dataset is bound as METRICS, writes the same outcome as a data point. Neither
 * contains a key or a token.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { newKey, sendWith, whole } from './helpers';

afterEach(() => vi.restoreAllMocks());

describe('proxy observability', () => {
  it('logs and counts every request with its outcome (LOG_REQUESTS=all), never the key or the token', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    const points: AnalyticsEngineDataPoint[] = [];
    const METRICS = { writeDataPoint: (point: AnalyticsEngineDataPoint) => void points.push(point) };
    const key = `visible-key-${newKey()}`;
    const auth = `Bearer visible-token-${newKey()}`;
    const vars = { METRICS, LOG_REQUESTS: 'all' };

    await whole(sendWith(vars, '/echo/obs', { key, auth, body: 'a' }));
    await whole(sendWith(vars, '/echo/obs', { key, auth, body: 'a' }));
    await whole(sendWith(vars, '/echo/obs', { key, auth, body: 'b' }));
    await whole(sendWith(vars, '/echo/obs', { key: 'bad key', auth, body: 'a' }));
    await whole(sendWith(vars, '/echo/obs', { method: 'GET', auth }));
    await whole(sendWith(vars, '/echo/obs', { auth, body: 'no key' }));

    const logs = lines.map(
      (line) => JSON.parse(line) as { event: string; outcome: string; status: number; key_hash?: string; latency_ms: number },
    );
    expect(logs.map((l) => [l.outcome, l.status])).toEqual([
      ['executed', 200],
      ['replayed', 200],
      ['conflict', 409],
      ['rejected', 400],
      ['passthrough', 200],
      ['passthrough', 200],
    ]);
    expect(logs.every((l) => l.event === 'idempotency' && l.latency_ms >= 0)).toBe(true);
    expect(logs[0]!.key_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(points.map((p) => p.blobs?.[0])).toEqual(['executed', 'replayed', 'conflict', 'rejected', 'passthrough', 'passthrough']);
    expect(points[2]!.blobs?.[2]).toBe('idempotency_key_reused');
    expect(points[0]!.doubles?.[0]).toBe(200);
    const everything = JSON.stringify([lines, points]);
    expect(everything).not.toContain('visible-key');
    expect(everything).not.toContain('visible-token');
  });

  it('by default logs the decisions (a conflict from the cache too), not the replays; the data points count all', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    const points: AnalyticsEngineDataPoint[] = [];
    const vars = { METRICS: { writeDataPoint: (point: AnalyticsEngineDataPoint) => void points.push(point) } };
    const key = newKey();
    // Read to its end: stored, so the conflicts below reveal it (a conflict with an attempt in flight is never cached).
    await whole(sendWith(vars, '/echo/default-log', { key, body: 'a' }));
    await whole(sendWith(vars, '/echo/default-log', { key, body: 'b' })); // decided by the object
    await whole(sendWith(vars, '/echo/default-log', { key, body: 'c' })); // from the cache: still a new request under a used key (#28)
    await whole(sendWith(vars, '/echo/default-log', { key, body: 'a' })); // a replay
    await whole(sendWith(vars, '/echo/default-log', { method: 'GET' }));
    await whole(sendWith(vars, '/echo/default-log', { body: 'no key' }));
    await whole(sendWith(vars, '/echo/default-log', { key: 'bad key', body: 'a' }));
    const logged = lines.map((line) => JSON.parse(line) as { outcome: string; cached?: boolean });
    expect(logged.map(({ outcome, cached }) => [outcome, cached ?? false])).toEqual([
      ['executed', false],
      ['conflict', false],
      ['conflict', true],
      ['rejected', false],
    ]);
    expect(points.map((p) => p.blobs?.[0])).toEqual(['executed', 'conflict', 'conflict', 'replayed', 'rejected']);
  });

  it('logs a conflict answered from the cache without METRICS too (#28)', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    const vars = {};
    const key = newKey();
    await (await sendWith(vars, '/echo/cached-conflict-log', { key, body: 'a' })).arrayBuffer();
    for (const body of ['b', 'c']) expect((await sendWith(vars, '/echo/cached-conflict-log', { key, body })).status).toBe(409);
    const logged = lines.map((line) => JSON.parse(line) as { outcome: string; cached?: boolean });
    expect(logged.map(({ outcome, cached }) => [outcome, cached ?? false])).toEqual([
      ['executed', false],
      ['conflict', false],
      ['conflict', true],
    ]);
  });

  it('LOG_REQUESTS=false writes no log line and no data point', async () => {
    const lines: unknown[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(line));
    const points: unknown[] = [];
    const vars = { LOG_REQUESTS: 'false', METRICS: { writeDataPoint: (point: unknown) => void points.push(point) } };
    const key = newKey();
    expect((await sendWith(vars, '/echo/quiet', { key, body: 'a' })).status).toBe(200);
    expect((await sendWith(vars, '/echo/quiet', { key, body: 'a' })).headers.get('idempotent-replay')).toBe('true');
    await whole(sendWith(vars, '/echo/quiet', { method: 'GET' }));
    expect(lines).toEqual([]);
    expect(points).toEqual([]);
  });
});
