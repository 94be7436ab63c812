/**
 * `idempotentFetch` against the real counting origin, without the proxy: what it sends on each attempt (the
 * same key, the same bytes), which requests it retries, and that it stops before the key's
 * `Idempotency-Expires` (a header today's proxy does not send yet; the origin's `/expiring/` path stands in for
 * the server that will). Against the proxy: test/e2e/client.test.ts.
 */
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotentFetch } from '../../src/client/index.ts';
import { startTestOrigin, type SeenRequest, type TestOrigin } from '../origin/server.ts';

let origin: TestOrigin;
beforeAll(async () => {
  origin = await startTestOrigin();
});
afterAll(() => origin?.close());

const calls = async (path: string) => ((await (await fetch(`${origin.url}/__calls?path=${path}`)).json()) as { count: number }).count;
const lastSeen = async (key: string) => (await (await fetch(`${origin.url}/__last?key=${encodeURIComponent(key)}`)).json()) as SeenRequest;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
/** Quick retries: these tests are about what is retried, not about how long it waits. */
const quick = { initialDelayMs: 1, maxDelayMs: 2 };

describe('every attempt sends the same request', () => {
  it('a stream body is read once and resent byte for byte, with one key that onKey saw first', async () => {
    const bytes = new TextEncoder().encode('{"amount":500}'.repeat(1000));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 5000));
        controller.enqueue(bytes.subarray(5000));
        controller.close();
      },
    });
    const seenKeys: string[] = [];
    const path = `/fail-first/1/stream-${randomUUID()}`;
    const res = await idempotentFetch(`${origin.url}${path}`, {
      method: 'POST',
      body: stream,
      idempotency: {
        ...quick,
        // Awaited before the first attempt: the origin has seen nothing yet.
        onKey: async (key) => {
          seenKeys.push(key);
          expect(await calls(path)).toBe(0);
        },
      },
    });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as SeenRequest & { call: number };
    expect(echo.call).toBe(2);
    expect([echo.bodyLength, echo.bodySha256]).toEqual([bytes.length, sha256(bytes)]);
    const info = idempotentFetch.info(res)!;
    expect(info).toEqual({ key: seenKeys[0], attempts: 2, replayed: false, expiresAt: null });
    expect(seenKeys).toHaveLength(1);
    expect(echo.headers['idempotency-key']).toBe(info.key);
    expect(await calls(path)).toBe(2);
  });

  it('a Request is cloned per attempt and left unused; its own Idempotency-Key header is the key', async () => {
    const key = `caller-${randomUUID()}`;
    const path = `/fail-first/2/request-${randomUUID()}`;
    const input = new Request(`${origin.url}${path}`, { method: 'POST', body: 'abc', headers: { 'idempotency-key': key } });
    const res = await idempotentFetch(input, { idempotency: quick });
    expect(res.status).toBe(200);
    expect(idempotentFetch.info(res)).toMatchObject({ key, attempts: 3 });
    expect(input.bodyUsed).toBe(false);
    expect((await lastSeen(key)).bodySha256).toBe(sha256(new TextEncoder().encode('abc')));
  });

  it('refuses a key that differs from the request’s header, and bad options, before sending anything', async () => {
    const path = `/echo/refused-${randomUUID()}`;
    const url = `${origin.url}${path}`;
    await expect(idempotentFetch(url, { method: 'POST', headers: { 'idempotency-key': 'a' }, idempotency: { key: 'b' } })).rejects.toThrow(
      TypeError,
    );
    await expect(idempotentFetch(url, { method: 'POST', idempotency: { retries: -1 } })).rejects.toThrow(TypeError);
    await expect(idempotentFetch(url, { method: 'POST', idempotency: { key: '' } })).rejects.toThrow(TypeError);
    expect(await calls(path)).toBe(0);
  });
});

describe('which requests are retried', () => {
  it('a read is retried without a key', async () => {
    const path = `/status/503/read-${randomUUID()}`;
    const res = await idempotentFetch(`${origin.url}${path}`, { idempotency: { ...quick, retries: 2 } });
    expect(res.status).toBe(503);
    expect(idempotentFetch.info(res)).toMatchObject({ key: null, attempts: 3 });
    expect(await calls(path)).toBe(3);
    expect((await lastSeen('')).headers['idempotency-key']).toBeUndefined();
  });

  it('another method without a key is sent once; given a key, it is retried', async () => {
    const once = `/status/503/purge-${randomUUID()}`;
    expect(idempotentFetch.info(await idempotentFetch(`${origin.url}${once}`, { method: 'PURGE', idempotency: quick }))).toMatchObject({
      key: null,
      attempts: 1,
    });
    expect(await calls(once)).toBe(1);
    const keyed = `/status/503/purge-${randomUUID()}`;
    await idempotentFetch(`${origin.url}${keyed}`, { method: 'PURGE', idempotency: { ...quick, key: randomUUID(), retries: 1 } });
    expect(await calls(keyed)).toBe(2);
  });

  it('a network error is retried with the same key and, when retries run out, rethrown with its info', async () => {
    const requests: Request[] = [];
    const send = (request: Request) => (requests.push(request), fetch(request));
    const error = await idempotentFetch(`${origin.url}/refuse/net`, {
      method: 'POST',
      body: 'x',
      idempotency: { ...quick, retries: 2, fetch: send },
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TypeError);
    const info = idempotentFetch.info(error)!;
    expect(info.attempts).toBe(3);
    expect(requests.map((request) => request.headers.get('idempotency-key'))).toEqual([info.key, info.key, info.key]);
  });
});

describe('Idempotency-Expires', () => {
  it('no retry is sent, nor waited for, when it would land after the key expires', async () => {
    const path = `/expiring/2/503/soon-${randomUUID()}`;
    const res = await idempotentFetch(`${origin.url}${path}`, {
      method: 'POST',
      idempotency: { initialDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    expect(res.status).toBe(503);
    const info = idempotentFetch.info(res)!;
    expect(info.attempts).toBe(1);
    expect(info.expiresAt?.getTime()).toBeGreaterThan(Date.now() - 3000);
    expect(await calls(path)).toBe(1);
  });

  it('no retry after a network error is sent past the key’s expiry either (#28)', async () => {
    const path = `/expiring/3/503/network-${randomUUID()}`;
    const sent: number[] = [];
    let expires: string | null = null;
    // The first attempt gets the 503 and its key's expiry (3 s); every later one meets a connection the origin resets.
    const send = async (request: Request) => {
      sent.push(Date.now());
      if (sent.length === 2) origin.setDown(true);
      const res = await fetch(request);
      expires ??= res.headers.get('idempotency-expires');
      return res;
    };
    try {
      const error = await idempotentFetch(`${origin.url}${path}`, {
        method: 'POST',
        idempotency: { retries: 60, initialDelayMs: 100, maxDelayMs: 100, fetch: send },
      }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(TypeError);
      const { attempts } = idempotentFetch.info(error)!;
      // It retried the network errors, and stopped for the key's expiry, not because its retries ran out.
      expect(attempts).toBe(sent.length);
      expect(attempts).toBeGreaterThan(2);
      expect(attempts).toBeLessThan(61);
      const expiresAt = Date.parse(expires!);
      for (const at of sent) expect(at).toBeLessThan(expiresAt);
    } finally {
      origin.setDown(false);
    }
    expect(await calls(path)).toBe(1);
  });

  it('a key that still protects long enough is retried', async () => {
    const path = `/expiring/600/503/later-${randomUUID()}`;
    const res = await idempotentFetch(`${origin.url}${path}`, { method: 'POST', idempotency: { ...quick, retries: 2 } });
    expect(idempotentFetch.info(res)!.attempts).toBe(3);
    expect(await calls(path)).toBe(3);
  });
});
