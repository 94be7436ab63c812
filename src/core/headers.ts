/**
 * @module
 * Header lists as stored and sent over RPC: `[name, value]` pairs, lower-case names, one pair per
 * `Set-Cookie` (joining cookies with commas corrupts them, RFC 6265 §3).
 */

/** Headers as an ordered list of pairs. */
export type HeaderList = [name: string, value: string][];

/**
 * Headers never stored or replayed: hop-by-hop headers (RFC 9110 §7.6.1; `hono/proxy` already removes
 * them from origin answers, a handler's answer may still carry them) and `content-length`, which the
 * runtime sets again for the bytes actually sent.
 */
const NOT_STORED = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

/**
 * The end-to-end headers of a response, as pairs, each `Set-Cookie` kept separate.
 *
 * @param decoded - the body will be stored decoded, so `content-encoding` no longer applies
 */
export function storableHeaders(headers: Headers, decoded: boolean): HeaderList {
  const list: HeaderList = [];
  for (const [name, value] of headers) {
    if (name === 'set-cookie' || NOT_STORED.has(name) || (decoded && name === 'content-encoding')) continue;
    list.push([name, value]);
  }
  for (const cookie of headers.getSetCookie()) list.push(['set-cookie', cookie]);
  return list;
}

/** Rebuilds `Headers` from pairs; `append` keeps every `Set-Cookie` line. */
export function toHeaders(list: HeaderList): Headers {
  const headers = new Headers();
  for (const [name, value] of list) headers.append(name, value);
  return headers;
}

/** Request headers that must not be forwarded to the origin as they came (the runtime sets them). */
const NOT_FORWARDED = new Set(['host', 'content-length']);

/** The client's request headers to forward to the origin, as pairs. */
export function forwardableHeaders(headers: Headers): HeaderList {
  const list: HeaderList = [];
  for (const [name, value] of headers) if (!NOT_FORWARDED.has(name)) list.push([name, value]);
  return list;
}
