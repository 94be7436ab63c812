/**
 * @module
 * A real HTTP origin for the tests: a Node server on 127.0.0.1 that counts every call it receives and
 * behaves as the request path asks. It is not a mock of anything under test: it stands for the API
 * behind the proxy.
 *
 * Paths (any method; the rest of the path is free, so tests use unique paths):
 * - `/echo/...`           200 JSON echo of method, path, headers and body (sha-256 + length)
 * - `/slow/<ms>/...`      like echo, after `<ms>` milliseconds
 * - `/status/<code>/...`  answers `<code>` with a small JSON body
 * - `/late/<ms>/<code>/...` answers `<code>` after `<ms>` milliseconds
 * - `/fail-first/<n>/...` answers 503 to the first `<n>` calls for the same Idempotency-Key, then echo
 * - `/bytes/<n>/...`      200 with `<n>` deterministic binary bytes (`application/octet-stream`)
 * - `/cookies/...`        200 with three Set-Cookie headers and a hop-by-hop `Connection` header
 * - `/gzip/...`           200 with a gzip-encoded JSON body
 * - `/reset/...`          sends headers and part of the body, then destroys the connection
 * - `/redirect/...`       302 to `/echo/redirected`
 * - `/refuse/...`         closes the connection without an answer (an origin that is down)
 * - `/reset-status/<code>/...` like `/reset`, with status `<code>` (issue #18: a result's body lost, or a 5xx's)
 * - `/drip/<ms>/...`     200 with part of its body at once and the rest after `<ms>` milliseconds
 * - `/sse/<n>/<ms>/...`  200 `text/event-stream`: `<n>` events (`data: {"i":k,"call":c}`), one every `<ms>` ms, the
 *   head at once (issue #19: a streaming API). `?pad=<bytes>` pads each event's data, for streams over a limit
 * - `/reset-before-status/...` reads the request, then resets the connection before any status line (issue #18)
 * - `/big-status/<code>/<n>/...` answers `<code>` with `<n>` bytes (issue #18: a 5xx over the body limit)
 * - `/reconcile/<found|missing|broken>/...` the reconcile URL of issue #18: 200 `{ reconciled, key, credential }`,
 *   404 or 500. Not counted with the key's calls: `GET /__calls?reconcile=K` counts these for Idempotency-Key K (on
 *   arrival). With `?hold=<id>` it answers only once `<id>` is released
 * - `/sdk/<ms>/<pad>/...` (also under `/v1/`, as stripe-node sends it) after `<ms>` ms, 200 with a JSON object as
 *   API SDKs expect one (`{ id, object, call }`), padded with `<pad>` characters
 * - `/cors/...`           an origin with its own CORS policy for browser pages: answers a preflight `OPTIONS` itself
 *   (any page origin; `Idempotency-Key`, `Authorization` and `Content-Type` allowed), and adds
 *   `Access-Control-Allow-Origin` to its echo (and `Access-Control-Allow-Credentials: true` with `?allow_credentials=true`)
 * - `/no-retry/<code>/...` answers `<code>` with `x-should-retry: false`: a server that says "never retry"
 * - `/expiring/<s>/<code>/...` answers `<code>` with `Idempotency-Expires` `<s>` seconds from now: a server whose
 *   key stops protecting soon
 * - `/retryable/<code>/<ms>/...` answers `<code>` with `x-should-retry: true` and `retry-after-ms: <ms>` (issue #28: a
 *   4xx the proxy stores, which tells the client to retry)
 * - `/hold/<id>/...`      like echo, once `<id>` is released (at once if it already was): ordering without sleeps
 * - `?hold=<id>` on any counted path: counted at once, then answered as the path says only once `<id>` is released
 *   (`/status/503/x?hold=<id>`: a 503 that comes when the test says; `/sdk/0/0/x?hold=<id>`: an SDK object likewise)
 * - `?pause=<id>` on `/sse/...` (with `&at=<k>`: after `<k>` events, 1 by default) and `/drip/...`: the head and
 *   the first part at once, the rest only once `<id>` is released: an answer that is still streaming for as long as
 *   the test needs it to be (in place of `<ms>`, which `/drip` then ignores)
 * - `/reconcile/refuse/...` counted as a reconcile call, then the connection is closed without an answer;
 *   `?hold=<id>` on a reconcile URL: no answer until `<id>` is released (a reconcile URL that does not answer in time)
 *
 * Control (not counted): `GET /__calls?key=K` → `{ "count": n }` for Idempotency-Key K, `?path=P` for a
 * path, `GET /__calls`
 * → `{ "total": n }`, `GET /__last?key=K` → the last request seen with that key. `POST /release/<id>` lets every
 * request held by `<id>` (`/hold/<id>/...`, `?hold=<id>`, `?pause=<id>`), and any later one, go on.
 *
 * {@link TestOrigin.setDown} makes the origin "down" on its own port: every connection, open or new, is
 * reset before a byte of it is read (so nothing is counted), until it is switched back.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { listen } from '../../scripts/lib/processes.ts';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  bodySha256: string;
  bodyLength: number;
}

/** Deterministic bytes for `/bytes/<n>`: byte i is (i * 31 + 7) mod 256. */
export function patternBytes(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + 7) & 0xff;
  return bytes;
}

export interface TestOrigin {
  readonly server: Server;
  readonly url: string;
  /** `true`: reset every open and every new connection until called with `false`. */
  setDown(down: boolean): void;
  close(): Promise<void>;
}

/** Starts the origin on 127.0.0.1, on a port the system picks. */
export async function startTestOrigin(): Promise<TestOrigin> {
  const calls = new Map<string, number>();
  const last = new Map<string, SeenRequest>();
  let total = 0;
  /** `/hold/<id>` requests wait for the release of `<id>`: one promise per id, resolved by `/release/<id>`. */
  const holds = new Map<string, { released: Promise<void>; release: () => void }>();
  const hold = (id: string) => {
    let entry = holds.get(id);
    if (entry === undefined) {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      entry = { released, release };
      holds.set(id, entry);
    }
    return entry;
  };

  /** Waits for the release of the request's `?hold=<id>`, if it has one. */
  const held = async (url: URL) => {
    const id = url.searchParams.get('hold');
    if (id !== null) await hold(id).released;
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://origin');
    if (url.pathname.startsWith('/refuse/')) return req.socket.destroy();
    const reconciles = url.searchParams.get('reconcile');
    if (url.pathname === '/__calls' && reconciles !== null) return json(res, 200, { count: calls.get(`reconcile:${reconciles}`) ?? 0 });
    if (url.pathname === '/__calls') {
      const key = url.searchParams.get('key');
      const path = url.searchParams.get('path');
      if (path !== null) return json(res, 200, { count: calls.get(`path:${path}`) ?? 0 });
      return json(res, 200, key === null ? { total } : { count: calls.get(key) ?? 0 });
    }
    if (url.pathname.startsWith('/reconcile/')) {
      const key = String(req.headers['idempotency-key'] ?? '');
      calls.set(`reconcile:${key}`, (calls.get(`reconcile:${key}`) ?? 0) + 1);
      const answer = url.pathname.split('/')[2];
      if (answer === 'refuse') return req.socket.destroy();
      await held(url);
      if (answer === 'missing') return json(res, 404, { error: 'no such request' });
      if (answer === 'broken') return json(res, 500, { error: 'cannot say' });
      return json(res, 200, { reconciled: true, key, credential: req.headers.authorization !== undefined, query: url.search });
    }
    if (url.pathname.startsWith('/release/')) {
      hold(url.pathname.split('/')[2] ?? '').release();
      return json(res, 200, { released: true });
    }
    if (url.pathname === '/__last') return json(res, 200, last.get(url.searchParams.get('key') ?? '') ?? null);
    if (url.pathname.startsWith('/cors/') && req.method === 'OPTIONS') return corsPreflight(req, res);

    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      return;
    }
    const body = Buffer.concat(chunks);
    const key = String(req.headers['idempotency-key'] ?? '');
    total++;
    const count = (calls.get(key) ?? 0) + 1;
    calls.set(key, count);
    calls.set(`path:${url.pathname}`, (calls.get(`path:${url.pathname}`) ?? 0) + 1);
    const seen: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      bodySha256: createHash('sha256').update(body).digest('hex'),
      bodyLength: body.length,
    };
    last.set(key, seen);

    await held(url);
    const segments = url.pathname.split('/');
    // stripe-node sends every request under /v1/.
    if (segments[1] === 'v1') segments.splice(1, 1);
    const [, kind = '', arg = ''] = segments;
    switch (kind) {
      case 'sdk': {
        await new Promise((resolve) => setTimeout(resolve, Number(arg)));
        const pad = 'x'.repeat(Number(segments[3] ?? 0));
        return json(res, 200, { id: `obj_${randomUUID()}`, object: 'sdk_object', call: count, pad });
      }
      case 'cors':
        res.setHeader('access-control-allow-origin', req.headers.origin ?? '*');
        if (url.searchParams.get('allow_credentials') === 'true') res.setHeader('access-control-allow-credentials', 'true');
        res.setHeader('vary', 'Origin');
        return json(res, 200, { call: count, bodySha256: seen.bodySha256 });
      case 'hold':
        await hold(arg).released;
        return json(res, 200, { ...seen, call: count });
      case 'slow':
        await new Promise((resolve) => setTimeout(resolve, Number(arg)));
        return json(res, 200, { ...seen, call: count });
      case 'status':
        return json(res, Number(arg), { status: Number(arg), call: count });
      case 'late': {
        const status = Number(url.pathname.split('/')[3]);
        await new Promise((resolve) => setTimeout(resolve, Number(arg)));
        return json(res, status, { status, call: count });
      }
      case 'fail-first':
        return count <= Number(arg) ? json(res, 503, { error: 'unavailable', call: count }) : json(res, 200, { ...seen, call: count });
      case 'bytes': {
        const bytes = patternBytes(Number(arg));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-call': String(count) });
        return res.end(bytes);
      }
      case 'cookies':
        res.setHeader('set-cookie', ['a=1; Path=/; HttpOnly', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT', 'c=3']);
        res.setHeader('connection', 'keep-alive, x-hop');
        res.setHeader('x-hop', 'must not pass');
        return json(res, 201, { call: count });
      case 'gzip': {
        const payload = gzipSync(JSON.stringify({ compressed: true, call: count, pad: 'x'.repeat(2000) }));
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': payload.length });
        return res.end(payload);
      }
      case 'reset':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
        res.write('partial');
        setTimeout(() => res.destroy(), 20);
        return;
      case 'reset-status':
        res.writeHead(Number(arg), { 'content-type': 'text/plain', 'content-length': '1000' });
        res.write('partial');
        setTimeout(() => res.destroy(), 20);
        return;
      case 'drip':
        // A result whose body takes `<ms>` to arrive: a lease that ends first cuts it off mid-body.
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '14' });
        res.write('partial');
        if (url.searchParams.has('pause')) void hold(url.searchParams.get('pause') ?? '').released.then(() => res.end('-rest!!'));
        else setTimeout(() => res.end('-rest!!'), Number(arg));
        return;
      case 'sse': {
        const [events, every] = [Number(arg), Number(url.pathname.split('/')[3])];
        const pad = 'p'.repeat(Number(url.searchParams.get('pad') ?? 0));
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.flushHeaders();
        const pause = url.searchParams.get('pause');
        const at = Number(url.searchParams.get('at') ?? 1);
        let sent = 0;
        let tick: NodeJS.Timeout | undefined;
        const next = () => {
          res.write(`data: ${JSON.stringify({ i: sent, call: count, pad })}\n\n`);
          if (++sent === events) {
            clearInterval(tick);
            res.end();
          } else if (pause !== null && sent === at) {
            clearInterval(tick);
            void hold(pause).released.then(() => {
              if (!res.destroyed) tick = setInterval(next, every);
            });
          }
        };
        tick = setInterval(next, every);
        res.on('close', () => clearInterval(tick));
        return;
      }
      case 'reset-before-status':
        // Counted, then reset before a status line: the origin may have run the write, and nobody knows.
        req.socket.resetAndDestroy();
        return;
      case 'big-status': {
        const bytes = patternBytes(Number(url.pathname.split('/')[3]));
        res.writeHead(Number(arg), { 'content-type': 'application/octet-stream' });
        return res.end(bytes);
      }
      case 'no-retry':
        res.setHeader('x-should-retry', 'false');
        return json(res, Number(arg), { status: Number(arg), call: count });
      case 'retryable':
        res.setHeader('x-should-retry', 'true');
        res.setHeader('retry-after-ms', url.pathname.split('/')[3] ?? '0');
        return json(res, Number(arg), { status: Number(arg), call: count });
      case 'expiring': {
        const status = Number(url.pathname.split('/')[3]);
        res.setHeader('idempotency-expires', new Date(Date.now() + Number(arg) * 1000).toUTCString());
        return json(res, status, { status, call: count });
      }
      case 'redirect':
        res.writeHead(302, { location: '/echo/redirected' });
        return res.end();
      default:
        return json(res, 200, { ...seen, call: count });
    }
  });
  // workerd keeps connections to the origin open for reuse. A server that closes an idle one (Node's default after
  // 5 s) just as workerd sends the next request on it makes that request fail before any status line (the classic
  // keep-alive race), which a loaded CI machine hit in bursts. Real origins keep idle connections longer than their
  // clients do for the same reason.
  server.keepAliveTimeout = 75_000;
  let down = false;
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    if (down) {
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const port = await listen(server);
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    setDown(value) {
      down = value;
      if (down) for (const socket of sockets) socket.resetAndDestroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The origin's own CORS policy: any page may send keyed JSON writes with a credential. */
function corsPreflight(req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(204, {
    'access-control-allow-origin': req.headers.origin ?? '*',
    'access-control-allow-methods': 'POST, PUT, PATCH, DELETE',
    'access-control-allow-headers': 'Idempotency-Key, Authorization, Content-Type',
    'access-control-max-age': '0',
    vary: 'Origin',
  });
  res.end();
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(body);
}
