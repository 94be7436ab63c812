/**
 * @module
 * The metered Worker (benchmark only): serves the product's proxy app, or the design floor's Worker when
 * a request carries `x-bench-worker: design`, with each Durable Object class counted by `meter.ts`.
 *
 * - `GET /__meter` → the counters by kind (`product`, `design`); `POST /__meter/reset` zeroes them.
 * - `BENCH_ALARM_IN_MS` (a var, unset normally) brings the design floor's 24 h alarm forward, so that a
 *   short run can observe what its expiry costs. The product's expiry is shortened through its own
 *   `IDEMPOTENCY_TTL_SECONDS` instead: its alarm checks the stored expiry time.
 */
import designFloor, { KeyRecord } from '../design-floor/worker.js';
import { metered, reset, snapshot } from './meter';
import { IdempotencyRecord, proxyWorker } from './product';

export class MeteredIdempotencyRecord extends metered(IdempotencyRecord, 'product') {}
export class MeteredKeyRecord extends metered(KeyRecord, 'design', {
  alarmInMs: (env) => (typeof env['BENCH_ALARM_IN_MS'] === 'string' ? Number(env['BENCH_ALARM_IN_MS']) : undefined),
}) {}

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === '/__meter') return Response.json(snapshot());
    if (pathname === '/__meter/reset' && request.method === 'POST') {
      reset();
      return new Response(null, { status: 204 });
    }
    if (request.headers.get('x-bench-worker') === 'design') return designFloor.fetch(request, env as never);
    return proxyWorker.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
