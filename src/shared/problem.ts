/**
 * @module
 * Every error the layer itself produces, built in one place: RFC 9457 problem details that also carry the
 * `{ "error": { … } }` member Stripe-, OpenAI- and Stainless-style SDKs read (an extension member, RFC 9457 §3.2), or
 * (on request) that envelope alone.
 *
 * The wire body is small and stable; nothing internal (stack traces, origin error messages, hashes) is ever put
 * on it. Every problem carries retry advice (`x-should-retry`, `Stripe-Should-Retry`): real SDKs retry 409 and
 * 5xx answers unless told not to, and a retry of `idempotency_key_reused` or `response_too_large` can never
 * succeed.
 */
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

/**
 * The error codes the layer answers with: their HTTP status, a short title, and whether the same request may
 * succeed later (`retry`, sent as `x-should-retry` and `Stripe-Should-Retry`).
 */
export const PROBLEMS = {
  idempotency_key_missing: { status: 400, title: 'Idempotency-Key header required', retry: false },
  idempotency_key_invalid: { status: 400, title: 'Invalid Idempotency-Key header', retry: false },
  authorization_invalid: { status: 400, title: 'Invalid credential header', retry: false },
  // The body was cut off on its way in: sent again whole, the same request may well succeed.
  request_body_invalid: { status: 400, title: 'Request body could not be read', retry: true },
  path_invalid: { status: 400, title: 'Request path not allowed', retry: false },
  idempotency_scope_invalid: { status: 400, title: 'Invalid Idempotency-Scope header', retry: false },
  unauthorized: { status: 401, title: 'Unauthorized', retry: false },
  // A keyed write without a credential: its key cannot be kept apart from other clients' keys, so it is not run.
  credential_missing: { status: 401, title: 'Credential required with Idempotency-Key', retry: false },
  not_found: { status: 404, title: 'Not found', retry: false },
  idempotency_key_not_found: { status: 404, title: 'No record for this Idempotency-Key', retry: false },
  // A key API path used with a method it does not take (a client's DELETE of its own key: purges are the operator's).
  method_not_allowed: { status: 405, title: 'Method not allowed', retry: false },
  idempotency_key_reused: { status: 409, title: 'Idempotency-Key reused with a different request', retry: false },
  idempotency_key_in_progress: { status: 409, title: 'A request with this Idempotency-Key is in progress', retry: true },
  // The origin may have run the request and nobody knows its outcome: retrying under the key cannot tell either.
  idempotency_outcome_unknown: { status: 409, title: 'The outcome of the request with this Idempotency-Key is unknown', retry: false },
  request_too_large: { status: 413, title: 'Request body too large', retry: false },
  // Another host is never served by this deployment: the same request will be refused again.
  host_not_allowed: { status: 421, title: 'Host not served by this proxy', retry: false },
  rate_limited: { status: 429, title: 'Too many keyed requests', retry: true },
  // A bug does not go away by itself: retrying would only repeat it.
  internal_error: { status: 500, title: 'Internal error', retry: false },
  configuration_invalid: { status: 500, title: 'Proxy configuration invalid', retry: false },
  origin_unreachable: { status: 502, title: 'Origin unreachable', retry: true },
  // The origin ran the request but its answer was lost before it was stored: the key will not run again.
  origin_response_lost: { status: 502, title: 'Origin response lost', retry: false },
  response_too_large: { status: 502, title: 'Origin response too large to store', retry: false },
  idempotency_unavailable: { status: 503, title: 'Idempotency store unavailable', retry: true },
  origin_timeout: { status: 504, title: 'Origin timeout', retry: true },
  loop_detected: { status: 508, title: 'Request loop detected', retry: false },
} as const satisfies Record<string, { status: number; title: string; retry: boolean }>;

/** One of the layer's error codes. */
export type ProblemCode = keyof typeof PROBLEMS;

/** The `type` URI of a problem code (RFC 9457 §3.1.1); it names the code, it is not meant to be fetched. */
const problemType = (code: ProblemCode): string => `tag:idempotency-proxy,2026:${code}`;

/** How problems are written on the wire: the body's shape, and the status of a reused key. */
export interface ProblemFormat {
  /**
   * `problem`: RFC 9457 `application/problem+json`, with the `error` member as well; `error_object`: only
   * `{ "error": { type, code, message, status } }`, as `application/json`.
   */
  readonly format: 'problem' | 'error_object';
  /** The status of `idempotency_key_reused`: 409 (the default) or 422 (the IETF draft's choice). */
  readonly conflictStatus: 409 | 422;
}

/** RFC 9457 problems, a reused key answered with 409. */
export const DEFAULT_FORMAT: ProblemFormat = { format: 'problem', conflictStatus: 409 };

/** The status a problem is sent with under `format`. */
export const statusOf = (code: ProblemCode, format: ProblemFormat = DEFAULT_FORMAT): number =>
  code === 'idempotency_key_reused' ? format.conflictStatus : PROBLEMS[code].status;

/**
 * Builds a problem response.
 *
 * @param code - the error code; it fixes the status (see {@link statusOf}), title and retry advice
 * @param detail - a sentence for the client saying what happened and what to do
 * @param retryAfterSeconds - adds `Retry-After` (RFC 9110 §10.2.3) and `retry-after-ms` when given
 * @param format - the body's shape and the conflict status
 * @returns a response that is never cached (`Cache-Control: no-store`), with fresh (mutable) headers
 * @example
 * ```ts
 * return problem('idempotency_key_in_progress', 'Retry shortly.', 1);
 * ```
 */
export function problem(code: ProblemCode, detail: string, retryAfterSeconds?: number, format: ProblemFormat = DEFAULT_FORMAT): Response {
  const status = statusOf(code, format);
  const base = HEADERS[format.format][PROBLEMS[code].retry ? 1 : 0];
  let headers = base;
  if (retryAfterSeconds !== undefined) {
    headers = new Headers(base);
    const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
    headers.set('retry-after', String(seconds));
    // Stainless SDKs read the finer value first; it says the same as Retry-After, not something else.
    headers.set('retry-after-ms', String(seconds * 1000));
  }
  // The Response copies the headers it is given, so the shared ones are never changed.
  return new Response(problemBody(code, detail, status, format.format), { status, headers });
}

const problemHeaders = (contentType: string, retry: boolean): Headers =>
  new Headers({
    'content-type': contentType,
    'cache-control': 'no-store',
    'x-should-retry': String(retry),
    'stripe-should-retry': String(retry),
  });

/** The shared header sets, by format, as `[no retry, retry]`, built once. */
const HEADERS: Record<ProblemFormat['format'], readonly [Headers, Headers]> = {
  problem: [problemHeaders('application/problem+json', false), problemHeaders('application/problem+json', true)],
  error_object: [problemHeaders('application/json', false), problemHeaders('application/json', true)],
};

/**
 * Bodies of recent problems, encoded: most details are constant sentences, so a flood of one error (conflicts
 * from a buggy client) serialises and encodes it once.
 */
const bodies = new Map<string, Uint8Array>();
const encoder = new TextEncoder();

function problemBody(code: ProblemCode, detail: string, status: number, format: ProblemFormat['format']): Uint8Array {
  const cacheKey = `${format} ${status} ${code} ${detail}`;
  let body = bodies.get(cacheKey);
  if (body === undefined) {
    const { title } = PROBLEMS[code];
    // stripe-node raises only for a body with an `error` member (any other is taken for the API's object), so the
    // problem document carries one too; problem-aware clients ignore a member they do not know.
    const value =
      format === 'problem'
        ? { type: problemType(code), title, status, detail, code, error: { type: 'idempotency_error', code, message: detail } }
        : { error: { type: 'idempotency_error', code, message: detail, status } };
    body = encoder.encode(JSON.stringify(value));
    if (bodies.size >= 64) bodies.clear();
    bodies.set(cacheKey, body);
  }
  return body;
}

/** A problem to answer with, as the middleware and the proxy pass it around before it is sent. */
export interface ProblemSpec {
  readonly code: ProblemCode;
  readonly detail: string;
  /** Adds `Retry-After` and `retry-after-ms`. */
  readonly retryAfterSeconds?: number;
  /** Internal reason (logged or handed to an `onError` hook, never sent to the client). */
  readonly cause?: unknown;
}

/**
 * A problem thrown to short-circuit a request: Hono's `HTTPException`, so any Hono app in front of it can answer
 * it with {@link getResponse}. The layer itself answers it in one place (`Answers` in `middleware/answer.ts`), in the
 * configured format.
 */
export class Rejection extends HTTPException {
  constructor(readonly problem: ProblemSpec) {
    super(PROBLEMS[problem.code].status as ContentfulStatusCode, { message: problem.detail, cause: problem.cause });
    this.name = 'Rejection';
  }

  /** The problem as RFC 9457 with the default status, for an app that catches it outside the layer. */
  override getResponse(): Response {
    return problem(this.problem.code, this.problem.detail, this.problem.retryAfterSeconds);
  }
}

/** Throws a {@link Rejection}. */
export function reject(code: ProblemCode, detail: string, extra: Omit<ProblemSpec, 'code' | 'detail'> = {}): never {
  throw new Rejection({ code, detail, ...extra });
}
