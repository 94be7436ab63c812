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
import { type KeyInfo, type KeyLookups, type ResolvedOptions, isScopeHash } from '../middleware';
import type { PurgeResult } from '../record/api';
import { describeKeyError, parseIdempotencyKey } from '../shared/key';
import { reject } from '../shared/problem';
import { ConfigError } from './variables';

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
  records: KeyLookups,
  options: ResolvedOptions,
  adminToken: string | ConfigError | undefined,
  anonymous = options.allowAnonymous,
): Hono {
  const api = new Hono();
  const { answers } = options;
  // Every answer of the key API is the layer's own: readable by a listed page (errors are made so by onError).
  api.use(async (c, next) => {
    await next();
    if (c.error === undefined) c.res = answers.own(c.res, c.req.raw);
  });
  // Hono routes on the path with percent-encoding undone (all but reserved characters, as decodeURI does), so the
  // key is what follows the route's own prefix in that path: exactly one segment, or a 400.
  const keyOf = (path: string, route: string) => keyFromPath(path.slice(prefix.length + route.length));

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

  const lookup = async (c: Context, route: string) => found(await records.own(c, keyFrom(c, route), anonymous));

  const admin = async (c: Context, route: string) => {
    if (adminToken instanceof ConfigError) reject('configuration_invalid', `The admin key API is off: ${adminToken.message}.`);
    if (adminToken === undefined) reject('not_found', 'There is nothing at this path.');
    // By address only, before the token is compared: it bounds guesses of the token.
    await records.limitGuesses(c);
    const authorization = c.req.header('authorization') ?? '';
    if (!authorization.startsWith('Bearer ') || !(await timingSafeEqual(authorization.slice('Bearer '.length), adminToken))) {
      reject('unauthorized', 'The admin API needs Authorization: Bearer with the admin token.');
    }
    const scopeHash = c.req.header('idempotency-scope')?.trim().toLowerCase();
    if (scopeHash === undefined || !isScopeHash(scopeHash)) {
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
      ? purged(await records.purge(env, scopeHash, key, records.hostOf(c)))
      : found(await records.inspect(env, scopeHash, key, records.hostOf(c)));
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
