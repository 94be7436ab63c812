/**
 * @module
 * "What happened to my key?": the key API under `IDEMPOTENCY_API_PREFIX` (never forwarded to the origin), and
 * the same lookups for the `IdempotencyService` entrypoint.
 *
 * - `GET {prefix}/keys/{key}`: a client looks up its own key, with the credential it used it with.
 * - `GET` / `DELETE {prefix}/admin/keys/{key}`: an operator, with `Authorization: Bearer <IDEMPOTENCY_ADMIN_TOKEN>`,
 *   looks up or purges the key of the client named by `Idempotency-Scope` (hex SHA-256 of its scope).
 * - `{prefix}/key` and `{prefix}/admin/key`: the same, with the key in the `Idempotency-Key` header instead of
 *   the path, so that keys need not appear in request logs. `HEAD` is `GET` without a body everywhere.
 *
 * A lookup never returns a stored body and writes nothing. Every error is a problem document that says nothing
 * about whether a key exists under another credential.
 */
import { type Context, Hono } from 'hono';
import { timingSafeEqual } from 'hono/utils/buffer';
import { consoleReporter, logScopeHash } from '../middleware/log';
import type { ResolvedOptions } from '../middleware/resolve';
import { limitRates } from '../middleware/rate-limit';
import { Records, keyHashOf, recordName } from '../record/stub';
import { isolateReplays } from '../middleware/replay-cache';
import { ANONYMOUS_KIND, ANONYMOUS_SCOPE_HASH } from '../middleware/scope';
import type { PurgeResult, RecordInfo } from '../record/api';
import { sha256Hex } from '../shared/hash';
import { describeKeyError, parseIdempotencyKey } from '../shared/key';
import type { Answers } from '../middleware/answer';
import { reject } from '../shared/problem';
import { ConfigError } from './variables';

/** What a lookup answers: the record, and the key it was asked for. */
export type KeyInfo = RecordInfo & { readonly key: string };

const SCOPE_HASH = /^[0-9a-f]{64}$/;
/** What names the anonymous scope (`allowAnonymous`) where a scope hash is expected. */
const ANONYMOUS = 'anonymous';

/**
 * Parses a key as `Idempotency-Key` would, from a URL path segment. A segment that holds a (possibly encoded)
 * slash or backslash, or is a dot segment, is refused: it could not name the same key in every client's URL.
 */
function keyFromPath(segment: string): string {
  let decoded: string | undefined;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    // refused below
  }
  if (decoded === undefined || /[/\\]/.test(decoded) || decoded === '.' || decoded === '..') {
    reject(
      'idempotency_key_invalid',
      'The key in the path must be one URL path segment: no encoded slash or backslash, and not "." or "..".',
    );
  }
  const parsed = parseIdempotencyKey(decoded);
  if (!parsed.ok) reject('idempotency_key_invalid', describeKeyError(parsed.error));
  return parsed.key;
}

/** Lookups and purges of the proxy's records, by scope hash and key. */
export class KeyRecords {
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
  async inspect(env: Record<string, unknown>, scopeHash: string, key: string, host?: string): Promise<KeyInfo | null> {
    const ref = this.#records.locate(env, this.name(checkScopeHash(scopeHash), checkKey(key), host));
    const info = await this.#records.call(ref, async (stub) => (await stub.inspect()) as RecordInfo | null);
    return info === null ? null : { key, ...info };
  }

  /**
   * Purges the record of `key` under `scopeHash` and writes the audit log line.
   *
   * @throws `TypeError` for a malformed scope hash or key
   */
  async purge(env: Record<string, unknown>, scopeHash: string, key: string, host?: string): Promise<PurgeResult> {
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
      consoleReporter(env['METRICS'] as AnalyticsEngineDataset | undefined).report({
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
  if (typeof scopeHash !== 'string' || !(SCOPE_HASH.test(scopeHash) || scopeHash === ANONYMOUS))
    throw new TypeError('IdempotencyService: scopeHash must be 64 lower-case hex digits (a SHA-256), or "anonymous"');
  return scopeHash;
}

function checkKey(key: string): string {
  const parsed = typeof key === 'string' ? parseIdempotencyKey(key) : undefined;
  if (!parsed?.ok || parsed.key !== key) throw new TypeError('IdempotencyService: key must be a normalised Idempotency-Key');
  return key;
}

/** The JSON answer of a lookup (a missing record is a rejection, answered like every other). */
function found(info: KeyInfo | null): Response {
  if (info === null) reject('idempotency_key_not_found', 'There is no record for this key under this credential (or it has expired).');
  return Response.json(info, { headers: { 'cache-control': 'no-store' } });
}

/** The answer of a purge (one that did not purge is a rejection). */
function purged(result: PurgeResult): Response {
  switch (result.kind) {
    case 'purged':
      return new Response(null, { status: 204, headers: { 'cache-control': 'no-store' } });
    case 'not_found':
      return found(null);
    case 'in_progress':
      return reject(
        'idempotency_key_in_progress',
        'An attempt with this key is still running; it is left alone. Retry after the Retry-After delay.',
        { retryAfterSeconds: result.retryAfterMs / 1000 },
      );
  }
}

/**
 * The key API, mounted by the proxy at its prefix.
 *
 * @param prefix - where it is mounted (`IDEMPOTENCY_API_PREFIX`)
 * @param records - lookups of the proxy's records
 * @param adminToken - the operator's token; without one the admin API answers 404; an invalid one (its
 *   configuration error) turns it off, answering `configuration_invalid`
 * @param anonymous - whether keyed writes may be anonymous (anywhere): then a lookup without a credential is one of
 *   the anonymous scope
 */
export function keysApi(
  prefix: string,
  records: KeyRecords,
  options: ResolvedOptions,
  adminToken: string | ConfigError | undefined,
  anonymous = options.allowAnonymous,
): Hono {
  const api = new Hono();
  const answers: Answers = options.answers;
  // Every answer of the key API is the layer's own: readable by a listed page (errors are made so by onError).
  api.use(async (c, next) => {
    await next();
    if (c.error === undefined) c.res = answers.own(c.res, c.req.raw);
  });
  // Hono routes on the path with percent-encoding undone (all but reserved characters, as decodeURI does), so the
  // key is what follows the route's own prefix in that path: exactly one segment, or a 400.
  const keyOf = (path: string, route: string) => keyFromPath(path.slice(prefix.length + route.length));

  const ipOf = (c: Context) => c.req.header('cf-connecting-ip');
  // With ORIGIN_URL = "request" the records of each host are apart: a lookup names the records of its own host.
  const hostOf = (c: Context) => (options.hostScoped ? new URL(c.req.url).host : undefined);

  // The key in the path (`/keys/{key}`), or in the key header (`/key`): a key in a header stays out of request logs.
  const keyHeader = options.headerName.toLowerCase();
  const keyFrom = (c: Context, route: string): string => {
    if (route !== '') return keyOf(c.req.path, route);
    const raw = c.req.header(keyHeader);
    if (raw === undefined) reject('idempotency_key_missing', `Name the key in the ${options.headerName} header.`);
    const parsed = parseIdempotencyKey(raw);
    if (!parsed.ok) reject('idempotency_key_invalid', describeKeyError(parsed.error));
    return parsed.key;
  };

  const notAllowed = (c: Context): Response => {
    const res = answers.problem(
      {
        code: 'method_not_allowed',
        detail: `A client can only look its own key up here (GET or HEAD). An operator purges a key with DELETE ${prefix}/admin/keys/{key} and the admin token.`,
      },
      c.req.raw,
    );
    res.headers.set('allow', 'GET, HEAD');
    return res;
  };

  const lookup = async (c: Context, route: string) => {
    const scope = options.scope.read(c, (name) => c.req.header(name));
    const key = keyFrom(c, route);
    // Without a credential, the anonymous scope, where keyed writes may be anonymous.
    if (scope === undefined && !anonymous) reject('unauthorized', 'Send the credential the key was used with.');
    const scopeHash = scope === undefined ? ANONYMOUS : await sha256Hex(scope);
    // Limited like keyed writes: a lookup reaches an object too.
    const env = c.env as Record<string, unknown>;
    await limitRates(env, options, { scope, ip: ipOf(c) }, scopeHash);
    return found(await records.inspect(env, scopeHash, key, hostOf(c)));
  };

  const admin = async (c: Context, route: string) => {
    if (adminToken instanceof ConfigError) reject('configuration_invalid', `The admin key API is off: ${adminToken.message}.`);
    if (adminToken === undefined) reject('not_found', 'There is nothing at this path.');
    // By address only, before the token is compared: it bounds guesses of the token.
    await limitRates(
      c.env as Record<string, unknown>,
      { rateLimit: undefined, ipRateLimit: options.ipRateLimit },
      { scope: undefined, ip: ipOf(c) },
    );
    const authorization = c.req.header('authorization') ?? '';
    if (!authorization.startsWith('Bearer ') || !(await timingSafeEqual(authorization.slice('Bearer '.length), adminToken))) {
      reject('unauthorized', 'The admin API needs Authorization: Bearer with the admin token.');
    }
    const scopeHash = c.req.header('idempotency-scope')?.trim().toLowerCase();
    if (scopeHash === undefined || !(SCOPE_HASH.test(scopeHash) || scopeHash === ANONYMOUS)) {
      reject(
        'idempotency_scope_invalid',
        'Name the client with Idempotency-Scope: the SHA-256 of its credential (e.g. of its whole Authorization value) as 64 lower-case hex characters, or "anonymous" for keys used without a credential.',
      );
    }
    const key = keyFrom(c, route);
    const env = c.env as Record<string, unknown>;
    // Only DELETE purges. Hono routes HEAD as GET (and drops the body), so HEAD is a lookup: testing for GET
    // here would have made every HEAD a purge.
    return c.req.method === 'DELETE'
      ? purged(await records.purge(env, scopeHash, key, hostOf(c)))
      : found(await records.inspect(env, scopeHash, key, hostOf(c)));
  };

  api.get('/keys/*', (c) => lookup(c, '/keys/'));
  api.get('/key', (c) => lookup(c, ''));
  // A client's own key is looked up, never purged: any other method there (a DELETE, as one would try) is told so.
  api.all('/keys/*', (c, next) => (c.req.path.length > prefix.length + '/keys/'.length ? notAllowed(c) : next()));
  api.all('/key', (c) => notAllowed(c));
  api.on(['GET', 'DELETE'], '/admin/keys/*', (c) => admin(c, '/admin/keys/'));
  api.on(['GET', 'DELETE'], '/admin/key', (c) => admin(c, ''));

  api.all('*', (c) => {
    // What a key path becomes once the URL parser has resolved a dot segment in place of the key ("keys/.."
    // is the prefix itself), or a key path without a key.
    const rest = c.req.path.slice(prefix.length);
    if (
      (c.req.method === 'GET' || c.req.method === 'HEAD' || c.req.method === 'DELETE') &&
      /^\/?(?:(?:admin\/?)?(?:keys\/?)?)?$/.test(rest)
    ) {
      reject('idempotency_key_invalid', 'The path names no key (a "." or ".." segment in its place is resolved away by the URL).');
    }
    return reject('not_found', 'There is nothing at this path.');
  });
  api.onError((error, c) => answers.error(error, c.req.raw));
  return api;
}
