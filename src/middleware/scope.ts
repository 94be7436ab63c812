/**
 * @module
 * Whose key is it: the scope a key belongs to, read from the request's credential headers (or computed by the app),
 * and the kind of scope that keeps the records of every kind apart (`record/stub.ts` names a record from them).
 */
import type { Context } from 'hono';
import { parse as parseCookies } from 'hono/utils/cookie';
import { HTTP_TOKEN, isHopByHop } from '../shared/headers';
import { reject } from '../shared/problem';

/**
 * The scope of a key. Only its SHA-256 is ever used.
 * - `{ headers }`: the values of these request headers (`'authorization'`, `'x-api-key'`), or of one cookie
 *   (`'cookie:session'`). One named value is the scope itself, several are encoded together so that no two
 *   combinations share a scope.
 * - a function: the scope the app computes (a user id, a tenant).
 *
 * A keyed write without a scope (none of the headers, or `null`/`undefined` from the function) is refused with
 * `401 credential_missing`, unless `allowAnonymous` puts it in the one shared anonymous scope.
 */
export type ScopeOption = ((c: Context) => string | null | undefined) | { readonly headers: readonly string[] };

/** A resolved scope: what kind it is (part of every record name) and how to read it. */
export interface Scope {
  /** `headers:<entries>` or `custom`: records of different kinds never share a name. */
  readonly kind: string;
  /**
   * The scope of a request, or `undefined` when it has none.
   *
   * @param header - reads a request header as it will be forwarded
   * @throws an `authorization_invalid` rejection when a credential header is malformed
   */
  read(c: Context, header: (name: string) => string | undefined): string | undefined;
}

/** Refuses a credential header that is empty or holds control characters or non-ASCII bytes. */
const malformed = (header: string): never =>
  reject('authorization_invalid', `The ${header} header is empty or contains control characters or non-ASCII bytes.`);

const WELL_FORMED = /^[\t\x20-\x7e]*[\x21-\x7e][\t\x20-\x7e]*$/;

/**
 * How many cookies named `name` a `Cookie` value holds. Pairs are split on `;` and on `,` too (several `Cookie`
 * fields may arrive joined by a comma; a cookie value cannot hold one, RFC 6265 §4.1.1).
 */
function cookieCount(value: string, name: string): number {
  let count = 0;
  for (const pair of value.split(/[;,]/)) {
    const equals = pair.indexOf('=');
    if (equals !== -1 && pair.slice(0, equals).trim() === name) count++;
  }
  return count;
}

/** Checks the scope option and returns how to read it; a message naming the problem when it is invalid. */
export function resolveScope(option: ScopeOption | undefined): Scope | string {
  if (typeof option === 'function') return { kind: 'custom', read: (c) => option(c) ?? undefined };
  // Header names are case-insensitive, cookie names are not (`JSESSIONID`): only the header part is lower-cased.
  const entries = (option?.headers ?? ['authorization']).map((entry) => {
    const trimmed = entry.trim();
    const lower = trimmed.toLowerCase();
    return lower.startsWith('cookie:') ? `cookie:${trimmed.slice('cookie:'.length)}` : lower;
  });
  if (entries.length === 0) return 'must name at least one header';
  const readers: ((header: (name: string) => string | undefined) => string | undefined)[] = [];
  for (const entry of entries) {
    const [name = '', cookie] = entry.startsWith('cookie:') ? ['cookie', entry.slice('cookie:'.length)] : [entry];
    if (!HTTP_TOKEN.test(name) || (cookie !== undefined && !HTTP_TOKEN.test(cookie))) return 'must be header names or cookie:<name>';
    if (isHopByHop(name)) return 'must not name a hop-by-hop header: it is never forwarded';
    readers.push((header) => {
      const value = header(name);
      if (value === undefined || cookie === undefined) {
        if (value !== undefined && !WELL_FORMED.test(value)) malformed(name);
        return value;
      }
      const found = parseCookies(value, cookie)[cookie];
      if (found !== undefined && !WELL_FORMED.test(found)) malformed(entry);
      // Which of two same-named cookies an origin reads is its own choice: the scope could be one and the
      // session the origin acts for the other.
      if (cookieCount(value, cookie) > 1) reject('authorization_invalid', 'The scope cookie is sent more than once; send it once.');
      return found;
    });
  }
  if (new Set(entries).size !== entries.length) return 'must not name a header twice';
  const kind = `headers:${entries.join(',')}`;
  if (readers.length === 1) {
    const [only] = readers;
    return { kind, read: (_, header) => only!(header) };
  }
  return {
    kind,
    read(_, header) {
      const values = readers.map((read) => read(header) ?? null);
      // JSON keeps every value apart: ["a,b", null] and ["a", "b"] are different scopes.
      return values.every((value) => value === null) ? undefined : JSON.stringify(values);
    },
  };
}

/**
 * The kind of the anonymous scope (`allowAnonymous`): every keyed write without a credential shares it. No scope
 * option resolves to this kind (theirs are `headers:…` and `custom`), so an anonymous record's name never equals a
 * credential's.
 */
export const ANONYMOUS_KIND = 'anonymous';
/** The scope hash of anonymous records: the SHA-256 of the empty string (pinned by `test/worker/golden.test.ts`). */
export const ANONYMOUS_SCOPE_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * What a client is told when its keyed write carries no scope: which headers would have scoped it (they are what
 * it must send, not a secret of the deployment).
 *
 * @param kind - {@link Scope.kind}
 * @param keyHeader - the key header's name
 */
export function missingScopeDetail(kind: string, keyHeader: string): string {
  const refused = "so its key could not be kept apart from other clients' keys and nothing was run. Send it with the credential.";
  const entries = kind.startsWith('headers:') ? kind.slice('headers:'.length).split(',') : undefined;
  if (entries === undefined) return `This request carries ${keyHeader} but the app found no scope (credential) for it, ${refused}`;
  const named = entries.map((entry) => (entry.startsWith('cookie:') ? `the ${entry.slice('cookie:'.length)} cookie` : entry)).join(', ');
  return `This request carries ${keyHeader} but none of the headers that scope keys (${named}), ${refused}`;
}

/**
 * The request headers a scope of `kind` is read from (`cookie` for a cookie), or `undefined` for a custom scope.
 *
 * @param kind - {@link Scope.kind}
 */
export function scopeHeaderNames(kind: string): string[] | undefined {
  if (!kind.startsWith('headers:')) return undefined;
  return kind
    .slice('headers:'.length)
    .split(',')
    .map((entry) => (entry.startsWith('cookie:') ? 'cookie' : entry));
}
