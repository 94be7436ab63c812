/**
 * @module
 * Key lookups: what the record of a key holds, by scope hash and key (an operator, the `IdempotencyService`
 * entrypoint) or by the request's own credential (a client), and purges with their audit log line. The proxy's key API
 * is built on them. A lookup never returns a stored body and writes nothing.
 */
import type { Context } from 'hono';
import type { PurgeResult, RecordInfo } from '../record/api';
import { Records, keyHashOf, recordName } from '../record/stub';
import { sha256Hex } from '../shared/bytes';
import { parseIdempotencyKey } from '../shared/key';
import { reject } from '../shared/problem';
import { consoleReporter, logScopeHash } from './log';
import { limitRates } from './rate-limit';
import { isolateReplays } from './replay-cache';
import type { ResolvedOptions } from './resolve';
import { ANONYMOUS_KIND, ANONYMOUS_SCOPE_HASH } from './scope';

/** What a lookup answers: the record, and the key it was asked for. */
export type KeyInfo = RecordInfo & { readonly key: string };

const SCOPE_HASH = /^[0-9a-f]{64}$/;
/** What names the anonymous scope (`allowAnonymous`) where a scope hash is expected. */
export const ANONYMOUS = 'anonymous';

/** Whether `value` names a scope: 64 lower-case hex digits (a SHA-256), or {@link ANONYMOUS}. */
export const isScopeHash = (value: string): boolean => SCOPE_HASH.test(value) || value === ANONYMOUS;

/** Lookups and purges of one configuration's records. */
export class KeyLookups {
  readonly #options: ResolvedOptions;
  readonly #records: Records;
  readonly #scopeHash: (scopeHash: string) => Promise<string>;

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.#records = new Records(options);
    this.#scopeHash = logScopeHash(options.logHashSecret);
  }

  /**
   * The record name of a key under a scope hash (and, with `ORIGIN_URL = "request"`, a host).
   *
   * @throws `TypeError` when the records are per host and `host` is missing, or when they are not and it is given
   */
  name(scopeHash: string, key: string, host?: string): string {
    const anonymous = scopeHash === ANONYMOUS;
    if (this.#options.hostScoped !== (host !== undefined)) {
      throw new TypeError(
        this.#options.hostScoped
          ? 'IdempotencyService: with ORIGIN_URL = "request" records are per host: pass the host'
          : 'IdempotencyService: records are not per host: pass no host',
      );
    }
    if (host !== undefined && (typeof host !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(host)))
      throw new TypeError('IdempotencyService: host must be a host name');
    const [kind, hash] = anonymous ? [ANONYMOUS_KIND, ANONYMOUS_SCOPE_HASH] : [this.#options.scope.kind, scopeHash];
    return recordName(this.#options.namespace, kind, hash, key, host?.toLowerCase());
  }

  /**
   * What the record of `key` under `scopeHash` holds, or `null`.
   *
   * @throws `TypeError` for a malformed scope hash or key
   */
  async inspect(env: object, scopeHash: string, key: string, host?: string): Promise<KeyInfo | null> {
    const ref = this.#records.locate(env, this.name(checkScopeHash(scopeHash), checkKey(key), host));
    const info = await this.#records.call(ref, async (stub) => (await stub.inspect()) as RecordInfo | null);
    return info === null ? null : { key, ...info };
  }

  /**
   * What the record of `key` holds for the client that sends `c`, by the credential it sends (without one, the anonymous
   * scope where keyed writes may be anonymous), limited like keyed writes: a lookup reaches an object too.
   *
   * @throws an `unauthorized` rejection without a credential, or a `rate_limited` one
   */
  async own(c: Context, key: string, anonymous = this.#options.allowAnonymous): Promise<KeyInfo | null> {
    const scope = this.#options.scope.read(c, (name) => c.req.header(name));
    if (scope === undefined && !anonymous) reject('unauthorized', 'Send the credential the key was used with.');
    const scopeHash = scope === undefined ? ANONYMOUS : await sha256Hex(scope);
    const env = c.env as Record<string, unknown>;
    await limitRates(env, this.#options, { scope, ip: c.req.header('cf-connecting-ip') }, scopeHash);
    return this.inspect(env, scopeHash, key, this.hostOf(c));
  }

  /** Counts a guess of the admin token by its client's address, before the token is compared; past the limit, 429. */
  async limitGuesses(c: Context): Promise<void> {
    await limitRates(
      c.env as Record<string, unknown>,
      { rateLimit: undefined, ipRateLimit: this.#options.ipRateLimit },
      { scope: undefined, ip: c.req.header('cf-connecting-ip') },
    );
  }

  /** With `hostScoped` (the proxy's `ORIGIN_URL = "request"`), the host of `c`: each host's records are apart. */
  hostOf(c: Context): string | undefined {
    return this.#options.hostScoped ? new URL(c.req.url).host : undefined;
  }

  /**
   * Purges the record of `key` under `scopeHash` and writes the audit log line.
   *
   * @throws `TypeError` for a malformed scope hash or key
   */
  async purge(env: object, scopeHash: string, key: string, host?: string): Promise<PurgeResult> {
    const name = this.name(checkScopeHash(scopeHash), checkKey(key), host);
    const ref = this.#records.locate(env, name);
    // Never retried: a purge whose answer was lost would be retried into `not_found`, and its audit line lost.
    const result = await this.#records.call(ref, async (stub) => (await stub.purge()) as PurgeResult, { attempts: 1 });
    if (result.kind === 'purged') {
      isolateReplays.delete(name);
      // Always logged, whatever LOG_REQUESTS says: a purge is an operator's action, and this is its audit trail.
      const ids = {
        key_hash: keyHashOf(ref.id),
        scope_hash: await this.#scopeHash(scopeHash === ANONYMOUS ? ANONYMOUS_SCOPE_HASH : scopeHash),
      };
      consoleReporter((env as Readonly<Record<string, unknown>>)[this.#options.metrics] as AnalyticsEngineDataset | undefined).report({
        outcome: 'purged',
        method: 'DELETE',
        status: 204,
        latency_ms: 0,
        ...ids,
      });
    }
    return result;
  }
}

function checkScopeHash(scopeHash: string): string {
  if (typeof scopeHash !== 'string' || !isScopeHash(scopeHash))
    throw new TypeError('IdempotencyService: scopeHash must be 64 lower-case hex digits (a SHA-256), or "anonymous"');
  return scopeHash;
}

function checkKey(key: string): string {
  const parsed = typeof key === 'string' ? parseIdempotencyKey(key) : undefined;
  if (!parsed?.ok || parsed.key !== key) throw new TypeError('IdempotencyService: key must be a normalised Idempotency-Key');
  return key;
}
