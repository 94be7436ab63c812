/**
 * @module
 * What the Durable Object answers, and how that becomes an HTTP response.
 *
 * The object never builds HTTP responses itself: it returns an {@link Outcome} (plain data that
 * crosses RPC), and {@link outcomeResponse} is the one place that turns it into what the client sees.
 */
import { type HeaderList, toHeaders } from './headers';
import type { Answers } from './answers';
import type { ProblemSpec } from './problem';

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

/** Whether a response's body is all there (stored, or captured whole), not still streaming. */
export const isStored = (response: StoredResponse | StreamedResponse): response is StoredResponse => response.body instanceof ArrayBuffer;

/**
 * Statuses below 500 that are not results of the write, in both modes: never stored, they free the key like 5xx.
 * - 408, 425, 429 say "try again later": storing one would replay a short overload for the whole TTL and push
 *   clients onto new keys.
 * - 401, 403 refused the credential: no write ran under it, and storing them would let anyone with random
 *   credentials fill storage for the TTL.
 */
const NOT_RESULTS: ReadonlySet<number> = new Set([408, 425, 429, 401, 403]);

/**
 * Whether a status is a result of the request (below 500, not one of {@link NOT_RESULTS}): once such a status line
 * has arrived, the write ran, whatever happens to its body afterwards.
 */
export const isResultStatus = (status: number): boolean => status < 500 && !NOT_RESULTS.has(status);

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
   * `Idempotency-Expires`. The response is streamed while the attempt's answer is still arriving.
   */
  | {
      readonly kind: 'response';
      readonly replayed: boolean;
      readonly response: StoredResponse | StreamedResponse;
      readonly expiresAt?: number;
      readonly storedUntil?: number;
    }
  /** The key is bound to a different fingerprint. */
  | {
      readonly kind: 'conflict';
      /**
       * The fingerprint of a record that is stored (complete or too large), and when it expires: it stays so until
       * then (or a purge), so a Worker may answer conflicts for it without asking again.
       */
      readonly stored?: { readonly fingerprint: string; readonly expiresAt: number };
    }
  /** An attempt with this key is still running (or died and its lease has not ended yet). */
  | { readonly kind: 'in_progress'; readonly retryAfterMs: number }
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
  | { readonly kind: 'record_unreadable' };

/** The response header that marks a replayed answer. */
export const REPLAY_HEADER = 'Idempotent-Replay';
/** The response header saying when the key can run again (an HTTP date): a retry after it runs the write again. */
export const EXPIRES_HEADER = 'Idempotency-Expires';

/** When the key of an answer can run again, if it has a record. */
export const keyExpiry = (outcome: Extract<Outcome, { kind: 'response' }>): number | undefined => outcome.expiresAt ?? outcome.storedUntil;

/** What a client is told of a key its policy holds after an attempt whose outcome is unknown. */
const HELD =
  'This Idempotency-Key is held as unknown: a retry answers idempotency_outcome_unknown (policy hold) or first asks the origin whether it ran (policy reconcile).';

/** Statuses whose responses cannot carry a body (Fetch standard "null body status"). */
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** The problem an {@link Outcome} is answered with, or `undefined` when it carries a response. */
export function outcomeProblem(outcome: Outcome): ProblemSpec | undefined {
  switch (outcome.kind) {
    case 'response':
      return undefined;
    case 'conflict':
      return {
        code: 'idempotency_key_reused',
        detail:
          'This Idempotency-Key was already used with a different request (method, path, query or body). Use a new key for a new request.',
      };
    case 'in_progress':
      return {
        code: 'idempotency_key_in_progress',
        detail: 'The first request with this Idempotency-Key has not finished yet. Retry the same request after the Retry-After delay.',
        retryAfterSeconds: outcome.retryAfterMs / 1000,
      };
    case 'origin_timeout':
      return {
        code: 'origin_timeout',
        detail:
          outcome.held === true
            ? `The origin did not answer within the attempt's lease, so it may have run the request. ${HELD}`
            : 'The origin did not answer in time. The attempt continues; retry with the same Idempotency-Key to get its result.',
      };
    case 'origin_unreachable':
      return {
        code: 'origin_unreachable',
        detail:
          outcome.held === true
            ? `The connection to the origin failed before it answered, so it may have run the request. ${HELD}`
            : 'The origin could not be reached or failed mid-response. Nothing was stored; retrying is safe.',
      };
    case 'response_too_large':
      return {
        code: 'response_too_large',
        detail: `The origin ran the request and answered with status ${outcome.status}, but the answer is larger than this layer stores (its body over the body limit, or its headers over 256 KiB), so it was not stored. The request will not run again under this Idempotency-Key.`,
      };
    case 'response_lost':
      return {
        code: 'origin_response_lost',
        detail: `The origin answered ${outcome.status} but the answer broke off; it ran and will not run again under this Idempotency-Key.`,
      };
    case 'outcome_pending':
      return {
        code: 'idempotency_unavailable',
        detail:
          'An earlier attempt with this Idempotency-Key ended without an answer and the origin could not yet say whether it ran. Retry the same request after the Retry-After delay.',
        retryAfterSeconds: outcome.retryAfterMs / 1000,
      };
    case 'record_unreadable':
      return {
        code: 'idempotency_unavailable',
        detail:
          'The stored answer for this Idempotency-Key cannot be read right now. The request was not run again; retry the same request after the Retry-After delay.',
        retryAfterSeconds: 1,
      };
    case 'outcome_unknown':
      return {
        code: 'idempotency_outcome_unknown',
        detail:
          'An earlier attempt with this Idempotency-Key ended without an answer, so whether it ran is unknown. It will not run again under this key until an operator purges it or it expires.',
      };
  }
}

/**
 * How a stored response is sent: status, headers (with `Idempotent-Replay` for a replay, `Idempotency-Expires`
 * when the key's expiry is known) and encoding.
 */
export function responseInit({ status, headers }: StoredResponse | StreamedResponse, replayed: boolean, expiresAt?: number): ResponseInit {
  const init: ResponseInit = { status, headers: toHeaders(headers) };
  if (replayed) (init.headers as Headers).set(REPLAY_HEADER, 'true');
  if (expiresAt !== undefined) (init.headers as Headers).set(EXPIRES_HEADER, new Date(expiresAt).toUTCString());
  // A body stored with its content-encoding (handler mode) is served as it is, not encoded again.
  if (headers.some(([name]) => name === 'content-encoding')) init.encodeBody = 'manual';
  return init;
}

/** A stored (or streaming) response as sent to the client, from its {@link responseInit} (which it copies). */
export function sendStored(response: StoredResponse | StreamedResponse, init: ResponseInit): Response {
  if (!NULL_BODY_STATUS.has(response.status)) return new Response(response.body, init);
  if (response.body instanceof ReadableStream) void response.body.cancel().catch(() => {});
  return new Response(null, init);
}

/** The stored (or just captured) response of an outcome that carries one, as sent to the client. */
export function storedResponse(outcome: Extract<Outcome, { kind: 'response' }>): Response {
  return sendStored(outcome.response, responseInit(outcome.response, outcome.replayed, keyExpiry(outcome)));
}

/** Turns an {@link Outcome} into the client's response, a problem written as `answers` says. */
export function outcomeResponse(outcome: Outcome, answers: Answers, request?: Request): Response {
  if (outcome.kind === 'response') return storedResponse(outcome);
  return answers.problem(outcomeProblem(outcome)!, request);
}
