/**
 * The contract (docs/contract.md), behaviour by behaviour, through the real Worker entry point
 * (`exports.default`) in front of the real test origin that counts its calls.
 */
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { MAX_KEY_LENGTH } from '../../src/shared/key';
import {
  codeOf,
  expectProblem,
  newHold,
  newKey,
  originCalls,
  originPathCalls,
  originUrl,
  recordStub,
  release,
  send,
  sendWith,
  storedRecord,
  until,
  whole,
} from './helpers';

const json = { 'content-type': 'application/json' };
/** A wait for the origin's answer that outlasts any hold in these tests, however loaded the machine. */
const LONG_WAIT = { ORIGIN_TIMEOUT_MS: '20000', ORIGIN_LEASE_MS: '20000' };

/** An answer that began with `status` and whose body then broke off, as the origin broke it. */
async function expectBrokenOff(res: Response, status: number): Promise<void> {
  expect([res.status, res.headers.get('idempotent-replay')]).toEqual([status, null]);
  await expect(res.arrayBuffer()).rejects.toThrow();
}

describe('which requests are made idempotent', () => {
  it.each(['POST', 'PUT', 'PATCH', 'DELETE'])('handles %s with a key idempotently', async (method) => {
    const key = newKey();
    const a = await send('/echo/m', { method, key, body: 'x' });
    const b = await send('/echo/m', { method, key, body: 'x' });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(b.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it.each(['GET', 'HEAD', 'OPTIONS'])('passes %s through and ignores the key', async (method) => {
    const key = newKey();
    const a = await send('/echo/read', { method, key });
    const b = await send('/echo/read', { method, key });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(b.headers.get('idempotent-replay')).toBeNull();
    expect(await originCalls(key)).toBe(2);
  });

  it('passes a write without a key through (REQUIRE_IDEMPOTENCY_KEY off)', async () => {
    const marker = newKey();
    const path = `/echo/nokey-${marker}`;
    for (let i = 0; i < 2; i++) {
      const res = await send(path, { body: 'x', headers: { 'x-marker': marker } });
      expect(res.headers.get('idempotent-replay')).toBeNull();
      expect(((await res.json()) as { headers: Record<string, string> }).headers['x-marker']).toBe(marker);
    }
    expect(await originPathCalls(path)).toBe(2);
  });

  it('refuses a keyed write without Authorization with 401 credential_missing, twice, storing nothing (#28)', async () => {
    const key = newKey();
    await expectProblem(await send('/echo/anon', { key, auth: null, body: 'x' }), 401, 'credential_missing');
    await expectProblem(await send('/echo/anon', { key, auth: null, body: 'x' }), 401, 'credential_missing');
    expect(await originCalls(key)).toBe(0);
    // Not stored under the empty credential, nor in the anonymous scope.
    expect(await storedRecord(key, '')).toBeUndefined();
    expect(await storedRecord(key, '', 'proxy', 'anonymous')).toBeUndefined();
  });

  it('rejects an empty or malformed Authorization with 400 authorization_invalid', async () => {
    const key = newKey();
    // exports.default's transport drops empty headers, so this goes through app.request().
    await expectProblem(await sendWith({}, '/echo/x', { key, auth: '', body: 'x' }), 400, 'authorization_invalid');
    await expectProblem(await sendWith({}, '/echo/x', { key, auth: '   ', body: 'x' }), 400, 'authorization_invalid');
    await expectProblem(await sendWith({}, '/echo/x', { key, auth: 'Bearer a\x01b', body: 'x' }), 400, 'authorization_invalid');
    await expectProblem(await sendWith({}, '/echo/x', { key, auth: 'Bearer caf\xe9', body: 'x' }), 400, 'authorization_invalid');
    expect(await originCalls(key)).toBe(0);
  });
});

describe('Idempotency-Key syntax', () => {
  const cases: [string, string][] = [
    ['an empty key', ''],
    // 129: the contract's bound written out, so that moving MAX_KEY_LENGTH fails this.
    ['a key one character too long', 'k'.repeat(129)],
    ['a 10,000 character key', 'k'.repeat(10_000)],
    ['a key with a space', 'a b'],
    ['a key with a tab', 'a\tb'],
    ['a key with a control character', 'a\x01b'],
    ['a key with non-ASCII bytes', 'caf\xe9'],
    ['a malformed quoted key', '"abc'],
    ['a quoted key with parameters', '"abc";p=1'],
    ['a quoted key containing a space', '"a b"'],
  ];
  it.each(cases)('rejects %s with 400 idempotency_key_invalid, without calling the origin', async (_, key) => {
    const path = `/echo/${newKey()}`;
    await expectProblem(await sendWith({}, path, { key, body: 'x' }), 400, 'idempotency_key_invalid');
    expect(await originPathCalls(path)).toBe(0);
  });

  it('rejects several Idempotency-Key headers', async () => {
    const headers = new Headers({ authorization: 'Bearer t' });
    headers.append('idempotency-key', 'one');
    headers.append('idempotency-key', 'two');
    const { exports } = await import('cloudflare:workers');
    await expectProblem(
      await exports.default.fetch('https://proxy.test/echo/multi', { method: 'POST', headers, body: 'x' }),
      400,
      'idempotency_key_invalid',
    );
  });

  it('accepts a 128 character key', async () => {
    const key = newKey().replaceAll('-', '').repeat(4); // 128 characters
    expect(key.length).toBe(MAX_KEY_LENGTH);
    expect((await send('/echo/long', { key, body: 'x' })).status).toBe(200);
    expect((await send('/echo/long', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
  });

  it('treats the RFC 8941 quoted form as the same key, and forwards the bare key', async () => {
    const key = newKey();
    const a = await send('/echo/quoted', { key: `"${key}"`, body: 'x' });
    const b = await send('/echo/quoted', { key, body: 'x' });
    expect(((await a.json()) as { headers: Record<string, string> }).headers['idempotency-key']).toBe(key);
    expect(b.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('keys are scoped by credential, and the credential is never stored', () => {
  it('keeps two credentials with the same key apart', async () => {
    const key = newKey();
    const a = await send('/echo/scope', { key, auth: 'Bearer alice', body: 'same' });
    const b = await send('/echo/scope', { key, auth: 'Bearer bob', body: 'same' });
    expect(b.headers.get('idempotent-replay')).toBeNull();
    const aBody = (await a.json()) as { headers: Record<string, string> };
    const bBody = (await b.json()) as { headers: Record<string, string> };
    expect(aBody.headers.authorization).toBe('Bearer alice');
    expect(bBody.headers.authorization).toBe('Bearer bob');
    const replayB = (await (await send('/echo/scope', { key, auth: 'Bearer bob', body: 'same' })).json()) as {
      headers: Record<string, string>;
    };
    expect(replayB.headers.authorization).toBe('Bearer bob');
    expect(await originCalls(key)).toBe(2);
  });

  it('stores no trace of the token in the object', async () => {
    const key = newKey();
    const token = `Bearer secret-${newKey()}`;
    // /status answers do not echo the request, so any trace would be the proxy's own doing.
    // Read to its end: the end comes once the answer is stored.
    expect((await whole(send('/status/201/secret', { key, auth: token, body: 'x' }))).status).toBe(201);
    const dump = await runInDurableObject(await recordStub(key, token), (_, state) => {
      const tables = state.storage.sql
        .exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'`)
        .toArray();
      return tables
        .map(({ name }) =>
          JSON.stringify(state.storage.sql.exec(`SELECT * FROM "${name}"`).toArray(), (_, v: unknown) =>
            v instanceof ArrayBuffer ? new TextDecoder().decode(v) : v,
          ),
        )
        .concat(
          [...state.storage.kv.list()].map(([name, value]) =>
            JSON.stringify([name, value], (_, v: unknown) => (v instanceof ArrayBuffer ? new TextDecoder().decode(v) : v)),
          ),
        )
        .join('\n');
    });
    expect(dump).toContain('complete');
    expect(dump).not.toContain('secret-');
  });
});

describe('the request fingerprint and conflicts', () => {
  it.each([
    ['a different body', { path: '/echo/fp', body: '{"delta":501}', method: 'POST' }],
    ['a different path', { path: '/echo/fp2', body: '{"delta":500}', method: 'POST' }],
    ['a different query', { path: '/echo/fp?x=1', body: '{"delta":500}', method: 'POST' }],
    ['a different method', { path: '/echo/fp', body: '{"delta":500}', method: 'PUT' }],
  ])('answers 409 idempotency_key_reused for %s', async (_, second) => {
    const key = newKey();
    expect((await send('/echo/fp', { key, body: '{"delta":500}', headers: json })).status).toBe(200);
    await expectProblem(
      await send(second.path, { key, method: second.method, body: second.body, headers: json }),
      409,
      'idempotency_key_reused',
    );
    expect(await originCalls(key)).toBe(1);
  });

  it('ignores headers other than the key and credential in the fingerprint', async () => {
    const key = newKey();
    await whole(send('/echo/hdr', { key, body: 'b', headers: { 'x-trace': '1' } }));
    const res = await send('/echo/hdr', { key, body: 'b', headers: { 'x-trace': '2' } });
    expect(res.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('answers 409 idempotency_key_reused while the first request is still in flight', async () => {
    const key = newKey();
    const hold = newHold();
    // The origin holds the first request until the conflict has been answered (a wait that cannot end before that).
    const first = sendWith(LONG_WAIT, `/hold/${hold}/inflight`, { key, body: 'one' });
    await until(async () => (await storedRecord(key))?.state === 'in_flight');
    await expectProblem(await send(`/hold/${hold}/inflight`, { key, body: 'two' }), 409, 'idempotency_key_reused');
    expect((await storedRecord(key))?.state).toBe('in_flight');
    await release(hold);
    expect((await first).status).toBe(200);
    expect(await originCalls(key)).toBe(1);
  });
});

describe('what is stored and replayed', () => {
  it('stores and replays status, every Set-Cookie and end-to-end headers, dropping hop-by-hop ones', async () => {
    const key = newKey();
    for (const replay of [false, true]) {
      const res = await send('/cookies/c', { key, body: 'x' });
      expect(res.status).toBe(201);
      expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/; HttpOnly', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT', 'c=3']);
      expect(res.headers.get('x-hop')).toBeNull();
      expect(res.headers.get('connection')).toBeNull();
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(res.headers.get('idempotent-replay')).toBe(replay ? 'true' : null);
      await res.arrayBuffer();
    }
    expect(await originCalls(key)).toBe(1);
  });

  it.each([
    ['a keyed write', { key: newKey(), body: 'x' }],
    ['a write without a key', { body: 'x' }],
    ['a read', { method: 'GET' }],
  ])('forwards end-to-end request headers only, for %s: hop-by-hop ones and those named by Connection are dropped', async (_, init) => {
    const headers = {
      connection: 'keep-alive, x-drop-me',
      'x-drop-me': '1',
      'proxy-authorization': 'Basic Zm9v',
      te: 'trailers',
      'x-keep-me': '1',
    };
    const res = await sendWith({}, '/echo/hop', { ...init, headers });
    const seen = ((await res.json()) as { headers: Record<string, string> }).headers;
    expect(seen['x-keep-me']).toBe('1');
    expect(seen['authorization']).toBe('Bearer test-token');
    if ('key' in init) expect(seen['idempotency-key']).toBe(init.key);
    for (const name of ['x-drop-me', 'proxy-authorization', 'te']) expect(seen[name]).toBeUndefined();
  });

  it('passes a response on without the headers its Connection names, keeping every Set-Cookie (pass-through)', async () => {
    for (const method of ['GET', 'POST']) {
      const res = await send('/cookies/passthrough', { method, ...(method === 'POST' ? { body: 'x' } : {}) });
      expect(res.headers.get('x-hop')).toBeNull();
      expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/; HttpOnly', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT', 'c=3']);
      expect(res.headers.get('idempotent-replay')).toBeNull();
      await res.arrayBuffer();
    }
  });

  it('stores 4xx answers (a validation error replays identically)', async () => {
    const key = newKey();
    expect((await send('/status/422/v', { key, body: 'x' })).status).toBe(422);
    const replay = await send('/status/422/v', { key, body: 'x' });
    expect(replay.status).toBe(422);
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('stores a redirect as it is, without following it', async () => {
    const key = newKey();
    const res = await send('/redirect/r', { key, body: 'x' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/echo/redirected');
    expect((await send('/redirect/r', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('stores the decoded body of a gzip answer and replays it without Content-Encoding', async () => {
    const key = newKey();
    const first = await send('/gzip/g', { key, body: 'x' });
    const firstBody = (await first.json()) as { compressed: boolean };
    const replay = await send('/gzip/g', { key, body: 'x' });
    expect(replay.headers.get('content-encoding')).toBeNull();
    expect(await replay.json()).toEqual(firstBody);
    expect(firstBody.compressed).toBe(true);
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });

  it('replays a multi-megabyte binary body byte for byte, stored in rows under the SQLite row limit', async () => {
    const key = newKey();
    const size = 5 * 1024 * 1024 + 3;
    const expected = new Uint8Array(size).map((_, i) => (i * 31 + 7) & 0xff);
    const digest = async (b: ArrayBuffer | Uint8Array) => new Uint8Array(await crypto.subtle.digest('SHA-256', b)).join();
    const first = new Uint8Array(await (await send(`/bytes/${size}/big`, { key, body: 'x' })).arrayBuffer());
    const replayRes = await send(`/bytes/${size}/big`, { key, body: 'x' });
    expect(replayRes.headers.get('idempotent-replay')).toBe('true');
    const replay = new Uint8Array(await replayRes.arrayBuffer());
    expect(first.byteLength).toBe(size);
    expect(await digest(first)).toBe(await digest(expected));
    expect(await digest(replay)).toBe(await digest(expected));
    const rows = await runInDurableObject(await recordStub(key), (_, state) =>
      state.storage.sql.exec<{ n: number; biggest: number }>(`SELECT count(*) AS n, max(length(data)) AS biggest FROM body_chunk`).one(),
    );
    expect(rows.n).toBe(6);
    expect(rows.biggest).toBeLessThanOrEqual(1024 * 1024);
    expect(await originCalls(key)).toBe(1);
  });

  it('streams a body over MAX_BODY_BYTES whole to the first client, then answers 502 response_too_large and never runs the key again', async () => {
    const key = newKey();
    const size = 10 * 1024 * 1024 + 1;
    const first = await send(`/bytes/${size}/huge`, { key, body: 'x' });
    expect([first.status, first.headers.get('idempotent-replay')]).toEqual([200, null]);
    expect((await first.arrayBuffer()).byteLength).toBe(size);
    await expectProblem(await send(`/bytes/${size}/huge`, { key, body: 'x' }), 502, 'response_too_large');
    await expectProblem(await send(`/bytes/${size}/huge`, { key, body: 'x' }), 502, 'response_too_large');
    expect(await originCalls(key)).toBe(1);
    const stored = await runInDurableObject(await recordStub(key), (_, state) => {
      const { state: s, body, chunks } = state.storage.kv.get<{ state: string; body: ArrayBuffer | null; chunks: number }>('record')!;
      return { state: s, body, chunks };
    });
    expect(stored).toEqual({ state: 'too_large', body: null, chunks: 0 });
  });
});

describe('concurrent duplicates', () => {
  it('makes exactly one origin call for a burst of 50 identical requests; all get the same answer', async () => {
    const key = newKey();
    const hold = newHold();
    const burst = Promise.all(Array.from({ length: 50 }, () => send(`/hold/${hold}/burst`, { key, body: 'same', headers: json })));
    // The origin holds the one call it gets until it has it: the burst overlaps it, whatever the machine's pace.
    await until(async () => (await originCalls(key)) > 0);
    await release(hold);
    const responses = await burst;
    const bodies = await Promise.all(responses.map((r) => r.text()));
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(new Set(bodies).size).toBe(1);
    expect(responses.filter((r) => r.headers.get('idempotent-replay') === null)).toHaveLength(1);
    expect(await originCalls(key)).toBe(1);
  });

  it('gives one origin call and 409s for a burst with the same key and different bodies', async () => {
    const key = newKey();
    const hold = newHold();
    const burst = Promise.all(Array.from({ length: 20 }, (_, i) => send(`/hold/${hold}/mixed`, { key, body: `body-${i}` })));
    await until(async () => (await originCalls(key)) > 0);
    await release(hold);
    const responses = await burst;
    const codes = await Promise.all(responses.map((r) => codeOf(r)));
    expect(codes.filter((c) => c === '200')).toHaveLength(1);
    expect(codes.filter((c) => c === 'idempotency_key_reused')).toHaveLength(19);
    expect(await originCalls(key)).toBe(1);
  });

  it('answers a duplicate that waits longer than ORIGIN_TIMEOUT_MS with 409 idempotency_key_in_progress and Retry-After', async () => {
    const key = newKey();
    const hold = newHold();
    // The origin holds the first request until the duplicate has been answered.
    const first = send(`/hold/${hold}/long`, { key, body: 'x' });
    await until(async () => (await storedRecord(key))?.state === 'in_flight');
    const dup = await send(`/hold/${hold}/long`, { key, body: 'x' });
    expect(dup.headers.get('retry-after')).toMatch(/^\d+$/);
    await expectProblem(dup, 409, 'idempotency_key_in_progress');
    await release(hold);
    await (await first).arrayBuffer();
  });
});

describe('origin failures', () => {
  it('does not store 5xx answers: the next request runs again', async () => {
    const key = newKey();
    // Read to its end, so the next request finds the key freed rather than joining this attempt.
    expect((await whole(send('/status/500/e', { key, body: 'x' }))).status).toBe(500);
    const again = await send('/status/500/e', { key, body: 'x' });
    expect(again.status).toBe(500);
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(await originCalls(key)).toBe(2);
  });

  it('runs again after a 503 and then replays the success', async () => {
    const key = newKey();
    expect((await whole(send('/fail-first/1/f', { key, body: 'x' }))).status).toBe(503);
    expect((await whole(send('/fail-first/1/f', { key, body: 'x' }))).status).toBe(200);
    expect((await send('/fail-first/1/f', { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(2);
  });

  // Issue #18: once a result's status line arrived, the write ran; a broken body must not free the key.
  it('answers 502 origin_response_lost when the connection breaks mid-body after a result status, and never runs the key again', async () => {
    const key = newKey();
    // The first client gets what the origin sent, broken off where the origin broke it.
    await expectBrokenOff(await send('/reset/r', { key, body: 'x' }), 200);
    await expectProblem(await send('/reset/r', { key, body: 'x' }), 502, 'origin_response_lost');
    await expectProblem(await send('/reset/r', { key, body: 'x' }), 502, 'origin_response_lost');
    expect(await originCalls(key)).toBe(1);
    expect(await storedRecord(key)).toMatchObject({ state: 'lost', status: 200 });
    const created = newKey();
    await expectBrokenOff(await send('/reset-status/201/r', { key: created, body: 'x' }), 201);
    await expectProblem(await send('/reset-status/201/r', { key: created, body: 'x' }), 502, 'origin_response_lost');
    expect(await originCalls(created)).toBe(1);
  });

  it('frees the key when a 5xx or transient answer breaks off mid-body or is over MAX_BODY_BYTES', async () => {
    for (const [path, status] of [
      ['/reset-status/503/r', 503],
      ['/reset-status/429/r', 429],
    ] as const) {
      const key = newKey();
      await expectBrokenOff(await send(path, { key, body: 'x' }), status);
      await until(async () => (await storedRecord(key)) === undefined);
      await expectBrokenOff(await send(path, { key, body: 'x' }), status);
      expect(await originCalls(key)).toBe(2);
    }
    const key = newKey();
    const path = `/big-status/503/${10 * 1024 * 1024 + 1}/b`;
    for (let i = 0; i < 2; i++) {
      const res = await send(path, { key, body: 'x' });
      expect([res.status, (await res.arrayBuffer()).byteLength]).toEqual([503, 10 * 1024 * 1024 + 1]);
      await until(async () => (await storedRecord(key)) === undefined);
    }
    expect(await originCalls(key)).toBe(2);
  });

  it('answers 504 origin_timeout to a slow first call, stores the late answer and replays it without a second call', async () => {
    const key = newKey();
    const hold = newHold();
    // The origin holds the call past ORIGIN_TIMEOUT_MS (1.5 s here): it answers only once the 504 has been sent.
    await expectProblem(await send(`/hold/${hold}/late`, { key, body: 'x' }), 504, 'origin_timeout');
    await release(hold);
    // The late answer is stored by the attempt itself: the replay below cannot have joined a running attempt.
    await until(async () => (await storedRecord(key))?.state === 'complete');
    const replay = await send(`/hold/${hold}/late`, { key, body: 'x' });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('client disconnects', () => {
  it('completes and stores the attempt when the client goes away; the retry gets it', async () => {
    const key = newKey();
    const hold = newHold();
    const controller = new AbortController();
    // The origin holds the call until the client has gone.
    const first = send(`/hold/${hold}/gone`, { key, body: 'x', signal: controller.signal });
    await until(async () => (await originCalls(key)) === 1);
    controller.abort();
    await expect(first).rejects.toThrow();
    await release(hold);
    await until(async () => (await storedRecord(key))?.state === 'complete');
    const retry = await send(`/hold/${hold}/gone`, { key, body: 'x' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('bad input reaches nothing', () => {
  it('forwards nothing for a body over MAX_BODY_BYTES (413 request_too_large)', async () => {
    const key = newKey();
    await expectProblem(await send('/echo/big', { key, body: new Uint8Array(10 * 1024 * 1024 + 1) }), 413, 'request_too_large');
    expect(await originCalls(key)).toBe(0);
    expect(await storedRecord(key)).toBeUndefined();
  });

  it('never lets the path choose another host', async () => {
    for (const path of ['//evil.example/x', '/..//evil.example/x', '/%2e%2e/%2e%2e/x', '/\\\\evil.example/x']) {
      const res = await send(path, { method: 'GET' });
      expect(res.status).toBe(200);
      const seen = (await res.json()) as { url: string; headers: Record<string, string> };
      expect(seen.headers.host).toBe(new URL(originUrl).host);
    }
  });
});
