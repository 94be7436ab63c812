/**
 * @module
 * Encryption at rest of stored answers: AES-256-GCM through WebCrypto. A response becomes the parts a record stores,
 * sealed with the first key of `IDEMPOTENCY_ENCRYPTION_KEYS` when it is set, and back: the head (status and headers)
 * at once, the body part by part, so that a large answer is replayed from storage without being held whole.
 *
 * `IDEMPOTENCY_ENCRYPTION_KEYS` (a secret) is one or more `id:base64key` entries, comma-separated, each key 256
 * bits. The first entry seals; every entry opens, so keys rotate without losing records: put the new key first,
 * keep the old ones until every record sealed with them has expired (the longest TTL), then drop them. A
 * configuration error names the entry by its position and what is wrong with it, never an id or any key material.
 *
 * Each part (the headers, each body part) is sealed with additional data that binds it to where it was written: the
 * record name, the attempt id, the part's place, the number of body parts and the status. A part opens only in its own
 * record, at its own place, in a record of as many parts with the same status: removing a part, reordering parts or
 * swapping the status fails to open.
 *
 * A record without a key id is plaintext (written before a keyring was configured, or without one). With a keyring set
 * it is read only when the keyring allows it (an entry `plaintext`, kept while such records may remain, as an old key
 * is): otherwise plaintext records are unreadable, so that nobody who can write storage can plant an answer that a
 * sealed deployment would replay.
 *
 * Sealing is async (WebCrypto): callers seal before the synchronous, guarded store, so that stays one synchronous
 * transaction. Nothing here touches storage.
 */
import { concatBytes } from '../shared/bytes';
import type { HeaderList } from '../shared/headers';
import type { StoredResponse } from './api';
import { BODY_CHUNK_BYTES, type StoredHead, type StoredParts } from './storage';

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
 * Why `IDEMPOTENCY_ENCRYPTION_KEYS` cannot be used, as {@link SealConfigError}'s message (never a value), or
 * `undefined`: it is well formed, or unset or empty (no encryption).
 *
 * @param raw - the variable's value
 */
export function keyringError(raw: unknown): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  try {
    readKeyring(raw);
    return undefined;
  } catch (error) {
    if (!(error instanceof SealConfigError)) throw error;
    return error.message;
  }
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

const decoder = new TextDecoder();

/**
 * A stored answer that no configured key opens: an unknown key id, another key, changed bytes (or, `plaintext`, a
 * plaintext row the keyring does not allow).
 */
export interface Unreadable {
  readonly unreadable: string;
}

/** The body in parts of at most {@link BODY_CHUNK_BYTES} (one part, possibly empty, for a small body). */
function split(body: ArrayBuffer): Uint8Array[] {
  const bytes = new Uint8Array(body);
  if (bytes.byteLength <= BODY_CHUNK_BYTES) return [bytes];
  const parts: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += BODY_CHUNK_BYTES) parts.push(bytes.subarray(at, at + BODY_CHUNK_BYTES));
  return parts;
}

/**
 * What each part is sealed with: the record, the attempt, the part's place, the number of body parts and the status, so
 * that the parts of a record authenticate each other.
 */
function aad(name: string, attempt: string, part: string, head: Pick<StoredHead, 'count' | 'status'>): string {
  return JSON.stringify([name, attempt, part, head.count, head.status]);
}

/** The keyring of an object's env, parsed once per value of the secret (a changed secret is picked up). */
export class Keys {
  #raw: unknown;
  #keyring: Keyring | undefined;

  /** @throws {@link SealConfigError} for a malformed value (the proxy Worker refuses it first). */
  of(raw: unknown): Keyring | undefined {
    if (raw === undefined || raw === '') return undefined;
    if (raw !== this.#raw || this.#keyring === undefined) {
      this.#keyring = readKeyring(raw);
      this.#raw = raw;
    }
    return this.#keyring;
  }
}

/**
 * The parts to store for `response` of `attempt` in the record `name`: sealed with the first
 * key when `keys` is set (failing closed when the record has no name), else plaintext.
 */
export async function sealResponse(
  keys: Keyring | undefined,
  name: string | undefined,
  attempt: string,
  response: StoredResponse,
): Promise<StoredParts> {
  const headers = JSON.stringify(response.headers);
  const parts = split(response.body);
  const head = { status: response.status, count: parts.length };
  if (keys === undefined) return { ...head, headers, parts, keyId: null };
  if (name === undefined) throw new Error('a record without a name cannot be sealed');
  const sealed = await Promise.all([
    seal(keys, aad(name, attempt, 'headers', head), encoder.encode(headers)),
    ...parts.map((part, index) => seal(keys, aad(name, attempt, `body:${index}`, head), part)),
  ]);
  return { ...head, headers: sealed[0]!.bytes, parts: sealed.slice(1).map(({ bytes }) => bytes), keyId: keys.sealingId };
}

/** Opens the head (status and headers) of what {@link sealResponse} stored. */
export async function openHead(
  keys: Keyring | undefined,
  name: string | undefined,
  attempt: string,
  stored: StoredHead,
): Promise<{ readonly status: number; readonly headers: HeaderList } | Unreadable> {
  const { status, keyId } = stored;
  if (keyId === null) {
    if (keys !== undefined && !keys.plaintext) return { unreadable: 'plaintext' };
    const headers = typeof stored.headers === 'string' ? stored.headers : decoder.decode(stored.headers);
    return { status, headers: JSON.parse(headers) as HeaderList };
  }
  if (keys === undefined || name === undefined || typeof stored.headers === 'string') return { unreadable: keyId };
  const opened = await open(keys, aad(name, attempt, 'headers', stored), keyId, stored.headers);
  return opened === undefined ? { unreadable: keyId } : { status, headers: JSON.parse(decoder.decode(opened)) as HeaderList };
}

/**
 * Opens body part `index` of what {@link sealResponse} stored, once its head has opened ({@link openHead}).
 *
 * @returns the part's bytes, or `undefined` when it does not open there
 */
export async function openPart(
  keys: Keyring | undefined,
  name: string | undefined,
  attempt: string,
  head: StoredHead,
  index: number,
  part: Uint8Array,
): Promise<Uint8Array | undefined> {
  if (head.keyId === null) return part;
  if (keys === undefined || name === undefined) return undefined;
  return open(keys, aad(name, attempt, `body:${index}`, head), head.keyId, part);
}

/** Opens what {@link sealResponse} stored, the whole body at once; a record missing a part is unreadable. */
export async function openResponse(
  keys: Keyring | undefined,
  name: string | undefined,
  attempt: string,
  stored: StoredParts,
): Promise<StoredResponse | Unreadable> {
  const head = await openHead(keys, name, attempt, stored);
  if ('unreadable' in head) return head;
  const unreadable = { unreadable: stored.keyId ?? 'plaintext' };
  if (stored.parts.length !== stored.count) return unreadable;
  const parts = await Promise.all(stored.parts.map((part, index) => openPart(keys, name, attempt, stored, index, part)));
  if (parts.some((part) => part === undefined)) return unreadable;
  return { ...head, body: concatBytes(parts as Uint8Array[]) };
}
