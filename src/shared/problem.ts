/**
 * @module
 * Every error the proxy itself produces, built in one place as RFC 9457 problem details.
 *
 * The wire body is small and stable (`type`, `title`, `status`, `detail`, `code`); nothing internal
 * (stack traces, origin error messages, hashes) is ever put on it.
 */

/** The error codes the proxy answers with, their HTTP status and a short title. */
export const PROBLEMS = {
  idempotency_key_missing: { status: 400, title: 'Idempotency-Key header required' },
  idempotency_key_invalid: { status: 400, title: 'Invalid Idempotency-Key header' },
  authorization_invalid: { status: 400, title: 'Invalid credential header' },
  request_body_invalid: { status: 400, title: 'Request body could not be read' },
  path_invalid: { status: 400, title: 'Request path not allowed' },
  idempotency_scope_invalid: { status: 400, title: 'Invalid Idempotency-Scope header' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  not_found: { status: 404, title: 'Not found' },
  idempotency_key_not_found: { status: 404, title: 'No record for this Idempotency-Key' },
  idempotency_key_reused: { status: 409, title: 'Idempotency-Key reused with a different request' },
  idempotency_key_in_progress: { status: 409, title: 'A request with this Idempotency-Key is in progress' },
  request_too_large: { status: 413, title: 'Request body too large' },
  host_not_allowed: { status: 421, title: 'Host not served by this proxy' },
  rate_limited: { status: 429, title: 'Too many keyed requests' },
  internal_error: { status: 500, title: 'Internal error' },
  configuration_invalid: { status: 500, title: 'Proxy configuration invalid' },
  origin_unreachable: { status: 502, title: 'Origin unreachable' },
  response_too_large: { status: 502, title: 'Origin response too large to store' },
  idempotency_unavailable: { status: 503, title: 'Idempotency store unavailable' },
  origin_timeout: { status: 504, title: 'Origin timeout' },
  loop_detected: { status: 508, title: 'Request loop detected' },
} as const satisfies Record<string, { status: number; title: string }>;

/** One of the proxy's error codes. */
export type ProblemCode = keyof typeof PROBLEMS;

/** The `type` URI of a problem code (RFC 9457 §3.1.1); it names the code, it is not meant to be fetched. */
export const problemType = (code: ProblemCode): string => `tag:idempotency-proxy,2026:${code}`;

/**
 * Builds an `application/problem+json` response.
 *
 * @param code - the error code; it fixes the status and title
 * @param detail - a sentence for the client saying what happened and what to do
 * @param retryAfterSeconds - adds `Retry-After` (RFC 9110 §10.2.3) when given
 * @returns a response that is never cached (`Cache-Control: no-store`)
 * @example
 * ```ts
 * return problem('idempotency_key_in_progress', 'Retry shortly.', 1);
 * ```
 */
export function problem(code: ProblemCode, detail: string, retryAfterSeconds?: number): Response {
  const { status } = PROBLEMS[code];
  let headers = PROBLEM_HEADERS;
  if (retryAfterSeconds !== undefined) {
    headers = new Headers(PROBLEM_HEADERS);
    headers.set('retry-after', String(Math.max(1, Math.ceil(retryAfterSeconds))));
  }
  // The Response copies the headers it is given, so the shared ones are never changed.
  return new Response(problemBody(code, detail), { status, headers });
}

const PROBLEM_HEADERS = new Headers({ 'content-type': 'application/problem+json', 'cache-control': 'no-store' });

/**
 * Bodies of recent problems, encoded: most details are constant sentences, so a flood of one error (conflicts
 * from a buggy client) serialises and encodes it once.
 */
const bodies = new Map<string, Uint8Array>();
const encoder = new TextEncoder();

function problemBody(code: ProblemCode, detail: string): Uint8Array {
  const cacheKey = `${code} ${detail}`;
  let body = bodies.get(cacheKey);
  if (body === undefined) {
    const { status, title } = PROBLEMS[code];
    body = encoder.encode(JSON.stringify({ type: problemType(code), title, status, detail, code }));
    if (bodies.size >= 64) bodies.clear();
    bodies.set(cacheKey, body);
  }
  return body;
}

/** A problem to answer with, as the middleware and the proxy pass it around before it is sent. */
export interface ProblemSpec {
  readonly code: ProblemCode;
  readonly detail: string;
  /** Adds `Retry-After`. */
  readonly retryAfterSeconds?: number;
  /** Internal reason (logged or handed to an `onError` hook, never sent to the client). */
  readonly cause?: unknown;
}

/** A problem thrown to short-circuit a request; caught where the request is answered. */
export class Rejection extends Error {
  constructor(readonly problem: ProblemSpec) {
    super(problem.detail);
    this.name = 'Rejection';
  }
}

/** Throws a {@link Rejection}. */
export function reject(code: ProblemCode, detail: string, extra: Omit<ProblemSpec, 'code' | 'detail'> = {}): never {
  throw new Rejection({ code, detail, ...extra });
}
