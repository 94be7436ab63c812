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
  authorization_invalid: { status: 400, title: 'Invalid Authorization header' },
  request_body_invalid: { status: 400, title: 'Request body could not be read' },
  idempotency_key_reused: { status: 409, title: 'Idempotency-Key reused with a different request' },
  idempotency_key_in_progress: { status: 409, title: 'A request with this Idempotency-Key is in progress' },
  request_too_large: { status: 413, title: 'Request body too large' },
  internal_error: { status: 500, title: 'Internal error' },
  configuration_invalid: { status: 500, title: 'Proxy configuration invalid' },
  origin_unreachable: { status: 502, title: 'Origin unreachable' },
  response_too_large: { status: 502, title: 'Origin response too large to store' },
  idempotency_unavailable: { status: 503, title: 'Idempotency store unavailable' },
  origin_timeout: { status: 504, title: 'Origin timeout' },
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
  const { status, title } = PROBLEMS[code];
  const headers = new Headers({ 'content-type': 'application/problem+json', 'cache-control': 'no-store' });
  if (retryAfterSeconds !== undefined) headers.set('retry-after', String(Math.max(1, Math.ceil(retryAfterSeconds))));
  const body = JSON.stringify({ type: problemType(code), title, status, detail, code });
  return new Response(body, { status, headers });
}
