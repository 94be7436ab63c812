/**
 * @module
 * `IdempotencyService`: the proxy for other Workers, over a service binding (no public network hop).
 *
 * ```toml
 * # the consumer's wrangler.toml
 * services = [{ binding = "IDEMPOTENCY_SERVICE", service = "idempotency-proxy", entrypoint = "IdempotencyService" }]
 * ```
 * Then `await env.IDEMPOTENCY_SERVICE.fetch(request)` behaves exactly like a request to the proxy's URL:
 * the request's path and query are sent to `ORIGIN_URL`, keyed writes at most once.
 */
import { WorkerEntrypoint } from 'cloudflare:workers';
import { proxyFor } from './app';

/** The proxy as an RPC entrypoint. Its only method is `fetch`. */
export class IdempotencyService extends WorkerEntrypoint<Env> {
  /**
   * Handles `request` as the proxy would.
   *
   * @param request - any request; its URL's host is ignored, its path and query go to the origin
   * @returns the origin's answer, a replay, or a problem document
   */
  override async fetch(request: Request): Promise<Response> {
    return proxyFor(this.env).fetch(request, this.env, this.ctx);
  }
}
