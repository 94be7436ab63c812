/**
 * @module
 * The reconcile request the middleware hands the object with every keyed write under `onUnknown: 'reconcile'`
 * (origin mode). It is built from the retry itself, so the object never stores a credential to ask the origin.
 *
 * The reconcile URL carries the client's credential, so it must reach the origin itself and nothing else: its template is a path that resolves to the origin's own scheme, host and port (no `\`, which the
 * URL parser reads as `/`, so `/\host` is another host), checked when the options are resolved and again for every URL
 * built, and a key can never move it: one that would make a `.` or `..` segment is refused.
 */
import type { HeaderList } from '../shared/headers';
import { reject } from '../shared/problem';
import { scopeHeaderNames } from './scope';

/** A host the template is resolved against when it is checked, and which it must keep. */
const PROBE_ORIGIN = 'https://origin.invalid';

/** A path segment the URL parser resolves away (WHATWG URL: `.`, `..`, and their `%2e` spellings, in any case). */
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

/** Whether the path of `pathAndQuery` (before `?` or `#`) holds a dot segment. */
function hasDotSegment(pathAndQuery: string): boolean {
  const path = pathAndQuery.split(/[?#]/, 1)[0] ?? '';
  return path.split('/').some((segment) => DOT_SEGMENT.test(segment));
}

/**
 * Why a reconcile template cannot be used, or `undefined`: it must be a path starting with `/` (not `//`) holding
 * `{key}`, without white space or `\`, without dot segments, that resolves to the origin it is resolved against.
 */
export function reconcileTemplateError(template: unknown): string | undefined {
  if (typeof template !== 'string' || !/^\/[^\s\\]*$/.test(template) || template.startsWith('//') || !template.includes('{key}'))
    return 'must be a path starting with "/" that holds the key placeholder';
  const probe = template.replaceAll('{key}', 'key');
  if (hasDotSegment(probe)) return 'must not hold "." or ".." segments';
  let url: URL;
  try {
    url = new URL(probe, `${PROBE_ORIGIN}/`);
  } catch {
    return 'must be a path starting with "/" that holds the key placeholder';
  }
  return url.origin === PROBE_ORIGIN ? undefined : "must resolve to the origin's own scheme, host and port";
}

/**
 * @param template - the `reconcileUrl` option: a path on the origin's host with `{key}` (checked by
 *   {@link reconcileTemplateError} when the options were resolved)
 * @param target - the origin URL of this request (the reconcile path replaces its path and query)
 * @param key - the normalised key, percent-encoded into the template
 * @param keyHeader - the key's header name (lower case)
 * @param headers - the request's forwardable headers
 * @param scopeKind - the scope's kind: its headers are sent; a custom scope sends every forwardable header but
 *   the body's (`content-*`), since which of them make the scope is unknown
 * @throws an `idempotency_key_invalid` rejection for a key that would make a dot segment (`.`, `..`: the URL parser
 *   resolves them, percent-encoded or not, so the GET would ask another path), and `configuration_invalid` for a URL
 *   that does not stay on the origin's scheme, host and port
 */
export function reconcileRequest(
  template: string,
  target: string,
  key: string,
  keyHeader: string,
  headers: HeaderList,
  scopeKind: string,
): { url: string; headers: HeaderList } {
  const path = template.replaceAll('{key}', encodeURIComponent(key));
  if (hasDotSegment(path))
    reject(
      'idempotency_key_invalid',
      'This route asks the origin about unknown outcomes by key, in a URL path: the key cannot be "." or "..".',
    );
  const origin = new URL(target);
  const url = new URL(path, origin);
  if (url.origin !== origin.origin)
    reject('configuration_invalid', "The reconcile URL does not resolve to the origin's own scheme, host and port; nothing was sent.");
  const names = scopeHeaderNames(scopeKind);
  const sent = headers.filter(([name]) =>
    name === keyHeader ? true : names === undefined ? !name.startsWith('content-') : names.includes(name),
  );
  return { url: url.href, headers: sent };
}
