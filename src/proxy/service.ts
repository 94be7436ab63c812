/**
 * @module
 * `IdempotencyService`: the proxy for other Workers, over a service binding (no public network hop).
 *
 * ```toml
 * # the consumer's wrangler.toml
 * services = [{ binding = "IDEMPOTENCY_SERVICE", service = "idempotency-proxy", entrypoint = "IdempotencyService" }]
 * ```
 * Then `await env.IDEMPOTENCY_SERVICE.fetch(request)` behaves exactly like a request to the proxy's URL: the
 * request's path and query are sent to `ORIGIN_URL`, keyed writes at most once. An internal admin Worker can
 * also look up and purge records with `inspect` and `purge`, without the admin token: holding the service
 * binding is the authorization.
 */
import { WorkerEntrypoint } from 'cloudflare:workers';
import type { PurgeResult } from '../record/api';
import { proxyFor } from './app';
import type { KeyInfo, KeyRecords } from './keys';

/** The proxy as an RPC entrypoint. */
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

  /**
   * What the record of a key holds; never its body, and nothing is written.
   *
   * @param scopeHash - hex SHA-256 of the client's scope (its whole `Authorization` value by default)
   * @param key - the key, normalised (as the proxy forwards it)
   * @returns the record, or `null` when there is none (or it has expired)
   * @throws `TypeError` for a malformed scope hash or key; `Error` when the proxy is misconfigured
   */
  async inspect(scopeHash: string, key: string): Promise<KeyInfo | null> {
    return this.#keys().inspect(this.env as unknown as Record<string, unknown>, scopeHash, key);
  }

  /**
   * Deletes a complete or too-large record, so the next request with the key runs again; an attempt still
   * in flight within its lease is left alone (`in_progress`). Writes the audit log line (`outcome: "purged"`).
   *
   * @param scopeHash - hex SHA-256 of the client's scope
   * @param key - the key, normalised
   * @throws `TypeError` for a malformed scope hash or key; `Error` when the proxy is misconfigured
   */
  async purge(scopeHash: string, key: string): Promise<PurgeResult> {
    return this.#keys().purge(this.env as unknown as Record<string, unknown>, scopeHash, key);
  }

  #keys(): KeyRecords {
    const { keys, error } = proxyFor(this.env);
    if (keys === undefined) throw new Error(`The proxy is misconfigured: ${error?.message ?? 'unknown error'}.`);
    return keys;
  }
}
