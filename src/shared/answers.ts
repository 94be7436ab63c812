/**
 * @module
 * The one place where the layer's own answers get their final form: problems in the configured format (see
 * `problem.ts`), and the CORS headers a browser page on a listed origin needs to read what the layer answers
 * itself (problems, key API answers, replays).
 *
 * CORS here is only about reading answers. Preflight `OPTIONS` requests are never the layer's: they go to the
 * origin, which owns its CORS policy (and must allow the `Idempotency-Key` request header). The origin's own first
 * answer keeps its `Access-Control-Allow-Origin` decision; it only gets the layer's headers added to
 * `Access-Control-Expose-Headers`, so a page the origin allows can read `Idempotency-Expires`.
 */
import { HTTPException } from 'hono/http-exception';
import { DEFAULT_FORMAT, type ProblemCode, type ProblemFormat, type ProblemSpec, Rejection, problem, statusOf } from './problem';

/** Which page origins may read the layer's answers: `*` (any), or a set of serialised origins. */
export type CorsOrigins = '*' | ReadonlySet<string>;

/** The response headers a page needs to read to act on the layer's answers. */
export const EXPOSED_HEADERS = 'Idempotent-Replay, Idempotency-Expires, Retry-After, retry-after-ms, x-should-retry';

/** How the layer's own answers are written: the problem format and the CORS origins, resolved once. */
export class Answers {
  readonly format: ProblemFormat;
  readonly #cors: CorsOrigins | undefined;

  /**
   * @param format - the problem body's shape and the conflict status
   * @param cors - the origins whose pages may read the layer's answers; `undefined`: no CORS headers at all
   */
  constructor(format: ProblemFormat = DEFAULT_FORMAT, cors?: CorsOrigins) {
    this.format = format;
    this.#cors = cors;
  }

  /** The status `code` is sent with. */
  status(code: ProblemCode): number {
    return statusOf(code, this.format);
  }

  /**
   * The response of a problem, in the configured format, readable by the page that sent `request` if its origin
   * is listed.
   */
  problem(spec: ProblemSpec, request: Request | undefined): Response {
    const response = problem(spec.code, spec.detail, spec.retryAfterSeconds, this.format);
    // RFC 9110 §11.6.1: a 401 names an authentication scheme.
    if (response.status === 401) response.headers.set('www-authenticate', 'Bearer');
    return request === undefined ? response : this.own(response, request);
  }

  /**
   * The one place where an error thrown while answering `request` becomes the answer: a {@link Rejection} in the
   * configured format, another `HTTPException` as it says, anything else as `internal_error`, its message logged
   * and never sent.
   */
  error(error: Error, request: Request): Response {
    if (error instanceof Rejection) return this.problem(error.problem, request);
    if (error instanceof HTTPException) return error.getResponse();
    console.error(JSON.stringify({ event: 'internal_error', method: request.method, error: String(error) }));
    return this.problem({ code: 'internal_error', detail: 'The proxy failed unexpectedly.' }, request);
  }

  /**
   * Marks an answer the layer produced itself (a problem, a key API answer, a replay) as readable by the page that
   * sent `request`, when its origin is listed: `Access-Control-Allow-Origin` (that origin, with `Vary: Origin`) and
   * `Access-Control-Expose-Headers`. Under `*` any page's origin is echoed, so a stored
   * `Access-Control-Allow-Credentials` is dropped: a replay must never let any page read it with the user's cookies. A
   * listed origin keeps it (the operator named that page). `response` must have mutable headers (one built by the layer).
   */
  own(response: Response, request: Request): Response {
    const origin = this.#listed(request);
    if (origin === undefined) return response;
    const { headers } = response;
    headers.set('access-control-allow-origin', origin);
    if (this.#cors === '*') headers.delete('access-control-allow-credentials');
    const vary = headers.get('vary');
    if (vary === null) headers.set('vary', 'Origin');
    else if (!/(?:^|,)\s*(?:origin|\*)\s*(?:,|$)/i.test(vary)) headers.set('vary', `${vary}, Origin`);
    expose(headers);
    return response;
  }

  /**
   * The origin's own first answer to a keyed request from a listed page: only the layer's headers are added to
   * `Access-Control-Expose-Headers` (whether the page may read it at all stays the origin's decision).
   */
  exposeTo(response: Response, request: Request): Response {
    if (this.#listed(request) !== undefined) expose(response.headers);
    return response;
  }

  /** The request's `Origin` when it is one whose pages may read the layer's answers. */
  #listed(request: Request): string | undefined {
    const cors = this.#cors;
    if (cors === undefined) return undefined;
    const origin = request.headers.get('origin');
    if (origin === null || (cors !== '*' && !cors.has(origin))) return undefined;
    return origin;
  }
}

function expose(headers: Headers): void {
  const current = headers.get('access-control-expose-headers');
  headers.set(
    'access-control-expose-headers',
    current === null || current.trim() === '' ? EXPOSED_HEADERS : `${current}, ${EXPOSED_HEADERS}`,
  );
}

/**
 * Reads a CORS origin list: `*`, or comma-separated serialised origins (`https://app.example.com`, with a port
 * where it is not the default).
 *
 * @returns the origins, or `undefined` when one of them is not a serialised http(s) origin
 */
export function corsOrigins(list: '*' | readonly string[]): CorsOrigins | undefined {
  if (list === '*') return '*';
  const origins = new Set<string>();
  for (const raw of list) {
    const origin = raw.trim();
    let parsed: URL;
    try {
      parsed = new URL(origin);
    } catch {
      return undefined;
    }
    // What a browser sends in Origin is exactly the serialised origin: no path, no trailing slash, lower-case host.
    if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.origin !== origin) return undefined;
    origins.add(origin);
  }
  return origins.size === 0 ? undefined : origins;
}
