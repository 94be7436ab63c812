/**
 * Client, origin and runtime faults against the real `wrangler dev` process. ORIGIN_TIMEOUT_MS is 1 s and
 * ORIGIN_LEASE_MS 3 s here, so the timing windows are short. Waits poll what the proxy reports about a key
 * (its key API) or what the origin has seen, and time bounds come from the stored lease, never from a guess. Where
 * an event must come while the origin is still working, the origin holds its answer until the test releases it.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { startTestOrigin } from '../origin/server';
import {
  keyInfo,
  newStateDir,
  originCount,
  problemCode,
  proxyForFile,
  release,
  removeDir,
  send,
  startProxy,
  until,
  whole,
} from './harness';
import { kvKeys, objectFiles, storedAlarm, storedExpiry, userTables } from './wire';

const VARS = { ORIGIN_TIMEOUT_MS: '1000', ORIGIN_LEASE_MS: '3000' };
const shared = proxyForFile(VARS);

// wrangler dev does not pass a client's closed connection on to the Worker (platform-facts.md), so these show what a
// client that gives up sees on its retry; the disconnect the Worker itself sees is worker/client-disconnect's.
describe('client faults', () => {
  it('a client that gives up mid-flight and retries gets the original outcome, with no second origin call', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    const path = `/hold/${hold}/disconnect`;
    const client = new AbortController();
    const gone = send(shared.proxy.url, path, { key, body: 'x', signal: client.signal });
    // The client gives up once its request has reached the origin, which holds it until then.
    await until(async () => (await originCount(shared.origin.url, { key })) === 1);
    client.abort();
    await expect(gone).rejects.toThrow();
    await release(shared.origin.url, hold);
    await until(async () => (await keyInfo(shared.proxy.url, key)).state === 'complete');
    const retry = await send(shared.proxy.url, path, { key, body: 'x' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replay')).toBe('true');
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('a retry after the client gave up, while the origin still works, joins that attempt', async () => {
    const key = randomUUID();
    const [head, rest] = [randomUUID(), randomUUID()];
    // The origin holds its answer's head until `head` is released, and the rest of its body until `rest` is.
    const path = `/drip/0/join?hold=${head}&pause=${rest}`;
    const client = new AbortController();
    const gone = send(shared.proxy.url, path, { key, body: 'x', signal: client.signal });
    await until(async () => (await originCount(shared.origin.url, { key })) === 1);
    client.abort();
    await expect(gone).rejects.toThrow();
    await release(shared.origin.url, head);
    // Still running when the retry comes: the retry joins it (its head while the origin still holds the rest).
    const joined = await send(shared.proxy.url, path, { key, body: 'x' });
    expect(joined.status).toBe(200);
    expect(joined.headers.get('idempotent-replay')).toBe('true');
    expect((await keyInfo(shared.proxy.url, key)).state).toBe('in_flight');
    await release(shared.origin.url, rest);
    expect(await joined.text()).toBe('partial-rest!!');
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });
});

describe('origin faults', () => {
  it('origin down: 502 origin_unreachable, nothing stored, and the key works once the origin is back', async () => {
    // An origin of its own, switched "down" (every connection reset) and back up on the port it bound.
    const origin = await startTestOrigin();
    const downDir = newStateDir();
    const downProxy = await startProxy({ originUrl: origin.url, stateDir: downDir, vars: VARS });
    try {
      origin.setDown(true);
      const key = randomUUID();
      expect(await problemCode(await send(downProxy.url, '/echo/down', { key, body: 'x' }))).toBe('origin_unreachable');
      expect(await problemCode(await send(downProxy.url, '/echo/down', { key, body: 'x' }))).toBe('origin_unreachable');
      origin.setDown(false);
      const res = await send(downProxy.url, '/echo/down', { key, body: 'x' });
      expect(res.status).toBe(200);
      expect(res.headers.get('idempotent-replay')).toBeNull();
      expect((await send(downProxy.url, '/echo/down', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
      expect(await originCount(origin.url, { key })).toBe(1);
    } finally {
      await downProxy.stop();
      await origin.close();
      removeDir(downDir);
    }
  });

  it('origin slower than ORIGIN_TIMEOUT_MS: 504 origin_timeout, then the late answer is replayed', async () => {
    const key = randomUUID();
    const hold = randomUUID();
    const path = `/hold/${hold}/late`;
    // The origin answers only once the 504 has come.
    expect(await problemCode(await send(shared.proxy.url, path, { key, body: 'x' }))).toBe('origin_timeout');
    await release(shared.origin.url, hold);
    // Stored by the attempt itself: the replay below cannot have joined a running attempt.
    await until(async () => (await keyInfo(shared.proxy.url, key)).state === 'complete');
    const replay = await send(shared.proxy.url, path, { key, body: 'x' });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('5xx then success: the 5xx is not stored, the success is', async () => {
    const key = randomUUID();
    // Each read to its end: a retry after the status alone could join the attempt and get its 503 as a replay.
    expect((await whole(send(shared.proxy.url, '/fail-first/2/flap', { key, body: 'x' }))).status).toBe(503);
    expect((await whole(send(shared.proxy.url, '/fail-first/2/flap', { key, body: 'x' }))).status).toBe(503);
    expect((await whole(send(shared.proxy.url, '/fail-first/2/flap', { key, body: 'x' }))).status).toBe(200);
    expect((await send(shared.proxy.url, '/fail-first/2/flap', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCount(shared.origin.url, { key })).toBe(3);
  });

  // Issue #18: a 200 status line arrived, so the write ran; the broken body must not free the key.
  it('a connection reset mid-body after a 200: the first client sees its body break off, then 502 origin_response_lost, state lost, never a second call', async () => {
    const key = randomUUID();
    // The first client gets the answer as the origin sent it: its status, then a body that breaks off.
    const first = await send(shared.proxy.url, '/reset/mid-body', { key, body: 'x' });
    expect(first.status).toBe(200);
    await expect(first.arrayBuffer()).rejects.toThrow();
    expect(await problemCode(await send(shared.proxy.url, '/reset/mid-body', { key, body: 'x' }))).toBe('origin_response_lost');
    expect(await problemCode(await send(shared.proxy.url, '/reset/mid-body', { key, body: 'x' }))).toBe('origin_response_lost');
    expect(await keyInfo(shared.proxy.url, key)).toMatchObject({ state: 'lost', status: 200 });
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });

  it('large, binary and multi-cookie answers replay byte for byte', async () => {
    const key = randomUUID();
    const size = 3 * 1024 * 1024 + 17;
    const first = Buffer.from(await (await send(shared.proxy.url, `/bytes/${size}/big`, { key, body: 'x' })).arrayBuffer());
    const replayRes = await send(shared.proxy.url, `/bytes/${size}/big`, { key, body: 'x' });
    expect(replayRes.headers.get('idempotent-replay')).toBe('true');
    const replay = Buffer.from(await replayRes.arrayBuffer());
    expect(first.length).toBe(size);
    expect(replay.equals(first)).toBe(true);

    expect(await originCount(shared.origin.url, { key })).toBe(1);

    const cookieKey = randomUUID();
    const cookieFirst = await send(shared.proxy.url, '/cookies/e2e', { key: cookieKey, body: 'x' });
    const cookies = await send(shared.proxy.url, '/cookies/e2e', { key: cookieKey, body: 'x' });
    expect(cookies.headers.get('idempotent-replay')).toBe('true');
    expect(cookies.headers.getSetCookie()).toEqual(['a=1; Path=/; HttpOnly', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT', 'c=3']);
    expect(cookies.headers.getSetCookie()).toEqual(cookieFirst.headers.getSetCookie());
    expect(await originCount(shared.origin.url, { key: cookieKey })).toBe(1);
  });
});

describe('runtime faults', () => {
  it('SIGKILL mid-flight, restart on the same state: 409 in_progress until the lease ends, then one more origin call with the same key', async () => {
    const dir = newStateDir();
    // A lease long enough to outlast the restart, so the window in which the key is held is observed.
    const LEASE = 8000;
    const vars = { ORIGIN_TIMEOUT_MS: '1000', ORIGIN_LEASE_MS: String(LEASE) };
    let crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars });
    try {
      const stored = randomUUID();
      // Read to its end: stored before the crash.
      expect((await whole(send(crashing.url, '/status/201/before-crash', { key: stored, body: 'x' }))).status).toBe(201);

      const key = randomUUID();
      const hold = randomUUID();
      const path = `/hold/${hold}/crash`;
      const inflight = send(crashing.url, path, { key, body: 'x' }).catch((error: unknown) => error);
      // Killed while the origin holds the call: the attempt may have run.
      await until(async () => (await originCount(shared.origin.url, { key })) === 1);
      await crashing.kill();
      expect(await inflight).toBeInstanceOf(Error);
      // From now on the origin answers at once: only the stored lease holds the key.
      await release(shared.origin.url, hold);

      // Same state directory; the restarted process picks a port of its own (nothing needs the old one).
      crashing = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars });
      // Nothing stored before the crash is lost or corrupted.
      const replay = await send(crashing.url, '/status/201/before-crash', { key: stored, body: 'x' });
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replay')).toBe('true');

      // Within the lease the key is held: the first attempt may have reached the origin.
      const { state, lease_until: leaseUntil } = await keyInfo(crashing.url, key);
      expect(state).toBe('in_flight');
      const asked = Date.now();
      const held = await send(crashing.url, path, { key, body: 'x' });
      const retryAfter = Number(held.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      // Retry-After rounds the rest of the stored lease up to whole seconds.
      expect(retryAfter).toBeLessThanOrEqual(Math.max(1, Math.ceil((leaseUntil! - asked) / 1000)));
      expect(await problemCode(held)).toBe('idempotency_key_in_progress');
      // After the lease the key runs again, exactly once more, and is then stored.
      await until(() => Date.now() > leaseUntil!);
      const again = await send(crashing.url, path, { key, body: 'x' });
      expect(again.status).toBe(200);
      expect((await send(crashing.url, path, { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
      expect(await originCount(shared.origin.url, { key })).toBe(2);
    } finally {
      await crashing.stop();
      removeDir(dir);
    }
  });

  it('state survives a clean restart', async () => {
    const dir = newStateDir();
    let running = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars: VARS });
    try {
      const key = randomUUID();
      const first = await (await send(running.url, '/echo/restart', { key, body: 'x' })).text();
      await running.stop();
      running = await startProxy({ originUrl: shared.origin.url, stateDir: dir, vars: VARS });
      const replay = await send(running.url, '/echo/restart', { key, body: 'x' });
      expect(replay.headers.get('idempotent-replay')).toBe('true');
      expect(await replay.text()).toBe(first);
      expect(await originCount(shared.origin.url, { key })).toBe(1);
    } finally {
      await running.stop();
      removeDir(dir);
    }
  });

  it("the expiry alarm deletes the object's storage (the SQLite file holds no table and no alarm)", async () => {
    const dir = newStateDir();
    const running = await startProxy({
      originUrl: shared.origin.url,
      stateDir: dir,
      vars: { IDEMPOTENCY_TTL_SECONDS: '2', ORIGIN_TIMEOUT_MS: '1000', ORIGIN_LEASE_MS: '1500' },
    });
    try {
      const key = randomUUID();
      expect((await whole(send(running.url, '/status/201/expire', { key, body: 'x' }))).status).toBe(201);
      const [file] = objectFiles(dir);
      expect(file).toBeDefined();
      // Format 5: the record is a KV value, no table of its own.
      expect([kvKeys(file!), userTables(file!)]).toEqual([['record'], []]);
      // The alarm is set for the record's expiry.
      expect(storedAlarm(file!)).toBe(storedExpiry(file!));
      await until(() => kvKeys(file!).length === 0, 'the expiry alarm to empty the object');
      expect(userTables(file!)).toEqual([]);
      // deleteAll() took the alarm with it (compatibility date >= 2026-02-24): nothing is left to fire.
      expect(storedAlarm(file!)).toBeNull();
      // The key runs again after expiry.
      expect((await send(running.url, '/status/201/expire', { key, body: 'x' })).headers.get('idempotent-replay')).toBeNull();
      expect(await originCount(shared.origin.url, { key })).toBe(2);
    } finally {
      await running.stop();
      removeDir(dir);
    }
  });
});
