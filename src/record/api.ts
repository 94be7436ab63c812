/**
 * @module
 * The RPC surface of `IdempotencyRecord`: the types its public methods take and return. This surface is
 * a versioned public API (any Worker holding the namespace binding can call it), documented with the
 * stored format in docs/storage-schema.md.
 */
import type { HeaderList } from '../shared/headers';
import type { Outcome } from '../shared/outcome';
import type { AttemptReport } from './attempt';

/** The limits every attempt runs under; sent with every call to the object. */
export interface AttemptLimits {
  /** SHA-256 over method, path, query and body (see `fingerprintRequest`), or a custom fingerprint. */
  readonly fingerprint: string;
  /** How long this caller waits for the attempt before it gets 504 (first) or 409 (duplicate), in ms. */
  readonly timeoutMs: number;
  /** How long an attempt may run before it is abandoned and the key freed, in ms. */
  readonly leaseMs: number;
  /** How long the record lives, counted from the first request, in ms. */
  readonly ttlMs: number;
  /**
   * What a request does once an attempt ended without an answer (its object was reset and its lease has
   * ended): `retry` runs it again with the same key (the default), `hold` answers `outcome_unknown` until a
   * purge or the expiry, `reconcile` (with {@link AttemptSpec.reconcile}) asks the origin first.
   */
  readonly onUnknown?: 'retry' | 'hold' | 'reconcile';
  /** The method of the client's request, kept for lookups (`inspect`). */
  readonly method?: string;
  /** The path of the client's request (without its query), kept for lookups (`inspect`). */
  readonly path?: string;
}

/** The origin request an object runs itself (proxy mode). */
export interface OriginRequest {
  readonly method: string;
  /** The full origin URL to call. */
  readonly url: string;
  /** Request headers to forward, including the credential and `Idempotency-Key`. */
  readonly headers: HeaderList;
  readonly body: ArrayBuffer | null;
  /** Largest response body stored, in bytes. */
  readonly maxBodyBytes: number;
}

/** What the Worker sends for a keyed request in proxy mode. */
export interface AttemptSpec extends AttemptLimits {
  readonly origin: OriginRequest;
  /**
   * With `onUnknown: 'reconcile'`: the `GET` that asks the origin whether the request ran, with the retry's own
   * scope headers and `Idempotency-Key` (so no credential is ever stored to make it).
   */
  readonly reconcile?: { readonly url: string; readonly headers: HeaderList };
}

/**
 * Answer of `IdempotencyRecord.begin`: run the handler yourself and report its result on `report` (or, after the
 * session was lost, with `IdempotencyRecord.complete(attempt, …)`; `expiresAt`: when the key can run again once the
 * handler's answer holds it), or what the client gets.
 */
export type BeginResult =
  { readonly kind: 'acquired'; readonly attempt: string; readonly expiresAt: number; readonly report: AttemptReport } | Outcome;

/** What `IdempotencyRecord.inspect` tells about a record; never its body. */
export interface RecordInfo {
  readonly state: 'in_flight' | 'complete' | 'too_large' | 'lost' | 'unknown';
  /** The stored status (`complete`, `too_large`, `lost`). */
  readonly status: number | null;
  /** When the first request arrived, ms since the epoch (`null` for records stored before format 2). */
  readonly created_at: number | null;
  /** When the key can run again, ms since the epoch. */
  readonly expires_at: number;
  /** While in flight: when a dead attempt frees the key, ms since the epoch. */
  readonly lease_until: number | null;
  /** The method and path of the request that created the record (`null` before format 2). */
  readonly method: string | null;
  readonly path: string | null;
}

/** Answer of `IdempotencyRecord.purge`. */
export type PurgeResult =
  /** The record was deleted: the next request with the key runs again. */
  | { readonly kind: 'purged'; readonly state: RecordInfo['state'] }
  /** There is no record (or it has expired). */
  | { readonly kind: 'not_found' }
  /** An attempt is still running (or may be, until its lease ends): the record is left alone. */
  | { readonly kind: 'in_progress'; readonly retryAfterMs: number };
