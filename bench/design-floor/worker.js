// Benchmark baseline "design floor": the simplest per-key idempotency design.
//
// A write carrying Idempotency-Key and Authorization goes to one SQLite Durable Object per
// (SHA-256 of Authorization, key), via idFromName and one RPC call. The object writes an in-flight row,
// calls the origin, stores status and body, sets a 24 h expiry alarm and returns status + body; a
// repeat of a stored key gets the stored answer. Everything else is forwarded directly.
//
// Deliberately left out (the product does them): request fingerprint and 409 on reuse, stored
// response headers, leases / timeouts / retries, body size limits, problem+json errors, joining
// concurrent duplicates (a duplicate in flight simply gets 409 here).
import { DurableObject } from 'cloudflare:workers';

const TTL_MS = 24 * 60 * 60 * 1000;
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const encoder = new TextEncoder();

export class KeyRecord extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      'CREATE TABLE IF NOT EXISTS record (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL, status INTEGER, body BLOB)',
    );
  }

  async run({ method, url, headers, body }) {
    const sql = this.ctx.storage.sql;
    const row = sql.exec('SELECT state, status, body FROM record WHERE id = 1').toArray()[0];
    if (row !== undefined) {
      return row.state === 'complete'
        ? { status: row.status, body: row.body, replayed: true }
        : { status: 409, body: null, replayed: false };
    }
    sql.exec("INSERT INTO record (id, state) VALUES (1, 'in_flight')");
    void this.ctx.storage.setAlarm(Date.now() + TTL_MS);
    const response = await fetch(url, { method, headers, body, redirect: 'manual' });
    const answer = await response.arrayBuffer();
    sql.exec("UPDATE record SET state = 'complete', status = ?, body = ? WHERE id = 1", response.status, answer);
    return { status: response.status, body: answer, replayed: false };
  }

  async alarm() {
    await this.ctx.storage.deleteAll();
  }
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = env.ORIGIN_URL + url.pathname + url.search;
    const key = request.headers.get('idempotency-key');
    const authorization = request.headers.get('authorization');
    if (!WRITES.has(request.method) || key === null || authorization === null) {
      return fetch(target, { method: request.method, headers: request.headers, body: request.body, redirect: 'manual' });
    }
    const credential = hex(await crypto.subtle.digest('SHA-256', encoder.encode(authorization)));
    const stub = env.KEYS.get(env.KEYS.idFromName(`${credential}:${key}`));
    const headers = [];
    for (const [name, value] of request.headers) if (name !== 'host' && name !== 'content-length') headers.push([name, value]);
    const result = await stub.run({ method: request.method, url: target, headers, body: await request.arrayBuffer() });
    const response = new Response(result.body, { status: result.status });
    if (result.replayed) response.headers.set('Idempotent-Replay', 'true');
    return response;
  },
};
