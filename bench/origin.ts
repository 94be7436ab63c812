// The benchmark origin: a fast Node HTTP server on 127.0.0.1. Every request gets a ~100-byte JSON body
// (201 for POST/PUT/PATCH/DELETE, 200 otherwise), after an optional fixed delay. It counts calls in total
// and per Idempotency-Key header.
//
// Trickle (issue #19, counted like any call): a request for /v1/trickle?chunks=N&chunk_bytes=B&interval_ms=T gets
// an application/octet-stream body of N chunks of B bytes, chunked, the first with the headers and one every T ms
// after it. Chunk i is B bytes of the value i mod 256: every call answers the same bytes, so a replay can be
// compared with the answer it repeats.
//
// Control (never counted):
//   GET /__calls                -> {"total":n,"distinctKeys":n,"duplicatedKeys":n}
//   GET /__calls?key=K          -> {"total":n,"count":n}            calls that carried Idempotency-Key K
//   GET /__calls?prefix=P       -> {"total":n,"keys":{"P...":n,...}} every key starting with P
//
// Run on its own:  node bench/origin.ts [--delay-ms 0]
// It binds a port of the system's choosing and prints one JSON line {"port":n} to stdout once it listens.
import { createServer, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { listen } from '../scripts/lib/processes.ts';

const { values } = parseArgs({ options: { 'delay-ms': { type: 'string', default: '0' } } });
const delayMs = Number(values['delay-ms']);
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

let total = 0;
const perKey = new Map<string, number>();

/** ~100 bytes of JSON; `n` is the running call number, padded so every body has the same length. */
const answer = (method: string | undefined, n: number): string =>
  JSON.stringify({ ok: true, method, call: String(n).padStart(10, '0'), note: 'bench origin answer of a fixed size, ~100 B' });

function control(url: URL, res: ServerResponse): void {
  const key = url.searchParams.get('key');
  const prefix = url.searchParams.get('prefix');
  let body: unknown;
  if (key !== null) body = { total, count: perKey.get(key) ?? 0 };
  else if (prefix !== null) {
    const keys: Record<string, number> = {};
    for (const [k, n] of perKey) if (k.startsWith(prefix)) keys[k] = n;
    body = { total, keys };
  } else {
    let duplicatedKeys = 0;
    for (const n of perKey.values()) if (n > 1) duplicatedKeys++;
    body = { total, distinctKeys: perKey.size, duplicatedKeys };
  }
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function trickle(url: URL, status: number, res: ServerResponse): void {
  const param = (name: string): number => Number(url.searchParams.get(name) ?? Number.NaN);
  const chunks = param('chunks');
  const chunkBytes = param('chunk_bytes');
  const intervalMs = param('interval_ms');
  if (![chunks, chunkBytes, intervalMs].every((n) => Number.isInteger(n) && n >= 0)) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    return void res.end('trickle needs integer chunks, chunk_bytes and interval_ms\n');
  }
  res.writeHead(status, { 'content-type': 'application/octet-stream' });
  let sent = 0;
  const next = (): void => {
    if (sent === chunks) return void res.end();
    res.write(Buffer.alloc(chunkBytes, sent++ % 256));
    if (sent === chunks) res.end();
    else setTimeout(next, intervalMs);
  };
  next();
}

const server = createServer((req, res) => {
  if (req.url?.startsWith('/__calls')) return control(new URL(req.url, 'http://origin'), res);
  req.on('data', () => {});
  req.on('end', () => {
    total++;
    const key = req.headers['idempotency-key'];
    if (typeof key === 'string') perKey.set(key, (perKey.get(key) ?? 0) + 1);
    if (req.url?.startsWith('/v1/trickle'))
      return trickle(new URL(req.url, 'http://origin'), WRITES.has(req.method ?? '') ? 201 : 200, res);
    const text = answer(req.method, total);
    const send = () => {
      res.writeHead(WRITES.has(req.method ?? '') ? 201 : 200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    };
    if (delayMs > 0) setTimeout(send, delayMs);
    else send();
  });
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.requestTimeout = 0;
process.stdout.write(`${JSON.stringify({ port: await listen(server) })}\n`);
const stop = (): void => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
