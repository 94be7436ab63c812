/**
 * Hostile input over raw TCP (so nothing in a client library cleans it up first), isolation
 * between credentials, and secrecy of the token on disk.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { filesContaining, filesUnder, originCount, proxyForFile, send } from './harness';
import { objectFiles, raw, type RawResponse, rawProblemCode } from './wire';

const shared = proxyForFile({ MAX_BODY_BYTES: '1000' });

/**
 * Objects stored by this file's proxy. The count is exact: the proxy and its state directory are this file's
 * own, and its tests run one at a time. Where a request names no valid key or credential there is no specific
 * object to inspect, so "nothing stored" means no new object at all; where it does, the key is looked up too.
 */
const objectCount = () => objectFiles(shared.stateDir).length;

/** Whether the key API knows `key` under `authorization` (asking creates the object's empty file, no table). */
const stored = async (key: string, authorization = 'Bearer hostile') =>
  (await send(shared.proxy.url, `/_idempotency/keys/${encodeURIComponent(key)}`, { method: 'GET', auth: authorization })).status !== 404;

/** A keyed POST with a correct Content-Length for `body`. */
function post(path: string, extra: string[], body = 'x'): Promise<RawResponse | null> {
  const head = [
    `POST ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${shared.proxy.port}`,
    'Authorization: Bearer hostile',
    'Connection: close',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...extra,
  ];
  return raw(shared.proxy.port, head, body);
}

describe('hostile keys', () => {
  const rejected: [string, string[]][] = [
    ['length 0', ['Idempotency-Key: ']],
    ['length 129', [`Idempotency-Key: ${'k'.repeat(129)}`]],
    ['length 10,000', [`Idempotency-Key: ${'k'.repeat(10_000)}`]],
    ['a space inside', ['Idempotency-Key: a b']],
    ['a control character', ['Idempotency-Key: a\x01b']],
    ['non-ASCII bytes', ['Idempotency-Key: caf\xc3\xa9']],
    ['an unterminated quote', ['Idempotency-Key: "abc']],
    ['several headers', ['Idempotency-Key: one', 'Idempotency-Key: two']],
  ];
  it.each(rejected)('key with %s: 400 idempotency_key_invalid, origin not called, nothing stored', async (_, headers) => {
    const path = `/echo/hostile-${randomUUID()}`;
    const before = objectCount();
    const res = await post(path, headers);
    expect(res?.status).toBe(400);
    expect(rawProblemCode(res)).toBe('idempotency_key_invalid');
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    expect(objectCount()).toBe(before);
  });

  it('key of length 128 and a quoted key are accepted; the quoted form is the same key', async () => {
    const key = randomUUID().replaceAll('-', '').repeat(4);
    expect((await post('/echo/k128', [`Idempotency-Key: ${key}`]))?.status).toBe(200);
    const quoted = await post('/echo/k128', [`Idempotency-Key: "${key}"`]);
    expect(quoted?.head).toMatch(/Idempotent-Replay: true/i);
    expect(await originCount(shared.origin.url, { key })).toBe(1);
  });
});

describe('hostile bodies', () => {
  it('a body one byte over MAX_BODY_BYTES: 413 request_too_large, origin not called, nothing stored', async () => {
    const path = `/echo/over-${randomUUID()}`;
    const before = objectCount();
    const res = await post(path, ['Idempotency-Key: over-limit'], 'y'.repeat(1001));
    expect(res?.status).toBe(413);
    expect(rawProblemCode(res)).toBe('request_too_large');
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    expect(objectCount()).toBe(before);
    // Last: calling an object to ask creates its (empty) file.
    expect(await stored('over-limit')).toBe(false);
  });

  it('a chunked body over the limit (no Content-Length) is refused while reading', async () => {
    const path = `/echo/chunked-${randomUUID()}`;
    const chunk = 'z'.repeat(600);
    const body = `258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`;
    const head = [
      `POST ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${shared.proxy.port}`,
      'Authorization: Bearer hostile',
      'Connection: close',
      'Transfer-Encoding: chunked',
      'Idempotency-Key: chunked-over',
    ];
    const before = objectCount();
    const res = await raw(shared.proxy.port, head, body);
    expect(res?.status).toBe(413);
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    expect(objectCount()).toBe(before);
    // Last: calling an object to ask creates its (empty) file.
    expect(await stored('chunked-over')).toBe(false);
  });

  it('a Content-Length that promises more than is sent: the origin is not called and nothing is stored', async () => {
    const path = `/echo/lying-${randomUUID()}`;
    const before = objectCount();
    const head = [
      `POST ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${shared.proxy.port}`,
      'Authorization: Bearer hostile',
      'Connection: close',
      'Content-Length: 500',
      'Idempotency-Key: lying-length',
    ];
    const res = await raw(shared.proxy.port, head, 'only twenty bytes...', { halfClose: true });
    // An answer must arrive: a problem document from the proxy (400 request_body_invalid), or, when wrangler's
    // local dev server gives up on the body before the Worker sees it, its own error (docs/operations.md, known limits).
    expect(res).not.toBeNull();
    if (/content-type: application\/problem\+json/i.test(res!.head)) expect(rawProblemCode(res)).toBe('request_body_invalid');
    else expect([res!.status, /content-type: text\/plain/i.test(res!.head)]).toEqual([500, true]);
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    expect(objectCount()).toBe(before);
    // Last: calling an object to ask creates its (empty) file.
    expect(await stored('lying-length')).toBe(false);
  });
});

describe('hostile credentials', () => {
  it('no Authorization: 401 credential_missing, origin not called, nothing stored (#28)', async () => {
    const key = randomUUID();
    const before = objectCount();
    for (let i = 0; i < 2; i++) {
      const res = await raw(
        shared.proxy.port,
        [
          `POST /echo/anon HTTP/1.1`,
          `Host: 127.0.0.1:${shared.proxy.port}`,
          'Connection: close',
          'Content-Length: 1',
          `Idempotency-Key: ${key}`,
        ],
        'x',
      );
      expect(res?.status).toBe(401);
      expect(rawProblemCode(res)).toBe('credential_missing');
    }
    expect(await originCount(shared.origin.url, { key })).toBe(0);
    expect(objectCount()).toBe(before);
  });

  it('an empty Authorization arrives as no Authorization (the runtime drops empty fields): 401 credential_missing, never stored', async () => {
    const key = randomUUID();
    const before = objectCount();
    for (let i = 0; i < 2; i++) {
      const res = await raw(
        shared.proxy.port,
        [
          `POST /echo/empty-auth HTTP/1.1`,
          `Host: 127.0.0.1:${shared.proxy.port}`,
          'Authorization: ',
          'Connection: close',
          'Content-Length: 1',
          `Idempotency-Key: ${key}`,
        ],
        'x',
      );
      expect(res?.status).toBe(401);
    }
    expect(await originCount(shared.origin.url, { key })).toBe(0);
    expect(objectCount()).toBe(before);
  });

  it.each([
    ['a control character', 'Bearer a\x01b'],
    ['non-ASCII bytes', 'Bearer caf\xc3\xa9'],
  ])('an Authorization with %s: 400 authorization_invalid, origin not called, nothing stored', async (_, value) => {
    const key = randomUUID();
    const before = objectCount();
    const res = await raw(
      shared.proxy.port,
      [
        `POST /echo/bad-auth HTTP/1.1`,
        `Host: 127.0.0.1:${shared.proxy.port}`,
        `Authorization: ${value}`,
        'Connection: close',
        'Content-Length: 1',
        `Idempotency-Key: ${key}`,
      ],
      'x',
    );
    expect(res?.status).toBe(400);
    expect(rawProblemCode(res)).toBe('authorization_invalid');
    expect(await originCount(shared.origin.url, { key })).toBe(0);
    expect(objectCount()).toBe(before);
  });
});

describe('request targets that try to leave the origin', () => {
  const originHost = () => new URL(shared.origin.url).host;
  it.each([
    ['dot segments', 'GET /../../etc/passwd HTTP/1.1', '/etc/passwd'],
    ['encoded dot segments', 'GET /%2e%2e/%2e%2e/etc HTTP/1.1', '/etc'],
    ['a scheme-relative path', 'GET //evil.example/x HTTP/1.1', '//evil.example/x'],
    ['an absolute-form target', 'GET http://evil.example/abs HTTP/1.1', '/abs'],
  ])('%s: the request goes to the origin, on its host', async (_, requestLine, expectedPath) => {
    const res = await raw(shared.proxy.port, [requestLine, 'Host: evil.example', 'Connection: close']);
    expect(res?.status).toBe(200);
    const seen = JSON.parse(res!.body.slice(res!.body.indexOf('{'), res!.body.lastIndexOf('}') + 1)) as {
      url: string;
      headers: Record<string, string>;
    };
    expect(seen.url).toBe(expectedPath);
    expect(seen.headers['host']).toBe(originHost());
  });
});

describe('isolation and secrecy', () => {
  it('two tokens with the same key never see each other’s responses', async () => {
    const key = randomUUID();
    const tokens = ['Bearer tenant-a', 'Bearer tenant-b'];
    const first = await Promise.all(
      tokens.map((auth) =>
        send(shared.proxy.url, '/echo/tenant', { key, auth, body: 'same' }).then(
          (r) => r.json() as Promise<{ headers: Record<string, string> }>,
        ),
      ),
    );
    const replays = await Promise.all(
      tokens.map((auth) =>
        send(shared.proxy.url, '/echo/tenant', { key, auth, body: 'same' }).then(
          (r) => r.json() as Promise<{ headers: Record<string, string> }>,
        ),
      ),
    );
    expect(first.map((b) => b.headers['authorization'])).toEqual(tokens);
    expect(replays.map((b) => b.headers['authorization'])).toEqual(tokens);
    expect(await originCount(shared.origin.url, { key })).toBe(2);
  });

  it('no file under the state directory contains a token in plaintext', async () => {
    const token = `Bearer plaintext-${randomUUID()}`;
    for (let i = 0; i < 3; i++) {
      await send(shared.proxy.url, '/status/201/secret', { key: `secret-${i}`, auth: token, body: `b${i}` });
      await send(shared.proxy.url, '/status/201/secret', { key: `secret-${i}`, auth: token, body: `b${i}` });
      await send(shared.proxy.url, '/status/409/secret', { key: `secret-${i}`, auth: token, body: 'other' });
    }
    await send(shared.proxy.url, '/status/200/secret', { method: 'GET', auth: token });
    expect(filesUnder(shared.stateDir).length).toBeGreaterThan(0);
    expect(filesContaining(shared.stateDir, token.slice('Bearer '.length))).toEqual([]);
    // Nor does anything the Worker logged (wrangler dev prints the Worker's console output).
    expect(shared.proxy.output()).toContain('"event":"idempotency"');
    expect(shared.proxy.output()).not.toContain(token.slice('Bearer '.length));
    expect(shared.proxy.output()).not.toContain('secret-0');
  });
});
