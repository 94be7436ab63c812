/**
 * @module
 * The key API's prefix in every spelling an origin might read as it: a request whose path could be the key API
 * to someone (the origin, a proxy in front of it) is either the key API or refused, never forwarded, so the admin
 * token a client sends there never travels on.
 */

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
