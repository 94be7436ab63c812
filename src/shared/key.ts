/**
 * @module
 * Parses the `Idempotency-Key` request header.
 *
 * A key is 1 to 128 visible ASCII characters (0x21-0x7E). The IETF httpapi draft writes the header as
 * an RFC 8941 sf-string (`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`); that form names the
 * same key as the bare value, so both are accepted and normalised to the bare key.
 */
import { parseItem } from 'structured-headers';

/** Longest key accepted, from the public contract ("Max key length: 128 characters"). */
export const MAX_KEY_LENGTH = 128;

const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

/** Why a key was refused. */
export type KeyError =
  | { readonly reason: 'empty' }
  | { readonly reason: 'too_long'; readonly max: number; readonly length: number }
  | { readonly reason: 'bad_characters' }
  | { readonly reason: 'bad_structured_string' };

/** A parsed key, or the reason it was refused. */
export type KeyResult = { readonly ok: true; readonly key: string } | { readonly ok: false; readonly error: KeyError };

/**
 * Parses the raw header value (as returned by `Headers.get`, so several headers arrive joined by `", "`
 * and are refused because a key cannot contain a space).
 *
 * @param raw - the header value
 * @returns the normalised key or why it is invalid
 * @example
 * ```ts
 * parseIdempotencyKey('"abc"'); // { ok: true, key: 'abc' }
 * parseIdempotencyKey('a b');   // { ok: false, error: { reason: 'bad_characters' } }
 * ```
 */
export function parseIdempotencyKey(raw: string): KeyResult {
  let key = raw;
  if (raw.startsWith('"')) {
    try {
      const [value, params] = parseItem(raw);
      if (typeof value !== 'string' || params.size > 0) return { ok: false, error: { reason: 'bad_structured_string' } };
      key = value;
    } catch {
      return { ok: false, error: { reason: 'bad_structured_string' } };
    }
  }
  if (key.length === 0) return { ok: false, error: { reason: 'empty' } };
  if (key.length > MAX_KEY_LENGTH) return { ok: false, error: { reason: 'too_long', max: MAX_KEY_LENGTH, length: key.length } };
  if (!VISIBLE_ASCII.test(key)) return { ok: false, error: { reason: 'bad_characters' } };
  return { ok: true, key };
}

/** A sentence for the client explaining a {@link KeyError}. */
export function describeKeyError(error: KeyError): string {
  switch (error.reason) {
    case 'empty':
      return 'The Idempotency-Key header is empty; send 1 to 128 visible ASCII characters, e.g. a UUID.';
    case 'too_long':
      return `The Idempotency-Key is ${error.length} characters long; the maximum is ${error.max}.`;
    case 'bad_characters':
      return 'The Idempotency-Key must be a single value of visible ASCII characters (0x21-0x7E): no spaces, control characters, non-ASCII bytes or repeated headers.';
    case 'bad_structured_string':
      return 'The Idempotency-Key starts with a double quote but is not a valid RFC 8941 string.';
  }
}
