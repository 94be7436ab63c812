/**
 * @module
 * The request fingerprint a key is bound to: SHA-256 over the method, the path with its query, and the body,
 * either its exact bytes or, for JSON APIs whose clients re-serialise their bodies, its RFC 8785 canonical form
 * with the fields that change on every retry removed.
 */
import { type Json, remove } from '@hyperjump/json-pointer';
// canonicalize 4: 5 declares Node >= 22, more than this package's engines. Its serializer recurses, which the
// nesting bound below keeps to MAX_JSON_FINGERPRINT_DEPTH frames.
import canonicalize from 'canonicalize';
import { concatBytes, hex } from '../shared/bytes';

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** RFC 6901 syntax: empty, or `/`-separated segments in which `~` only starts `~0` or `~1`. */
const JSON_POINTER = /^(?:\/(?:[^~/]|~[01])*)*$/;

/**
 * The largest body canonicalised as JSON: 1 MiB. Parsing and canonicalising build several copies of the body in
 * memory; above this bound the exact bytes decide (key order and white space matter again).
 */
export const MAX_JSON_FINGERPRINT_BYTES = 1024 * 1024;

/** The deepest nesting of arrays and objects canonicalised as JSON; deeper bodies fall back to their bytes. */
export const MAX_JSON_FINGERPRINT_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = new Set([0x5b, 0x7b]); // [ {
const CLOSE = new Set([0x5d, 0x7d]); // ] }

/**
 * Whether the arrays and objects of a (would-be) JSON text nest deeper than `limit`: one pass over the bytes,
 * counting brackets outside strings, without recursion, so a body of a million `[` cannot overflow any stack.
 * UTF-8 continuation bytes are never ASCII, so a multi-byte character cannot be mistaken for a bracket.
 */
export function nestsDeeperThan(bytes: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if (OPEN.has(byte)) {
      if (++depth > limit) return true;
    } else if (CLOSE.has(byte)) depth--;
  }
  return false;
}

/** Computes the fingerprint of a request from its method, path with query, and body. */
export type Fingerprinter = (method: string, pathAndQuery: string, body: ArrayBuffer) => Promise<string>;

/**
 * The fingerprint over the exact body bytes. A newline separates the parts; neither method nor path can
 * contain one, so the encoding is unambiguous.
 *
 * @param method - the request method, upper case
 * @param pathAndQuery - `pathname + search` of the request URL
 * @param body - the body bytes (empty for none)
 */
export async function fingerprintRequest(method: string, pathAndQuery: string, body: ArrayBuffer | Uint8Array): Promise<string> {
  const head = encoder.encode(`${method}\n${pathAndQuery}\n`);
  const bytes = concatBytes([head, body instanceof Uint8Array ? body : new Uint8Array(body)]);
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

/**
 * The body as RFC 8785 canonical JSON without the `ignore`d members, or `undefined` if it is not JSON or is over
 * the bounds ({@link MAX_JSON_FINGERPRINT_BYTES}, {@link MAX_JSON_FINGERPRINT_DEPTH}).
 */
function canonicalJson(body: ArrayBuffer, ignore: readonly ((value: Json) => void)[]): string | undefined {
  // Bounded before anything is parsed: the isolate's memory and stack are shared by every request it serves.
  if (body.byteLength > MAX_JSON_FINGERPRINT_BYTES || nestsDeeperThan(new Uint8Array(body), MAX_JSON_FINGERPRINT_DEPTH)) return undefined;
  let value: Json;
  try {
    value = JSON.parse(strictUtf8.decode(body)) as Json;
  } catch {
    return undefined;
  }
  for (const drop of ignore) {
    try {
      drop(value);
    } catch {
      // The pointer runs through something that is not there (or not an object): nothing to ignore.
    }
  }
  try {
    return canonicalize(value);
  } catch {
    // A lone surrogate (`"\ud800"`) has no canonical form: the exact bytes decide.
    return undefined;
  }
}

/**
 * The fingerprint of a mode: `bytes` (the exact body) or `json` (RFC 8785 canonical JSON, key order and
 * white space do not matter; the RFC 6901 pointers in `ignoreFields` are removed first; a body that is not
 * JSON, or is larger than 1 MiB or nests deeper than 64, falls back to its exact bytes).
 *
 * @returns the fingerprinter, or a message naming what is wrong with `ignoreFields`
 */
export function fingerprinter(mode: 'bytes' | 'json', ignoreFields: readonly string[]): Fingerprinter | string {
  if (mode === 'bytes') return ignoreFields.length === 0 ? fingerprintRequest : 'is only used with the json fingerprint';
  const invalid = ignoreFields.find((pointer) => pointer === '' || !JSON_POINTER.test(pointer));
  if (invalid !== undefined) return `must be RFC 6901 JSON Pointers such as "/client_timestamp"`;
  const ignore = ignoreFields.map((pointer) => remove(pointer));
  return async (method, pathAndQuery, body) => {
    const canonical = canonicalJson(body, ignore);
    if (canonical === undefined) return fingerprintRequest(method, pathAndQuery, body);
    // ":json" keeps a canonical form apart from every bytes fingerprint: a method (an HTTP token) has no ':'.
    return fingerprintRequest(`${method}:json`, pathAndQuery, encoder.encode(canonical));
  };
}
