/**
 * @module
 * Where the proxy sends a request, and the requests it refuses to send: a path that would step outside
 * `ORIGIN_URL`'s base path at an origin that decodes before it normalises, a path an origin could read as the key
 * API's prefix in another spelling (the admin token a client sends there must never travel on), and (when it forwards
 * each request to its own URL) a request that has already been through this proxy.
 */
import { reject } from '../shared/problem';

/** Where requests go: a fixed origin (its path prefixes every request path), or each request's own URL. */
export type OriginConfig =
  | {
      readonly mode: 'url';
      /** The path of `ORIGIN_URL` without its trailing slash (`""` for a bare host). */
      readonly basePath: string;
      /** What every target starts with: the origin (scheme, host, port) and the base path. */
      readonly prefix: string;
    }
  | {
      readonly mode: 'request';
      /**
       * `ORIGIN_HOSTS` as serialised origins (`https://api.example.com`, `http://127.0.0.1:8788`): the only scheme, host
       * and port triples requests are forwarded to.
       */
      readonly hosts: ReadonlySet<string>;
    };

/** The `Via` entry the proxy adds in `request` mode (RFC 9110 §7.6.3): protocol and pseudonym. */
const VIA_ENTRY = '1.1 idempotency-proxy';
const PSEUDONYM = VIA_ENTRY.split(' ')[1];

/** Encoded `/` or `\`: an origin that decodes them before normalising would read a different path. */
const ENCODED_SEPARATOR = /%(?:2f|5c)/i;

/**
 * The origin URL for a request. In `url` mode: the origin's scheme, host and port, its base path, then the
 * request's path and query as the URL parser normalised them. A parsed path always starts with `/`, so nothing in
 * it (`//host`, `..`, an absolute-form request target) can change the scheme, host or port it follows. In
 * `request` mode: the request's own URL.
 *
 * @throws a `path_invalid` rejection for a path that could leave the base path
 */
export function originTarget(origin: OriginConfig, requestUrl: string): string {
  if (origin.mode === 'request') return requestUrl;
  if (origin.basePath === '') return origin.prefix + pathAndQuery(requestUrl);
  const { pathname, search } = new URL(requestUrl);
  if (escapesBase(pathname)) {
    reject(
      'path_invalid',
      'The path contains an encoded slash or backslash, or a dot segment, which could leave the API this proxy serves.',
    );
  }
  return origin.prefix + pathname + search;
}

/**
 * The path and query of a request URL as the runtime serialised it (absolute, normalised, without a fragment),
 * read without parsing it again: everything from the first `/` after the authority.
 */
export function pathAndQuery(requestUrl: string): string {
  const start = requestUrl.indexOf('/', requestUrl.indexOf('//') + 2);
  return start === -1 ? '/' : requestUrl.slice(start);
}

/** The path of a {@link pathAndQuery} without its query. */
export function pathnameOf(pathAndQuery: string): string {
  const query = pathAndQuery.indexOf('?');
  return query === -1 ? pathAndQuery : pathAndQuery.slice(0, query);
}

/**
 * Whether a (parsed, so already dot-normalised) path could still step outside a base path: an encoded
 * separator, or a segment that decodes to `.` or `..`. A segment is compared up to its first `;` (decoded, so
 * `%3B` too): Tomcat and Jetty strip path parameters before they resolve dot segments, so `/..;/manager` is
 * `/../manager` to them, though the URL parser leaves it alone.
 */
function escapesBase(pathname: string): boolean {
  if (ENCODED_SEPARATOR.test(pathname) || pathname.includes('\\')) return true;
  return pathname.split('/').some((segment) => {
    let decoded = segment;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      // not decodable: compared as it is
    }
    const name = decoded.split(';', 1)[0];
    return name === '.' || name === '..';
  });
}

/** Whether a request already carries this proxy's `Via` entry, i.e. came back to it. */
export function looped(request: Request): boolean {
  const via = request.headers.get('via');
  if (via === null) return false;
  return via.split(',').some((entry) => entry.trim().split(/\s+/)[1] === PSEUDONYM);
}

/** The `Via` value to forward: the request's own entries and this proxy's. */
export function viaWith(request: Request): string {
  const via = request.headers.get('via');
  return via === null ? VIA_ENTRY : `${via}, ${VIA_ENTRY}`;
}

/** The most times percent-encoding is undone: an origin that decodes twice sees `%255F` as `_`. */
const DECODE_ROUNDS = 3;

/** Undoes percent-encoding octet by octet (never throws: a malformed escape stays as it is). */
function decodeOctets(path: string): string {
  return path.replace(/%([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * The segments of a path as the most lenient origin could read them: percent-encoding undone (up to
 * {@link DECODE_ROUNDS} times), `/` and `\` both separators, empty and `.` segments dropped, `..` resolved, path
 * parameters (`;x`) dropped, letters in lower case.
 */
function lenientSegments(pathname: string): string[] {
  let path = pathname;
  for (let round = 0; round < DECODE_ROUNDS && path.includes('%'); round++) path = decodeOctets(path);
  const segments: string[] = [];
  for (const raw of path.toLowerCase().split(/[/\\]/)) {
    const segment = raw.split(';', 1)[0]!.trim();
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  return segments;
}

/**
 * A test of whether a path (the URL's encoded pathname) could name something under `prefix` (for example
 * `//_idempotency/admin`, `/_IDEMPOTENCY/keys/k`, `/_idempotency;x/admin`, `/%255Fidempotency`).
 *
 * @param prefix - `IDEMPOTENCY_API_PREFIX`, such as `/_idempotency`
 * @returns the test; cheap for the paths of nearly every request, which do not contain the prefix's first
 * segment in any case
 */
export function reservedPath(prefix: string): (pathname: string) => boolean {
  const wanted = prefix.toLowerCase().split('/').filter(Boolean);
  const first = wanted[0]!;
  return (pathname) => {
    const lower = pathname.toLowerCase();
    // Fast path: without the first segment, a '%', a ';' or a '\', no reading of the path reaches the prefix.
    if (!lower.includes(first) && !/[%;\\]/.test(lower)) return false;
    const segments = lenientSegments(pathname);
    return wanted.every((segment, index) => segments[index] === segment);
  };
}
