/**
 * @module
 * What a key is bound to: the object's name (scope and key) and the request's fingerprint.
 */
import { hex } from '../shared/hash';

const encoder = new TextEncoder();

/** The Durable Object name for a key: the scope's hash and the key. */
export const recordName = (scopeHash: string, key: string): string => `${scopeHash}:${key}`;

/**
 * The request fingerprint: SHA-256 over method, path with query, and the exact body bytes, hex.
 * A newline separates the parts; neither method nor path can contain one, so the encoding is unambiguous.
 *
 * @param method - the request method, upper case
 * @param pathAndQuery - `pathname + search` of the request URL
 * @param body - the body bytes (empty for none)
 */
export async function fingerprintRequest(method: string, pathAndQuery: string, body: ArrayBuffer): Promise<string> {
  const head = encoder.encode(`${method}\n${pathAndQuery}\n`);
  const bytes = new Uint8Array(head.byteLength + body.byteLength);
  bytes.set(head);
  bytes.set(new Uint8Array(body), head.byteLength);
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}
