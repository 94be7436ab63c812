/**
 * @module
 * `IdempotencyService`: the proxy for other Workers, over a service binding (no public network hop).
 *
 * ```toml
 * # the consumer's wrangler.toml
 * services = [{ binding = "IDEMPOTENCY_SERVICE", service = "idempotency-proxy", entrypoint = "IdempotencyService" }]
 * ```
 * Then `await env.IDEMPOTENCY_SERVICE.fetch(request)` behaves exactly like a request to the proxy's URL: the
 * request's path and query are sent to `ORIGIN_URL`, keyed writes at most once. With `ORIGIN_URL = "request"` the
 * request goes to its own URL instead: its host must be one of `ORIGIN_HOSTS` (else `421 host_not_allowed`) and
 * is part of each key's record, so the same key on another host is another key. An internal admin Worker can
 * also look up and purge records with `inspect` and `purge`, without the admin token: holding the service
 * binding is the authorization.
 */
import { WorkerEntrypoint } from 'cloudflare:workers';
import type { PurgeResult } from '../record/api';
import { proxyFor } from './app';
import type { KeyInfo, KeyLookups } from '../middleware';

/** The proxy as an RPC entrypoint. */
export class IdempotencyService extends WorkerEntrypoint<Env> {
  /**
   * Handles `request` as the proxy would.
   *
   * @param request - any request; its path and query go to `ORIGIN_URL` (whose host is used, not the request's),
   * or with `ORIGIN_URL = "request"` to the request's own URL, if its host is one of `ORIGIN_HOSTS`
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
   * @param host - with `ORIGIN_URL = "request"` (only then), the host the key was used on (`api.example.com`)
   * @returns the record, or `null` when there is none (or it has expired)
   * @throws `TypeError` for a malformed scope hash, key or host; `Error` when the proxy is misconfigured
   */
  async inspect(scopeHash: string, key: string, host?: string): Promise<KeyInfo | null> {
    return this.#keys().inspect(this.env, scopeHash, key, host);
  }

  /**
   * Deletes a stored record (complete, too large, lost or unknown), so the next request with the key runs again; an attempt still
   * in flight within its lease is left alone (`in_progress`). Writes the audit log line (`outcome: "purged"`).
   *
   * @param scopeHash - hex SHA-256 of the client's scope
   * @param key - the key, normalised
   * @param host - with `ORIGIN_URL = "request"` (only then), the host the key was used on
   * @throws `TypeError` for a malformed scope hash, key or host; `Error` when the proxy is misconfigured
   */
  async purge(scopeHash: string, key: string, host?: string): Promise<PurgeResult> {
    return this.#keys().purge(this.env, scopeHash, key, host);
  }

  #keys(): KeyLookups {
    const { keys, error } = proxyFor(this.env);
    if (keys === undefined) throw new Error(`The proxy is misconfigured: ${error?.message ?? 'unknown error'}.`);
    return keys;
  }
}
