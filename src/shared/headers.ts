/**
 * @module
 * Header lists as stored and sent over RPC: `[name, value]` pairs, lower-case names, one pair per
 * `Set-Cookie` (joining cookies with commas corrupts them, RFC 6265 §3).
 */

/** An HTTP token (RFC 9110 §5.6.2): what a method or a header name is made of. */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Headers as an ordered list of pairs. */
export type HeaderList = [name: string, value: string][];

/** Hop-by-hop headers (RFC 9110 §7.6.1), plus those any `Connection` header names; never forwarded. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

const HOP_BY_HOP_NAMES: ReadonlySet<string> = new Set(HOP_BY_HOP);

/** Whether `name` (lower case) is always hop-by-hop, whatever `Connection` says. */
export const isHopByHop = (name: string): boolean => HOP_BY_HOP_NAMES.has(name);

/** The fixed hop-by-hop names and `extra`, as one set: built once, not per message. */
const hopByHopAnd = (extra: readonly string[]): ReadonlySet<string> => new Set([...HOP_BY_HOP, ...extra]);

/**
 * The names a message's headers are passed on without: `fixed` (the hop-by-hop names, and any a use adds), and what
 * its `Connection` header names. `fixed` itself when there is no `Connection` header (nearly always).
 */
function hopByHop(headers: Headers, fixed: ReadonlySet<string>): ReadonlySet<string> {
  const connection = headers.get('connection');
  if (connection === null) return fixed;
  const names = new Set(fixed);
  for (const token of connection.split(',')) names.add(token.trim().toLowerCase());
  return names;
}

/**
 * Hop-by-hop headers the runtime handles itself: it manages connections and message framing, and passes neither
 * `Connection: keep-alive|close`, `Keep-Alive` nor `Transfer-Encoding` on (checked on workerd).
 */
const RUNTIME_MANAGED: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'transfer-encoding', 'close']);
/** The other hop-by-hop headers, which a message rarely carries. */
const RARE_HOP_BY_HOP = HOP_BY_HOP.filter((name) => !RUNTIME_MANAGED.has(name));

/**
 * Whether passing a message on as it is would pass on a hop-by-hop header: one its `Connection` names (other
 * than `keep-alive` or `close`), or `Proxy-*`, `TE`, `Trailer` or `Upgrade`. Those the runtime handles itself do
 * not count. Nearly every message answers no, which is what makes passing it on without a copy possible.
 */
function carriesHopByHop(headers: Headers): boolean {
  const connection = headers.get('connection');
  if (connection !== null && connection.split(',').some((token) => !RUNTIME_MANAGED.has(token.trim().toLowerCase()))) return true;
  return RARE_HOP_BY_HOP.some((name) => headers.has(name));
}

/** Response headers never stored or replayed: the hop-by-hop ones and `content-length` (set again for the bytes sent). */
const NOT_STORED = hopByHopAnd(['content-length']);

/**
 * The end-to-end headers of a response, as pairs, each `Set-Cookie` kept separate.
 *
 * @param decoded - the body will be stored decoded, so `content-encoding` no longer applies
 */
export function storableHeaders(headers: Headers, decoded: boolean): HeaderList {
  const skip = hopByHop(headers, NOT_STORED);
  const list: HeaderList = [];
  for (const [name, value] of headers) {
    if (name === 'set-cookie' || skip.has(name) || (decoded && name === 'content-encoding')) continue;
    list.push([name, value]);
  }
  for (const cookie of headers.getSetCookie()) list.push(['set-cookie', cookie]);
  return list;
}

/**
 * A response as a proxy passes it on (RFC 9110 §7.6.1): the same response object unless it
 * {@link carriesHopByHop}, else a copy without its hop-by-hop headers.
 */
export function endToEnd(response: Response): Response {
  const { headers } = response;
  if (!carriesHopByHop(headers)) return response;
  const skip = hopByHop(headers, HOP_BY_HOP_NAMES);
  const kept = new Headers();
  for (const [name, value] of headers) if (name !== 'set-cookie' && !skip.has(name)) kept.append(name, value);
  for (const cookie of headers.getSetCookie()) kept.append('set-cookie', cookie);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers: kept });
}

/** Rebuilds `Headers` from pairs; `append` keeps every `Set-Cookie` line. */
export function toHeaders(list: HeaderList): Headers {
  const headers = new Headers();
  for (const [name, value] of list) headers.append(name, value);
  return headers;
}

/**
 * Request headers not forwarded as they came: the hop-by-hop ones; `host`, which the runtime sets itself; and
 * `accept-encoding`: without the client's, it negotiates an encoding it can decode (as `hono/proxy` does).
 * `content-length` is kept: it describes the body forwarded unchanged, and without it a streamed body would go out
 * chunked.
 */
const NOT_FORWARDED = hopByHopAnd(['host', 'accept-encoding']);
/** Request headers a pass-through does not send on: the hop-by-hop ones and `host` (the target's, set by the runtime). */
const NOT_PASSED = hopByHopAnd(['host']);

/**
 * Reads request headers as a proxy will forward them: a hop-by-hop header, or one the request's
 * `Connection` header names, reads as absent.
 */
export function forwardedHeader(headers: Headers): (name: string) => string | undefined {
  const dropped = carriesHopByHop(headers) ? hopByHop(headers, HOP_BY_HOP_NAMES) : undefined;
  return (name) => (isHopByHop(name) || dropped?.has(name) ? undefined : (headers.get(name) ?? undefined));
}

/** `headers` as pairs, without the names in `skip`. */
function without(headers: Headers, skip: ReadonlySet<string>): HeaderList {
  const list: HeaderList = [];
  for (const [name, value] of headers) if (!skip.has(name)) list.push([name, value]);
  return list;
}

/** The client's end-to-end request headers for an origin call whose answer is read (and stored), as pairs. */
export function forwardableHeaders(headers: Headers): HeaderList {
  return without(headers, hopByHop(headers, NOT_FORWARDED));
}

/**
 * The request headers of a pass-through, whose answer goes back to the client as the origin sent it: the
 * end-to-end headers, `Accept-Encoding` included. The request's own object when it carries no hop-by-hop header
 * (nearly always: no copy); `Host` is the target's either way, since the runtime sets it.
 */
export function passThroughHeaders(headers: Headers): Headers {
  return carriesHopByHop(headers) ? toHeaders(without(headers, hopByHop(headers, NOT_PASSED))) : headers;
}
