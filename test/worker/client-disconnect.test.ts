/**
 * A client that goes away mid-flight, as the Worker really sees it inside workerd: the request sent through the
 * Worker's own fetch handler (`exports.default`) is aborted while the origin (held at `/hold/<id>`) is still
 * working, so the runtime cancels that request's handler. The attempt runs in the object and outlives it.
 */
import { describe, expect, it, vi } from 'vitest';
import { newHold, newKey, originCalls, release, send, storedRecord, until } from './helpers';

describe('a client that disconnects while the origin works', () => {
  it('does not cancel the attempt: the origin runs once, the answer is stored and the retry replays it', async () => {
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    const key = newKey();
    const hold = newHold();
    const client = new AbortController();
    const gone = send(`/hold/${hold}/disconnect`, { key, body: 'x', signal: client.signal });
    await until(async () => (await originCalls(key)) === 1, 'the first request to reach the origin');
    client.abort();
    await expect(gone).rejects.toThrow();
    expect((await storedRecord(key))?.state).toBe('in_flight');
    // Only now does the origin answer: the client had gone before it did.
    await release(hold);
    await until(async () => (await storedRecord(key))?.state === 'complete', 'the attempt to store its answer');
    // The Worker still writes the attempt's log line, though its client had gone.
    await until(
      () => lines.some((line) => line.includes('"outcome":"executed"') && line.includes('"status":200')),
      'the executed log line',
    );
    log.mockRestore();
    const retry = await send(`/hold/${hold}/disconnect`, { key, body: 'x' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replay')).toBe('true');
    expect(((await retry.json()) as { call: number }).call).toBe(1);
    expect(await originCalls(key)).toBe(1);
  });
});
