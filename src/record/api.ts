/**
 * @module
 * The RPC surface of `IdempotencyRecord`, types only: what its public methods take and return (what it answers,
 * `Outcome`, and how an attempt ended, `Settled`, included). This surface is a public API (any Worker holding the
 * namespace binding can call it), documented with the stored format in docs/storage-schema.md.
 */
import type { HeaderList } from '../shared/headers';

/** A response as stored: status, end-to-end headers and the exact body bytes. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: HeaderList;
  readonly body: ArrayBuffer;
}

/**
 * A response still arriving: its head, and its body as the origin (or the handler) sends it. Only the first answer
 * of an attempt and the duplicates that join it are streamed; a replay from storage is a {@link StoredResponse}.
 */
export interface StreamedResponse {
  readonly status: number;
  readonly headers: HeaderList;
  readonly body: ReadableStream<Uint8Array>;
}

/**
 * How an attempt ended (the origin call in proxy mode, the app's handler in handler mode). `mayHaveRun` marks a
 * failure that came after the request may have reached the origin and before any status line: a connection that
 * broke or was refused (workerd reports both alike), or a lease that ended first. Whether the write ran is unknown.
 */
export type Settled =
  | { readonly kind: 'response'; readonly response: StoredResponse }
  | { readonly kind: 'origin_timeout'; readonly mayHaveRun?: true }
  | { readonly kind: 'origin_unreachable'; readonly mayHaveRun?: true }
  | { readonly kind: 'response_too_large'; readonly status: number }
  /** The status line of a result arrived, then the body broke off (a reset, the lease's end): the write ran. */
  | { readonly kind: 'response_lost'; readonly status: number };

/** The result of one keyed request, as decided by the Durable Object. */
export type Outcome =
  /**
   * The origin's answer. `replayed` is false only for the request that ran the attempt. `expiresAt` is set when the
   * answer was read back from storage: the record stays exactly this until then. `storedUntil` is set for the
   * attempt's own answer (first or joined) when it holds the key: stored just now, or a result still streaming
   * (stored when it ends, or kept as too large or lost); it is when the key can run again. Either one is the answer's
   * `Idempotency-Expires`. The response is streamed while the attempt's answer is still arriving. `createdAt`: when
   * the record was created (its first request), from which a replay's `Age` counts (set on every replay).
   */
  | {
      readonly kind: 'response';
      readonly replayed: boolean;
      readonly response: StoredResponse | StreamedResponse;
      readonly expiresAt?: number;
      readonly storedUntil?: number;
      readonly createdAt?: number;
    }
  /** The key is bound to a different fingerprint. */
  | {
      readonly kind: 'conflict';
      /**
       * The fingerprint of a record that is stored (complete, too large or lost), and when it expires: it stays so until
       * then (or a purge), so a Worker may answer conflicts for it without asking again.
       */
      readonly stored?: { readonly fingerprint: string; readonly expiresAt: number };
    }
  /** An attempt with this key is still running (or died and its lease has not ended yet). */
  | { readonly kind: 'in_progress'; readonly retryAfterMs: number }
  /**
   * The stored answer is being streamed to as many readers as the object allows at once: retry after
   * `retryAfterMs`. Nothing ran.
   */
  | { readonly kind: 'busy'; readonly retryAfterMs: number }
  /**
   * The origin did not answer within the client's wait; the attempt goes on and will be stored. `held`: the attempt
   * ended (its lease) with no status line, and the key's policy (`hold`, `reconcile`) now holds it as unknown.
   */
  | { readonly kind: 'origin_timeout'; readonly held?: true }
  /**
   * The origin could not be reached or broke the connection; nothing was stored. `held`: no status line arrived, so
   * the origin may have run it, and the key's policy (`hold`, `reconcile`) holds the key as unknown instead of freeing it.
   */
  | { readonly kind: 'origin_unreachable'; readonly held?: true }
  /** The origin ran the request but its answer is too large to store (body over the limit, or headers over 256 KiB). */
  | { readonly kind: 'response_too_large'; readonly status: number }
  /** The origin answered `status` (a result) but the answer broke off: it ran and never runs again under this key. */
  | { readonly kind: 'response_lost'; readonly status: number }
  /** An attempt died without an answer and the key's policy is `hold`: nobody knows whether the origin ran it. */
  | { readonly kind: 'outcome_unknown' }
  /** `reconcile`: the origin could not say whether it ran the request; the key is held and the next retry asks again. */
  | { readonly kind: 'outcome_pending'; readonly retryAfterMs: number }
  /**
   * The stored answer is sealed and no configured key of `IDEMPOTENCY_ENCRYPTION_KEYS` opens it (a key dropped too
   * early, or changed bytes): never replayed, never run again; the row stays until an operator purges it.
   */
  | { readonly kind: 'record_unreadable' }
  /**
   * The object's own configuration cannot work (a malformed `IDEMPOTENCY_ENCRYPTION_KEYS` in its env): nothing was run,
   * since its answer could not be stored. `detail` names the variable and what is wrong, never its value.
   */
  | { readonly kind: 'configuration_invalid'; readonly detail: string };

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
 * Handler mode: where the caller that acquired a key reports how its attempt ended. `begin` returns it (an `RpcTarget`),
 * so the report travels in the same RPC session as the `begin` call: one billed Durable Object request per first-time
 * write.
 */
export interface AttemptReport {
  /**
   * Reports the attempt's result, as `IdempotencyRecord.complete` does for its attempt.
   *
   * @returns when the key can run again if the response was stored (ms since the epoch), else `null`
   */
  complete(settled: Settled): Promise<number | null>;
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
  /** When the first request arrived, ms since the epoch. */
  readonly created_at: number;
  /** When the key can run again, ms since the epoch. */
  readonly expires_at: number;
  /** While in flight: when a dead attempt frees the key, ms since the epoch. */
  readonly lease_until: number | null;
  /** The method and path of the request that created the record (`null` when its caller did not say). */
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
