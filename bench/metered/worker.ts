/**
 * @module
 * The metered Worker (benchmark only): serves the product's proxy app, the design floor's Worker when a request
 * carries `x-bench-worker: design`, or the product's middleware in handler mode when it carries
 * `x-bench-worker: handler` (its handler calls the origin itself), with each Durable Object class counted by
 * `meter.ts`.
 *
 * - `GET /__meter` → the counters by kind (`product`, `design`); `POST /__meter/reset` zeroes them.
 * - `BENCH_ALARM_IN_MS` (a var, unset normally) brings the design floor's 24 h alarm forward, so that a
 *   short run can observe what its expiry costs. The product's expiry is shortened through its own
 *   `IDEMPOTENCY_TTL_SECONDS` instead: its alarm checks the stored expiry time.
 */
import { Hono } from 'hono';
import designFloor, { KeyRecord } from '../design-floor/worker.js';
import { metered, reset, snapshot } from './meter';
import { type IdempotencyEnv, IdempotencyRecord, idempotency, proxyWorker } from './product';

export class MeteredIdempotencyRecord extends metered(IdempotencyRecord, 'product') {}
export class MeteredKeyRecord extends metered(KeyRecord, 'design', {
  alarmInMs: (env) => (typeof env['BENCH_ALARM_IN_MS'] === 'string' ? Number(env['BENCH_ALARM_IN_MS']) : undefined),
}) {}

/** Handler mode: the app's own handler runs the write (here: the same origin call the proxy would make). */
const handlerApp = new Hono<{ Bindings: Env; Variables: IdempotencyEnv['Variables'] }>();
handlerApp.use(idempotency({ reporter: false }));
handlerApp.post('*', async (c) => {
  const { pathname, search } = new URL(c.req.url);
  const headers = { 'content-type': c.req.header('content-type') ?? 'application/json', 'idempotency-key': c.var.idempotencyKey ?? '' };
  return fetch(new URL(pathname + search, c.env.ORIGIN_URL), { method: 'POST', headers, body: await c.req.arrayBuffer() });
});

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === '/__meter') return Response.json(snapshot());
    if (pathname === '/__meter/reset' && request.method === 'POST') {
      reset();
      return new Response(null, { status: 204 });
    }
    const worker = request.headers.get('x-bench-worker');
    if (worker === 'design') return designFloor.fetch(request, env as never);
    if (worker === 'handler') return handlerApp.fetch(request, env, ctx);
    return proxyWorker.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
