/**
 * @module
 * What an answer tells a client: retry or not, how long to wait, and until when its key protects it. Pure
 * functions of the status, the headers and the problem code, so every rule is tested on its own
 * (`test/client/advice.test.ts`) and `idempotentFetch` only strings them together.
 */

/** Codes (in a problem document or an `{"error":{…}}` envelope) whose same request may succeed later. */
const RETRYABLE_CODES: ReadonlySet<string> = new Set([
  'idempotency_key_in_progress',
  'idempotency_unavailable',
  'origin_timeout',
  'origin_unreachable',
  'rate_limited',
]);

/**
 * Codes whose same request never succeeds by being sent again: a retry would be refused again, or (for the
 * last three) the write may already have run and the key no longer tells whether it did.
 */
const FINAL_CODES: ReadonlySet<string> = new Set([
  'idempotency_key_reused',
  'response_too_large',
  'origin_response_lost',
  'idempotency_outcome_unknown',
]);

/** Statuses retried when neither a header nor a known code decides: timeouts, overload and gateways. */
const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 502, 503, 504]);

/**
 * Whether an answer should be retried with the same request and key.
 *
 * The order: a key reuse never (whatever a header says: the same bytes meet the same refusal); then
 * `x-should-retry`, then `Stripe-Should-Retry` (`true` or `false`, as the proxy and Stripe send them);
 * then the problem code (for a server that sends no advice header); then the status (408, 429, 502, 503, 504).
 * A `409` is retried only for `idempotency_key_in_progress`: another 409 is the API's own conflict.
 *
 * @param status - the answer's status
 * @param headers - its headers
 * @param code - its problem code ({@link problemCodeOf}), if any
 * @example
 * ```ts
 * shouldRetry(409, new Headers(), 'idempotency_key_in_progress'); // true
 * shouldRetry(503, new Headers({ 'x-should-retry': 'false' }), undefined); // false
 * ```
 */
export function shouldRetry(status: number, headers: Headers, code: string | undefined): boolean {
  if (code === 'idempotency_key_reused') return false;
  for (const name of ['x-should-retry', 'stripe-should-retry']) {
    const advice = headers.get(name)?.trim().toLowerCase();
    if (advice === 'true') return true;
    if (advice === 'false') return false;
  }
  if (code !== undefined && RETRYABLE_CODES.has(code)) return true;
  if (code !== undefined && FINAL_CODES.has(code)) return false;
  return RETRYABLE_STATUSES.has(status);
}

/**
 * Whether the body of an answer is worth reading for a code: an error in JSON (problem documents are
 * `application/problem+json`; the `error_object` envelope is `application/json`), small enough (by its declared
 * length) that reading a copy costs nothing. Read even when an advice header decides: a key reuse is never retried
 * whatever a header says, and `onRetry` is told the code.
 */
export function mayCarryCode(status: number, headers: Headers): boolean {
  if (status < 400) return false;
  const type = headers.get('content-type')?.split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/problem+json' && type !== 'application/json') return false;
  const length = Number(headers.get('content-length') ?? 0);
  return !(length > MAX_CODE_BODY_BYTES);
}

/** Larger bodies are not read for a code: no problem document of the layer comes near. */
const MAX_CODE_BODY_BYTES = 64 * 1024;

/**
 * The error code in an answer's body: `code` at the top level (RFC 9457 problem document, as the proxy sends
 * by default) or `error.code` (the `{"error":{…}}` envelope of `IDEMPOTENCY_ERROR_FORMAT=error_object`).
 *
 * @param body - the body as text
 * @returns the code, or `undefined` for any other body (not JSON, no string code)
 * @example
 * ```ts
 * problemCodeOf('{"error":{"type":"idempotency_error","code":"rate_limited"}}'); // 'rate_limited'
 * ```
 */
export function problemCodeOf(body: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { code, error } = value as { code?: unknown; error?: unknown };
  if (typeof code === 'string') return code;
  const nested = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof nested === 'string' ? nested : undefined;
}

/**
 * An HTTP date (RFC 9110 §5.6.7; all three forms start with a day name) in ms since the epoch, else `NaN`:
 * `Date.parse` alone would also take `-1` or `2026` for dates.
 */
export const httpDate = (value: string | null): number => (value !== null && /^[A-Za-z]{3}/.test(value.trim()) ? Date.parse(value) : NaN);

/**
 * The clock of the server that sent `headers`, as an offset to add to one of its dates to get a local time: its
 * time when it sent the answer, `Date` + `Age` (RFC 9111 §5.1: a replay repeats its stored `Date` and says its age
 * in `Age`), against the local time `at`. Without a usable `Date`, 0 (same clock).
 */
function clockOffsetMs(headers: Headers, at: number): number {
  const date = httpDate(headers.get('date'));
  if (Number.isNaN(date)) return 0;
  const age = headers.get('age')?.trim();
  return at - (date + (age !== undefined && /^\d{1,10}$/.test(age) ? Number(age) * 1000 : 0));
}

/**
 * How long the server asks the client to wait before a retry: `retry-after-ms` (milliseconds, as
 * Stainless-style servers send it), else `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 §10.2.3;
 * a date is read against the answer's own `Date` + `Age`, so a skewed local clock does not matter).
 *
 * @param headers - the answer's headers
 * @param receivedAt - local time (ms since the epoch) the answer arrived
 * @returns milliseconds, at least 0, or `undefined` when the server says nothing usable
 * @example
 * ```ts
 * serverDelayMs(new Headers({ 'retry-after': '2' }), Date.now()); // 2000
 * ```
 */
export function serverDelayMs(headers: Headers, receivedAt: number): number | undefined {
  const ms = headers.get('retry-after-ms')?.trim();
  if (ms !== undefined && /^\d+(\.\d+)?$/.test(ms)) return Number(ms);
  const after = headers.get('retry-after')?.trim();
  if (after === undefined || after === '') return undefined;
  if (/^\d+$/.test(after)) return Number(after) * 1000;
  const date = httpDate(after);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date + clockOffsetMs(headers, receivedAt) - receivedAt);
}

/**
 * The local time after which a retry would no longer be protected by its key: the answer's
 * `Idempotency-Expires` (an HTTP date: from then on the server runs the key again), read against the server's
 * clock, its `Date` + `Age`, taken as it was when the attempt was sent. Anchored there rather than at the answer's
 * arrival, the time the answer spent on its way back (and about as much for a retry on its way out) counts against
 * the key: the estimate errs early, never late.
 *
 * @param headers - the answer's headers
 * @param sentAt - local time (ms since the epoch) the attempt that got this answer was sent
 * @returns ms since the epoch, or `undefined` when the answer has no (valid) `Idempotency-Expires`
 * @example
 * ```ts
 * keyExpiresAt(new Headers({ 'idempotency-expires': 'Thu, 03 Dec 2026 19:00:00 GMT' }), Date.now());
 * ```
 */
export function keyExpiresAt(headers: Headers, sentAt: number): number | undefined {
  const expires = httpDate(headers.get('idempotency-expires'));
  return Number.isNaN(expires) ? undefined : expires + clockOffsetMs(headers, sentAt);
}

/**
 * How long before the key's expiry (as {@link keyExpiresAt} estimates it) the last retry must be sent: HTTP dates
 * have a resolution of one second, and the server's `Date` is truncated to it, so its clock may be up to 1 s later
 * than `Date` + `Age` says.
 */
export const EXPIRY_MARGIN_MS = 1000;

/**
 * Whether a retry sent `delayMs` after `now` still reaches the server before its key expires, with
 * {@link EXPIRY_MARGIN_MS} to spare. Applied after an answer and after a network error or timeout alike.
 *
 * @param expiresAt - the key's expiry on the local clock ({@link keyExpiresAt}), `undefined` when none was seen
 * @example
 * ```ts
 * beforeKeyExpiry(Date.now() + 5000, 1000, Date.now()); // true: 3 s to spare
 * ```
 */
export function beforeKeyExpiry(expiresAt: number | undefined, delayMs: number, now: number): boolean {
  return expiresAt === undefined || now + delayMs < expiresAt - EXPIRY_MARGIN_MS;
}

/**
 * The wait before retry number `retry` (1 for the first retry) when the server names none: exponential from
 * `initialMs`, capped at `maxMs`, with "equal jitter" (between half and all of it), so clients that failed
 * together do not come back together and no wait shrinks to nothing.
 *
 * @param random - a number in [0, 1), `Math.random()` unless a test fixes it
 * @example
 * ```ts
 * backoffMs(3, 500, 8000, 0.5); // 1500: 2000 with 25 % off
 * ```
 */
export function backoffMs(retry: number, initialMs: number, maxMs: number, random: number = Math.random()): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, retry - 1));
  return ceiling / 2 + (ceiling / 2) * random;
}
