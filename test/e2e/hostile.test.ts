/**
 * Issue #3: hostile input over raw TCP (so nothing in a client library cleans it up first), isolation
 * between credentials, and secrecy of the token on disk.
 */
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { filesContaining, filesUnder, originCount, proxyForFile, send } from './harness';

const shared = proxyForFile({ MAX_BODY_BYTES: '1000' });

interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/**
 * Writes `head` (CRLF line endings added) and `body` as they are, optionally half-closes the socket,
 * and reads until the server closes or `timeoutMs` passes.
 */
function raw(head: string[], body: Buffer | string = '', { halfClose = false, timeoutMs = 5000 } = {}): Promise<RawResponse | null> {
  return new Promise((resolve) => {
    const socket = connect(shared.proxy.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => {
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!match) return resolve(null);
      const split = text.indexOf('\r\n\r\n');
      resolve({ status: Number(match[1]), head: text.slice(0, split), body: text.slice(split + 4) });
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('close', () => {
      clearTimeout(timer);
      done();
    });
    socket.on('error', () => undefined);
    socket.write(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), Buffer.from(body)]));
    if (halfClose) socket.end();
  });
}

const objectFiles = () => filesUnder(shared.stateDir).filter((f) => /IdempotencyRecord\/[0-9a-f]{64}\.sqlite$/.test(f)).length;

/** A keyed POST with a correct Content-Length for `body`. */
function post(path: string, extra: string[], body = 'x'): Promise<RawResponse | null> {
  const head = [`POST ${path} HTTP/1.1`, `Host: 127.0.0.1:${shared.proxy.port}`, 'Authorization: Bearer hostile', 'Connection: close', `Content-Length: ${Buffer.byteLength(body)}`, ...extra];
  return raw(head, body);
}

function problemCode(res: RawResponse | null): string | undefined {
  if (res === null || !/content-type: application\/problem\+json/i.test(res.head)) return undefined;
  const json = res.body.slice(res.body.indexOf('{'), res.body.lastIndexOf('}') + 1);
  return (JSON.parse(json) as { code: string }).code;
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
    const before = objectFiles();
    const res = await post(path, headers);
    expect(res?.status).toBe(400);
    expect(problemCode(res)).toBe('idempotency_key_invalid');
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    expect(objectFiles()).toBe(before);
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
    const before = objectFiles();
    const res = await post(path, ['Idempotency-Key: over-limit'], 'y'.repeat(1001));
    expect(res?.status).toBe(413);
    expect(problemCode(res)).toBe('request_too_large');
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    expect(objectFiles()).toBe(before);
  });

  it('a chunked body over the limit (no Content-Length) is refused while reading', async () => {
    const path = `/echo/chunked-${randomUUID()}`;
    const chunk = 'z'.repeat(600);
    const body = `258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`;
    const head = [`POST ${path} HTTP/1.1`, `Host: 127.0.0.1:${shared.proxy.port}`, 'Authorization: Bearer hostile', 'Connection: close', 'Transfer-Encoding: chunked', 'Idempotency-Key: chunked-over'];
    const res = await raw(head, body);
    expect(res?.status).toBe(413);
    expect(await originCount(shared.origin.url, { path })).toBe(0);
  });

  it('a Content-Length that promises more than is sent: the origin is not called and nothing is stored', async () => {
    const path = `/echo/lying-${randomUUID()}`;
    const before = objectFiles();
    const head = [`POST ${path} HTTP/1.1`, `Host: 127.0.0.1:${shared.proxy.port}`, 'Authorization: Bearer hostile', 'Connection: close', 'Content-Length: 500', 'Idempotency-Key: lying-length'];
    const res = await raw(head, 'only twenty bytes...', { halfClose: true });
    // The client is gone by then; if an answer still arrives it is a problem document.
    if (res !== null) expect(res.status).toBeGreaterThanOrEqual(400);
    expect(await originCount(shared.origin.url, { path })).toBe(0);
    expect(objectFiles()).toBe(before);
  });
});

describe('hostile credentials', () => {
  it('no Authorization: passed through and never stored', async () => {
    const key = randomUUID();
    const before = objectFiles();
    for (let i = 0; i < 2; i++) {
      const res = await raw([`POST /echo/anon HTTP/1.1`, `Host: 127.0.0.1:${shared.proxy.port}`, 'Connection: close', 'Content-Length: 1', `Idempotency-Key: ${key}`], 'x');
      expect(res?.status).toBe(200);
      expect(res?.head).not.toMatch(/Idempotent-Replay/i);
    }
    expect(await originCount(shared.origin.url, { key })).toBe(2);
    expect(objectFiles()).toBe(before);
  });

  it('an empty Authorization arrives as no Authorization (the runtime drops empty fields): passed through, never stored', async () => {
    const key = randomUUID();
    const before = objectFiles();
    for (let i = 0; i < 2; i++) {
      const res = await raw([`POST /echo/empty-auth HTTP/1.1`, `Host: 127.0.0.1:${shared.proxy.port}`, 'Authorization: ', 'Connection: close', 'Content-Length: 1', `Idempotency-Key: ${key}`], 'x');
      expect(res?.status).toBe(200);
    }
    expect(await originCount(shared.origin.url, { key })).toBe(2);
    expect(objectFiles()).toBe(before);
  });

  it.each([
    ['a control character', 'Bearer a\x01b'],
    ['non-ASCII bytes', 'Bearer caf\xc3\xa9'],
  ])('an Authorization with %s: 400 authorization_invalid, origin not called, nothing stored', async (_, value) => {
    const key = randomUUID();
    const before = objectFiles();
    const res = await raw([`POST /echo/bad-auth HTTP/1.1`, `Host: 127.0.0.1:${shared.proxy.port}`, `Authorization: ${value}`, 'Connection: close', 'Content-Length: 1', `Idempotency-Key: ${key}`], 'x');
    expect(res?.status).toBe(400);
    expect(problemCode(res)).toBe('authorization_invalid');
    expect(await originCount(shared.origin.url, { key })).toBe(0);
    expect(objectFiles()).toBe(before);
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
    const res = await raw([requestLine, 'Host: evil.example', 'Connection: close']);
    expect(res?.status).toBe(200);
    const seen = JSON.parse(res!.body.slice(res!.body.indexOf('{'), res!.body.lastIndexOf('}') + 1)) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe(expectedPath);
    expect(seen.headers['host']).toBe(originHost());
  });
});

describe('isolation and secrecy', () => {
  it('two tokens with the same key never see each other’s responses', async () => {
    const key = randomUUID();
    const tokens = ['Bearer tenant-a', 'Bearer tenant-b'];
    const first = await Promise.all(tokens.map((auth) => send(shared.proxy.url, '/echo/tenant', { key, auth, body: 'same' }).then((r) => r.json() as Promise<{ headers: Record<string, string> }>)));
    const replays = await Promise.all(tokens.map((auth) => send(shared.proxy.url, '/echo/tenant', { key, auth, body: 'same' }).then((r) => r.json() as Promise<{ headers: Record<string, string> }>)));
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
