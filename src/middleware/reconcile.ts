/**
 * @module
 * The reconcile request the middleware hands the object with every keyed write under `onUnknown: 'reconcile'`
 * (origin mode). It is built from the retry itself, so the object never stores a credential to ask the origin.
 */
import type { HeaderList } from '../shared/headers';
import { scopeHeaderNames } from './scope';

/**
 * @param template - the `reconcileUrl` option: a path on the origin's host with `{key}`
 * @param target - the origin URL of this request (the reconcile path replaces its path and query)
 * @param key - the normalised key, percent-encoded into the template
 * @param keyHeader - the key's header name (lower case)
 * @param headers - the request's forwardable headers
 * @param scopeKind - the scope's kind: its headers are sent; a custom scope sends every forwardable header but
 *   the body's (`content-*`), since which of them make the scope is unknown
 */
export function reconcileRequest(
  template: string,
  target: string,
  key: string,
  keyHeader: string,
  headers: HeaderList,
  scopeKind: string,
): { url: string; headers: HeaderList } {
  const url = new URL(template.replaceAll('{key}', encodeURIComponent(key)), target).href;
  const names = scopeHeaderNames(scopeKind);
  const sent = headers.filter(([name]) =>
    name === keyHeader ? true : names === undefined ? !name.startsWith('content-') : names.includes(name),
  );
  return { url, headers: sent };
}
