/**
 * @module
 * Encryption at rest of stored answers (issue #20, finding 9): AES-256-GCM through WebCrypto, with the record's
 * name as additional authenticated data, so a sealed answer opens only in the record it was sealed for.
 *
 * `IDEMPOTENCY_ENCRYPTION_KEYS` (a secret) is one or more `id:base64key` entries, comma-separated, each key 256
 * bits. The first entry seals; every entry opens, so keys rotate without losing records: put the new key first,
 * keep the old ones until every record sealed with them has expired (the longest TTL), then drop them.
 *
 * This module touches no storage: it turns bytes into sealed bytes and back. A configuration error names the
 * entry by its position and what is wrong with it, never an id or any key material.
 */

/** An id names a key in every sealed record: short, and safe to store and log. */
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
/** Standard or URL-safe base64, padded or not. */
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;
const KEY_BYTES = 32;
const IV_BYTES = 12;
const encoder = new TextEncoder();

/** Why `IDEMPOTENCY_ENCRYPTION_KEYS` is invalid; its message never shows an id or key material. */
export class SealConfigError extends Error {
  constructor(message: string) {
    super(`IDEMPOTENCY_ENCRYPTION_KEYS: ${message}`);
    this.name = 'SealConfigError';
  }
}

/** The configured keys: checked once, imported (non-extractable) on first use. */
export interface Keyring {
  /** The id of the key that seals. */
  readonly sealingId: string;
  /**
   * Whether rows stored in plaintext (without a key id) are read: only with an entry `plaintext`, kept while rows
   * written before the keyring may remain (a migration), as an old key is kept after a rotation.
   */
  readonly plaintext: boolean;
  /** Every id that can open, in configuration order. */
  readonly ids: readonly string[];
  /** @internal the imported key of an id, or `undefined` for an id not configured. */
  readonly key: (id: string) => Promise<CryptoKey> | undefined;
}

/** What {@link seal} returns: the id of the key used (store it with the record) and IV followed by ciphertext. */
export interface Sealed {
  readonly keyId: string;
  readonly bytes: Uint8Array;
}

function decodeBase64(text: string): Uint8Array | undefined {
  if (!BASE64.test(text)) return undefined;
  const standard = text.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  if (standard.length % 4 === 1) return undefined;
  try {
    return Uint8Array.from(atob(standard.padEnd(Math.ceil(standard.length / 4) * 4, '=')), (char) => char.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * Reads `IDEMPOTENCY_ENCRYPTION_KEYS`.
 *
 * @param raw - the variable's value: `id:base64key[,id:base64key...]`, and after the first entry optionally `plaintext`
 *   (plaintext rows are read: see {@link Keyring.plaintext})
 * @returns the keyring (keys are imported when first used)
 * @throws {@link SealConfigError} for an empty value, a malformed entry, a repeated id or a key that is not 256 bits, or
 *   `plaintext` first (the first entry seals) or twice
 * @example
 * ```ts
 * const keys = readKeyring(env.IDEMPOTENCY_ENCRYPTION_KEYS); // "k2:base64...,k1:base64..."
 * const sealed = await seal(keys, recordName, bytes); // sealed with k2
 * await open(keys, recordName, sealed.keyId, sealed.bytes); // bytes again
 * ```
 */
export function readKeyring(raw: unknown): Keyring {
  if (typeof raw !== 'string' || raw.trim() === '') throw new SealConfigError('must name at least one id:base64key entry');
  const material = new Map<string, Uint8Array>();
  let plaintext = false;
  raw.split(',').forEach((entry, index) => {
    const position = `entry ${index + 1}`;
    if (entry.trim() === 'plaintext') {
      if (index === 0) throw new SealConfigError('entry 1 must be a key: the first entry seals (plaintext may only follow it)');
      if (plaintext) throw new SealConfigError(`${position} repeats plaintext`);
      plaintext = true;
      return;
    }
    const colon = entry.indexOf(':');
    const id = entry.slice(0, colon).trim();
    if (colon === -1 || !KEY_ID.test(id))
      throw new SealConfigError(`${position} must be id:base64key, with an id of 1 to 32 letters, digits, _ or -`);
    if (material.has(id)) throw new SealConfigError(`${position} repeats the id of an earlier entry`);
    const bytes = decodeBase64(entry.slice(colon + 1).trim());
    if (bytes === undefined) throw new SealConfigError(`${position} does not hold a base64 key`);
    if (bytes.length !== KEY_BYTES) throw new SealConfigError(`${position} must be a 256-bit key (32 bytes, in base64)`);
    material.set(id, bytes);
  });
  const imported = new Map<string, Promise<CryptoKey>>();
  const ids = [...material.keys()];
  return {
    sealingId: ids[0]!,
    plaintext,
    ids,
    key(id) {
      let key = imported.get(id);
      const bytes = material.get(id);
      if (key === undefined && bytes !== undefined) {
        key = crypto.subtle.importKey('raw', bytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
        imported.set(id, key);
      }
      return key;
    },
  };
}

/**
 * Seals `plaintext` for the record `recordName` with the first key: a random 96-bit IV (never reused: 2^32
 * seals per key keep the collision risk under 2^-32), AES-256-GCM, the record name as additional data.
 *
 * @returns the key id and `IV || ciphertext || tag`
 */
export async function seal(keys: Keyring, recordName: string, plaintext: Uint8Array): Promise<Sealed> {
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const key = await keys.key(keys.sealingId)!;
  const ciphertext = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: encoder.encode(recordName) }, key, plaintext);
  const bytes = new Uint8Array(IV_BYTES + ciphertext.byteLength);
  bytes.set(iv);
  bytes.set(new Uint8Array(ciphertext), IV_BYTES);
  return { keyId: keys.sealingId, bytes };
}

/**
 * Opens what {@link seal} sealed for `recordName`.
 *
 * @returns the plaintext, or `undefined` when no configured key can open it: an unknown key id (a key dropped
 * too early), another record's name, or bytes changed since (the GCM tag fails). Never throws for those: the
 * caller decides what an unreadable record means (it must never be replayed, nor run again silently).
 */
export async function open(keys: Keyring, recordName: string, keyId: string, bytes: Uint8Array): Promise<Uint8Array | undefined> {
  const key = keys.key(keyId);
  if (key === undefined || bytes.length < IV_BYTES + 16) return undefined;
  try {
    const plaintext = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: bytes.subarray(0, IV_BYTES), additionalData: encoder.encode(recordName) },
      await key,
      bytes.subarray(IV_BYTES),
    );
    return new Uint8Array(plaintext);
  } catch {
    return undefined;
  }
}
