/**
 * Streaming answers (issue #19) end to end: the proxy under `wrangler dev`, a real origin sending server-sent events,
 * clients reading over real sockets. "Before its end" is shown by state: the origin pauses its stream (`?pause=<id>`)
 * until the key API has reported the attempt in flight.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { indexes, range, readEvents, rest } from '../origin/events';
import { keyInfo, originCount, problemCode, proxyForFile, release, send, until } from './harness';

// Streams of 2 s under a 1 s ORIGIN_TIMEOUT_MS; a 2000-byte limit that padded events outgrow.
const shared = proxyForFile({ ORIGIN_TIMEOUT_MS: '1000', ORIGIN_LEASE_MS: '10000', MAX_BODY_BYTES: '2000' });

describe('streaming through wrangler dev', () => {
  it('the first event of a 2 s SSE answer arrives while the origin still sends; the whole stream outlasts ORIGIN_TIMEOUT_MS and replays byte-exact', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    // One event, then the origin waits for the release; the other 19 take 1.9 s, longer than ORIGIN_TIMEOUT_MS.
    const path = `/sse/20/100/e2e-first?pause=${hold}`;
    const first = await send(shared.proxy.url, path, { key, body: 'x' });
    expect([first.status, first.headers.get('content-type')]).toEqual([200, 'text/event-stream']);
    const head = await readEvents(first, 1);
    expect((await keyInfo(shared.proxy.url, key)).state).toBe('in_flight');
    await release(shared.origin.url, hold);
    const whole = head.text + (await rest(head.reader));
    expect(indexes(whole)).toEqual(range(20));
    const replay = await send(shared.proxy.url, path, { key, body: 'x' });
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await replay.text()).toBe(whole);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('a duplicate joins the live answer: the same bytes, marked as a replay, one origin call', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    // Four events, then the origin waits for the release: the duplicate comes while it is still sending.
    const path = `/sse/20/50/e2e-join?pause=${hold}&at=4`;
    const first = await send(shared.proxy.url, path, { key, body: 'x' });
    const head = await readEvents(first, 3);
    const joined = await send(shared.proxy.url, path, { key, body: 'x' });
    expect(joined.headers.get('idempotent-replay')).toBe('true');
    expect((await keyInfo(shared.proxy.url, key)).state).toBe('in_flight');
    await release(shared.origin.url, hold);
    const [mine, theirs] = await Promise.all([rest(head.reader), joined.text()]);
    expect(theirs).toBe(head.text + mine);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('a first client that disconnects mid-stream: the answer is still read to its end, stored, and replayed whole', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    // Two events, then the origin waits for the release: the client goes away mid-stream.
    const path = `/sse/15/50/e2e-gone?pause=${hold}&at=2`;
    const client = new AbortController();
    const first = await send(shared.proxy.url, path, { key, body: 'x', signal: client.signal });
    await readEvents(first, 2);
    client.abort();
    expect((await keyInfo(shared.proxy.url, key)).state).toBe('in_flight');
    await release(shared.origin.url, hold);
    await until(async () => (await keyInfo(shared.proxy.url, key)).state === 'complete', 'the abandoned answer to be stored');
    const retry = await send(shared.proxy.url, path, { key, body: 'x' });
    expect(retry.headers.get('idempotent-replay')).toBe('true');
    expect(indexes(await retry.text())).toEqual(range(15));
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('an answer over MAX_BODY_BYTES reaches the first client whole; the key then answers 502 response_too_large', async () => {
    const key = randomUUID();
    const path = '/sse/20/50/e2e-over-limit?pad=200';
    const first = await send(shared.proxy.url, path, { key, body: 'x' });
    expect(indexes(await first.text())).toEqual(range(20));
    expect(await problemCode(await send(shared.proxy.url, path, { key, body: 'x' }))).toBe('response_too_large');
    expect((await keyInfo(shared.proxy.url, key)).state).toBe('too_large');
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });
});
