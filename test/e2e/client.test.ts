/**
 * `idempotentFetch` against the proxy under `wrangler dev`, in front of the counting origin. ORIGIN_TIMEOUT_MS
 * is 3 s here (a client attempt timeout of 1 s fits well below it) and ORIGIN_LEASE_MS 8 s. Waits poll the
 * origin's counts or the key API; the client's own waits are the server's Retry-After or a short backoff.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { idempotentFetch, type RetryEvent } from '../../src/client/index.ts';
import { keyInfo, originCount, problemCode, proxyForFile, release, send, until } from './harness';

// Short-lived keys on two paths (#28): a stored 4xx that asks for a retry after 1.5 s (TTL 2 s), and one that asks
// after 250 ms (TTL 4 s).
const ROUTES = [
  { pattern: '/retryable/400/1500/*', ttl_seconds: 2 },
  { pattern: '/retryable/400/250/*', ttl_seconds: 4 },
];
const shared = proxyForFile({ ORIGIN_TIMEOUT_MS: '3000', ORIGIN_LEASE_MS: '8000', IDEMPOTENCY_ROUTES: JSON.stringify(ROUTES) });
const headers = { authorization: 'Bearer e2e-token' };
const url = (path: string) => `${shared.proxy.url}${path}`;
/** Quick backoff: these tests are about what is retried, not about how long the client waits. */
const quick = { initialDelayMs: 1, maxDelayMs: 2 };

/** A `fetch` for the client that counts the attempts leaving it. */
function counting(): { sent: Request[]; fetch: (request: Request) => Promise<Response> } {
  const sent: Request[] = [];
  return { sent, fetch: (request) => (sent.push(request), fetch(request)) };
}

describe('idempotentFetch through the proxy', () => {
  it('a first attempt that times out on the client is retried with its key and gets the replay: the origin runs once', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    const events: RetryEvent[] = [];
    // The origin holds the call until the client's attempt has timed out.
    const res = await idempotentFetch(url(`/hold/${hold}/timeout-${key}`), {
      method: 'POST',
      headers,
      body: 'charge',
      idempotency: {
        ...quick,
        key,
        attemptTimeoutMs: 1000,
        // Retry once the first attempt, which the proxy carries on, has stored its answer.
        onRetry: async (event) => {
          events.push(event);
          await release(shared.origin.url, hold);
          await until(async () => (await keyInfo(shared.proxy.url, key)).state === 'complete');
        },
      },
    });
    expect(res.status).toBe(200);
    expect(idempotentFetch.info(res)).toMatchObject({ key, attempts: 2, replayed: true });
    expect(events.map((event) => (event.error as Error).name)).toEqual(['TimeoutError']);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('a stored 4xx that asks for a retry after 1.5 s under a 2 s TTL is never retried past the key’s expiry: the origin runs once (#28)', async () => {
    const key = randomUUID();
    const { sent, fetch } = counting();
    const res = await idempotentFetch(url(`/retryable/400/1500/issue-${key}`), {
      method: 'POST',
      headers,
      body: 'x',
      idempotency: { key, fetch },
    });
    expect(res.status).toBe(400);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
    expect(idempotentFetch.info(res)?.attempts).toBe(sent.length);
  });

  it('replays of it are retried while the key protects, read by Date + Age, then no more: the origin runs once (#28)', async () => {
    const key = randomUUID();
    const { sent, fetch } = counting();
    const ages: (string | null)[] = [];
    const res = await idempotentFetch(url(`/retryable/400/250/ages-${key}`), {
      method: 'POST',
      headers,
      body: 'x',
      // 40 retries 250 ms apart would take 10 s: far past the key's 4 s.
      idempotency: { key, retries: 40, fetch, onRetry: ({ response }) => void ages.push(response?.headers.get('age') ?? null) },
    });
    expect(await originCount(shared.origin.url, { key })).toBe(1);
    const info = idempotentFetch.info(res)!;
    expect(info).toMatchObject({ replayed: true });
    expect(info.attempts).toBeGreaterThan(1);
    expect(info.attempts).toBeLessThan(41);
    expect(sent).toHaveLength(info.attempts);
    // The first answer is the origin's own; every replay says its age.
    expect(ages[0]).toBeNull();
    expect(ages.slice(1).every((age) => age !== null && /^\d+$/.test(age))).toBe(true);
  });

  it('a key reused with another body stops at once: one request, the 409 returned', async () => {
    const key = randomUUID();
    const path = `/echo/reuse-${key}`;
    expect((await idempotentFetch(url(path), { method: 'POST', headers, body: 'a', idempotency: { key } })).status).toBe(200);
    const { sent, fetch } = counting();
    const res = await idempotentFetch(url(path), { method: 'POST', headers, body: 'b', idempotency: { ...quick, key, fetch } });
    expect(res.status).toBe(409);
    expect(await problemCode(res)).toBe('idempotency_key_reused');
    expect(sent).toHaveLength(1);
    expect(idempotentFetch.info(res)).toMatchObject({ key, attempts: 1, replayed: false });
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('an in-progress answer is waited out for Retry-After, then the replay comes: the origin runs once', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    // The origin holds the call until both clients have been told it is in progress.
    const path = `/hold/${hold}/busy-${key}`;
    const first = send(shared.proxy.url, path, { key, body: 'x' });
    await until(async () => (await originCount(shared.origin.url, { key })) === 1);
    const events: RetryEvent[] = [];
    let waiting!: () => void;
    const told = new Promise<void>((resolve) => (waiting = resolve));
    // Asked to wait longer than it will: it returns the 409 as it is.
    const asking = idempotentFetch(url(path), { method: 'POST', headers, body: 'x', idempotency: { key, maxRetryAfterMs: 0 } });
    const patient = idempotentFetch(url(path), {
      method: 'POST',
      headers,
      body: 'x',
      idempotency: { key, onRetry: (event) => void (events.push(event), waiting()) },
    });
    const impatient = await asking;
    await told;
    expect(await problemCode(await first)).toBe('origin_timeout');
    await release(shared.origin.url, hold);
    const res = await patient;
    expect([impatient.status, idempotentFetch.info(impatient)?.attempts]).toEqual([409, 1]);
    expect(res.status).toBe(200);
    expect(idempotentFetch.info(res)).toMatchObject({ key, replayed: true });
    const [waited] = events;
    expect([waited?.response?.status, waited?.code]).toEqual([409, 'idempotency_key_in_progress']);
    const asked = waited!.response!.headers;
    expect(waited!.delayMs).toBe(Number(asked.get('retry-after-ms') ?? Number(asked.get('retry-after')) * 1000));
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('a 503 marked x-should-retry: false is returned without a retry; a plain 503 is retried', async () => {
    const key = randomUUID();
    const res = await idempotentFetch(url(`/no-retry/503/advice-${key}`), {
      method: 'POST',
      headers,
      body: 'x',
      idempotency: { ...quick, key },
    });
    expect([res.status, res.headers.get('x-should-retry')]).toEqual([503, 'false']);
    expect(idempotentFetch.info(res)?.attempts).toBe(1);
    expect(await originCount(shared.origin.url, { key })).toBe(1);

    const plain = randomUUID();
    const retried = await idempotentFetch(url(`/status/503/advice-${plain}`), {
      method: 'POST',
      headers,
      body: 'x',
      // Each retry once the key is free again: a retry sent on the status alone may join the attempt that answered it.
      idempotency: {
        ...quick,
        key: plain,
        retries: 2,
        onRetry: () => until(async () => (await keyInfo(shared.proxy.url, plain)).state === undefined, 'the 503 to free the key'),
      },
    });
    expect(idempotentFetch.info(retried)?.attempts).toBe(3);
    expect(await originCount(shared.origin.url, { key: plain })).toBe(3);
  });

  it("init.signal aborted during a backoff wait rejects with the signal's reason, and nothing more is sent", async () => {
    const key = randomUUID();
    const controller = new AbortController();
    const reason = new Error('the user left');
    let retrying = false;
    const operation = idempotentFetch(url(`/status/503/abort-wait-${key}`), {
      method: 'POST',
      headers,
      body: 'x',
      signal: controller.signal,
      // A wait longer than the test may take: only the abort can end it in time.
      idempotency: { key, initialDelayMs: 600_000, maxDelayMs: 600_000, onRetry: () => void (retrying = true) },
    });
    await until(() => retrying);
    controller.abort(reason);
    await expect(operation).rejects.toBe(reason);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it("idempotency.signal aborted during an attempt rejects with the signal's reason, without a retry", async () => {
    const key = randomUUID();
    const controller = new AbortController();
    const reason = new Error('cancelled');
    const events: RetryEvent[] = [];
    const hold = randomUUID();
    // The origin holds the call until the attempt has been aborted (released at the end).
    const operation = idempotentFetch(url(`/hold/${hold}/abort-attempt-${key}`), {
      method: 'POST',
      headers,
      body: 'x',
      idempotency: { ...quick, key, signal: controller.signal, onRetry: (event) => void events.push(event) },
    });
    await until(async () => (await originCount(shared.origin.url, { key })) === 1);
    controller.abort(reason);
    await expect(operation).rejects.toBe(reason);
    expect(events).toEqual([]);
    await release(shared.origin.url, hold);
  });
});
