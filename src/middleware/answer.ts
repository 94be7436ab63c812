/**
 * @module
 * The answer a keyed request gets, on the Worker's side: what the Durable Object answered (an `Outcome`, plain data
 * and a stream for an answer still arriving, that crosses RPC; its contract is in `record/api.ts`) turned into the HTTP
 * response the client sees, and the layer's own answers given their final form: problems in the configured format
 * (`shared/problem.ts`), and the CORS headers a browser page on a listed origin needs to read what the layer answers
 * itself (problems, key API answers, replays).
 *
 * CORS here is only about reading answers. Preflight `OPTIONS` requests are never the layer's: they go to the
 * origin, which owns its CORS policy (and must allow the `Idempotency-Key` request header). The origin's own first
 * answer keeps its `Access-Control-Allow-Origin` decision; it only gets the layer's headers added to
 * `Access-Control-Expose-Headers`, so a page the origin allows can read `Idempotency-Expires`.
 */
import { HTTPException } from 'hono/http-exception';
import type { Outcome, StoredResponse, StreamedResponse } from '../record/api';
import { toHeaders } from '../shared/headers';
import { DEFAULT_FORMAT, type ProblemCode, type ProblemFormat, type ProblemSpec, Rejection, problem, statusOf } from '../shared/problem';

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

  /**
   * The answer to a request whose origin could not be reached (`502 origin_unreachable`), its target logged (its
   * scheme, host and port only, never in the answer).
   *
   * @param target - the URL that was fetched
   */
  unreachable(target: string, request: Request): Response {
    logUnreachable(target);
    return this.problem(outcomeProblem({ kind: 'origin_unreachable' })!, request);
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

/** Whether a response's body is all there (stored, or captured whole), not still streaming. */
export const isStored = (response: StoredResponse | StreamedResponse): response is StoredResponse => response.body instanceof ArrayBuffer;

/** The response header that marks a replayed answer. */
const REPLAY_HEADER = 'Idempotent-Replay';
/** The response header saying when the key can run again (an HTTP date): a retry after it runs the write again. */
const EXPIRES_HEADER = 'Idempotency-Expires';

/**
 * Marks a replay with its age (RFC 9111 §5.1): the whole seconds since its record was created (the first request,
 * so never less than the answer's true age), rounded up, added to any `Age` the stored answer carried itself. The
 * stored `Date` stays as it is; a stored answer without one is sent with its record's creation time as `Date`. So
 * `Date` + `Age` is never more than 1 s (the resolution of HTTP dates) before the time the replay is sent, and a client
 * that reads `Idempotency-Expires` against it (`idempotentFetch`) does not take an old `Date` for the server's clock.
 *
 * @param headers - the replay's (mutable) headers
 * @param createdAt - when the record was created, ms since the epoch
 * @param now - the time of sending
 */
export function markAge(headers: Headers, createdAt: number, now: number): void {
  const stored = headers.get('age')?.trim();
  const before = stored !== undefined && /^\d{1,10}$/.test(stored) ? Number(stored) : 0;
  headers.set('age', String(before + Math.max(0, Math.ceil((now - createdAt) / 1000))));
  if (!headers.has('date')) headers.set('date', new Date(createdAt).toUTCString());
}

/**
 * Logs which origin could not be reached: its scheme, host and port, enough to find a wrong `ORIGIN_URL` or a port
 * nothing listens on. Only in the log: a problem's detail never shows configuration.
 *
 * @param target - the URL that was fetched
 */
export function logUnreachable(target: string): void {
  console.error(JSON.stringify({ event: 'origin_unreachable', origin: new URL(target).origin }));
}

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
    case 'busy':
      return {
        code: 'idempotency_unavailable',
        detail:
          'The stored answer for this Idempotency-Key is being read by as many clients as this layer serves at once. The request was not run again; retry the same request after the Retry-After delay.',
        retryAfterSeconds: outcome.retryAfterMs / 1000,
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
    case 'configuration_invalid':
      return {
        code: 'configuration_invalid',
        detail: `The idempotency store is misconfigured (${outcome.detail}); nothing was run.`,
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

/** The stored (or just captured) response of an outcome that carries one, as sent to the client; a replay with its `Age`. */
export function storedResponse(outcome: Extract<Outcome, { kind: 'response' }>): Response {
  const response = sendStored(outcome.response, responseInit(outcome.response, outcome.replayed, keyExpiry(outcome)));
  if (outcome.replayed && outcome.createdAt !== undefined) markAge(response.headers, outcome.createdAt, Date.now());
  return response;
}
