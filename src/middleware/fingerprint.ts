/**
 * @module
 * The request fingerprint a key is bound to: SHA-256 over the method, the path with its query, and the body,
 * either its exact bytes or, for JSON APIs whose clients re-serialise their bodies, its RFC 8785 canonical form
 * with the fields that change on every retry removed.
 */
import { type Json, remove } from '@hyperjump/json-pointer';
import canonicalize from 'canonicalize';
import { concatBytes } from '../shared/bytes';
import { hex } from '../shared/hash';

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** RFC 6901 syntax: empty, or `/`-separated segments in which `~` only starts `~0` or `~1`. */
const JSON_POINTER = /^(?:\/(?:[^~/]|~[01])*)*$/;

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

/** The body as RFC 8785 canonical JSON without the `ignore`d members, or `undefined` if it is not JSON. */
function canonicalJson(body: ArrayBuffer, ignore: readonly ((value: Json) => void)[]): string | undefined {
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
 * JSON falls back to its exact bytes).
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
