/**
 * @module
 * Encryption at rest of stored answers (issues #20, #29): turns a response into the parts a row stores, sealed with
 * the first key of `IDEMPOTENCY_ENCRYPTION_KEYS` when it is set, and back: the head (status and headers) at once, the
 * body part by part, so that a large answer is replayed from storage without being held whole.
 *
 * Each part (the headers, each body part) is sealed with additional data that binds it to where it was written: the
 * record name, the attempt id, the part's place, the number of body parts and the status. A part opens only in its own
 * record, at its own place, in a record of as many parts with the same status: removing a part, reordering parts or
 * swapping the status fails to open.
 *
 * A row without a key id is plaintext (written before a keyring was configured, or without one). With a keyring set it
 * is read only when the keyring allows it (an entry `plaintext`, kept while such rows may remain, as an old key is):
 * otherwise plaintext rows are unreadable, so that nobody who can write storage can plant an answer that a sealed
 * deployment would replay.
 *
 * Sealing is async (WebCrypto): callers seal before the synchronous, guarded store, so that stays one
 * synchronous transaction.
 */
import { concatBytes } from '../shared/bytes';
import type { HeaderList } from '../shared/headers';
import type { StoredResponse } from './api';
import { type Keyring, open, readKeyring, seal } from './seal';
import { BODY_CHUNK_BYTES, type StoredHead, type StoredParts } from './storage';

const encoder = new TextEncoder();
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
