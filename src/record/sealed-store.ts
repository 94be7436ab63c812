/**
 * @module
 * Encryption at rest of stored answers (issue #20): turns a response into the parts a row stores, sealed with
 * the first key of `IDEMPOTENCY_ENCRYPTION_KEYS` when it is set, and back. Each part (the headers, each body
 * part) is sealed with the record name, the attempt id and the part as additional data, so sealed bytes open
 * only where they were written. A row without a key id is plaintext (written before a keyring was configured,
 * or without one) and reads as it is.
 *
 * Sealing is async (WebCrypto): callers seal before the synchronous, guarded store, so that stays one
 * synchronous transaction.
 */
import { concatBytes } from '../shared/bytes';
import type { HeaderList } from '../shared/headers';
import type { StoredResponse } from './api';
import { type Keyring, open, readKeyring, seal } from './seal';
import { BODY_CHUNK_BYTES, type StoredParts } from './storage';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A stored answer that no configured key opens: an unknown key id, another key, or changed bytes. */
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

/** What each part is sealed with: the record, the attempt and the part's place. */
const aad = (name: string, attempt: string, part: string): string => JSON.stringify([name, attempt, part]);

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
 * The parts to store for `response` of `attempt` in the record `name`: sealed with the first key when `keys` is
 * set (failing closed when the record has no name), else plaintext.
 */
export async function sealResponse(
  keys: Keyring | undefined,
  name: string | undefined,
  attempt: string,
  response: StoredResponse,
): Promise<StoredParts> {
  const headers = JSON.stringify(response.headers);
  const parts = split(response.body);
  if (keys === undefined) return { status: response.status, headers, parts, keyId: null };
  if (name === undefined) throw new Error('a record without a name cannot be sealed');
  const sealed = await Promise.all([
    seal(keys, aad(name, attempt, 'headers'), encoder.encode(headers)),
    ...parts.map((part, index) => seal(keys, aad(name, attempt, `body:${index}`), part)),
  ]);
  return { status: response.status, headers: sealed[0]!.bytes, parts: sealed.slice(1).map(({ bytes }) => bytes), keyId: keys.sealingId };
}

/** Opens what {@link sealResponse} stored; plaintext parts (no key id) read as they are. */
export async function openResponse(
  keys: Keyring | undefined,
  name: string | undefined,
  attempt: string,
  stored: StoredParts,
): Promise<StoredResponse | Unreadable> {
  const { status, keyId } = stored;
  if (keyId === null) {
    const headers = typeof stored.headers === 'string' ? stored.headers : decoder.decode(stored.headers);
    return { status, headers: JSON.parse(headers) as HeaderList, body: concatBytes(stored.parts) };
  }
  if (keys === undefined || name === undefined || typeof stored.headers === 'string') return { unreadable: keyId };
  const opened = await Promise.all([
    open(keys, aad(name, attempt, 'headers'), keyId, stored.headers),
    ...stored.parts.map((part, index) => open(keys, aad(name, attempt, `body:${index}`), keyId, part)),
  ]);
  if (opened.some((part) => part === undefined)) return { unreadable: keyId };
  return { status, headers: JSON.parse(decoder.decode(opened[0])) as HeaderList, body: concatBytes(opened.slice(1) as Uint8Array[]) };
}
