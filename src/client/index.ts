/**
 * @module
 * The client entry (`import { idempotentFetch } from 'idempotency-proxy/client'`): `fetch` that retries a
 * write safely, with one `Idempotency-Key` for the whole operation. Web-standard APIs only (fetch,
 * AbortController, crypto.randomUUID, setTimeout), no dependencies: browsers, Node 20+, Workers, Deno.
 */
import { backoffMs, beforeKeyExpiry, keyExpiresAt, mayCarryCode, problemCodeOf, serverDelayMs, shouldRetry } from './advice';
import { abortedOf, attemptSignal, sleep, throwIfAborted } from './signals';

/** What `onRetry` is told before the wait that precedes a retry. */
export interface RetryEvent {
  /** The operation's key (`null` for a read, which is sent without one). */
  readonly key: string | null;
  /** The number of the attempt about to be sent (2 for the first retry). */
  readonly attempt: number;
  /** How long the client waits before sending it. */
  readonly delayMs: number;
  /** The answer that is retried; its body will be cancelled. Absent after a network error or timeout. */
  readonly response?: Response;
  /** Its problem code, when its body had one. */
  readonly code?: string;
  /** The error that is retried (network failure, `TimeoutError` of `attemptTimeoutMs`). */
  readonly error?: unknown;
}

/** `init.idempotency`: how one operation is keyed and retried. Every field is optional. */
export interface IdempotencyInit {
  /** The operation's key. @default an `Idempotency-Key` header of the request, else `crypto.randomUUID()` */
  key?: string;
  /** Called (and awaited) with the key before the first attempt: persist it to retry after a crash. */
  onKey?: (key: string) => void | Promise<void>;
  /** Retries after the first attempt. @default 3 */
  retries?: number;
  /** Stops the operation, during an attempt or a wait; it rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called (and awaited) before each retry's wait; throwing stops the operation with that error. */
  onRetry?: (event: RetryEvent) => void | Promise<void>;
  /** Aborts an attempt with no response headers after this long, and retries it. @default no limit */
  attemptTimeoutMs?: number;
  /** The first backoff wait, when the server names none. @default 500 */
  initialDelayMs?: number;
  /** The longest backoff wait. @default 8000 */
  maxDelayMs?: number;
  /** The longest wait the server may ask for: asked more, the answer is returned. @default 60000 */
  maxRetryAfterMs?: number;
  /** The `fetch` to call, such as a service binding's. @default globalThis.fetch */
  fetch?: (request: Request) => Promise<Response>;
}

/** `fetch`'s init with {@link IdempotencyInit} under `idempotency`. */
export interface IdempotentRequestInit extends RequestInit {
  idempotency?: IdempotencyInit;
}

/** What {@link idempotentFetch.info} tells about an answer (or the error an operation ended with). */
export interface IdempotencyInfo {
  /** The key every attempt carried, `null` for a read. */
  readonly key: string | null;
  /** Attempts sent (1 when the first answer was kept). */
  readonly attempts: number;
  /** The answer is a stored one (`Idempotent-Replay: true`): the write ran once, before this attempt. */
  readonly replayed: boolean;
  /** When the key stops protecting (the last `Idempotency-Expires` seen, local clock), or `null`. */
  readonly expiresAt: Date | null;
}

/** Methods the proxy protects by default: each gets a key. */
const KEYED_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Safe methods (RFC 9110 §9.2.1): retried as they are, without a key. Other methods are sent once. */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

const infos = new WeakMap<object, IdempotencyInfo>();

/**
 * `fetch` for writes that must run at most once: a keyed write (`POST`, `PUT`, `PATCH`, `DELETE`, or any method
 * given a key) carries one `Idempotency-Key` on every attempt; network errors, attempt timeouts and answers
 * marked retryable are retried after the server's `retry-after-ms`/`Retry-After` or a capped, jittered
 * backoff, never once the key has expired (its last `Idempotency-Expires` read against the server's `Date` + `Age`,
 * with a margin of 1 s). Reads (`GET`, `HEAD`, `OPTIONS`, `TRACE`) are retried without a key;
 * other methods are sent once. The body is read once up front, so every attempt sends the same bytes.
 *
 * @param input - as for `fetch`; a `Request` is cloned, never consumed
 * @param init - as for `fetch`, plus {@link IdempotencyInit} under `idempotency`
 * @returns the last answer (retryable or not), with {@link idempotentFetch.info} for its key and attempts
 * @throws the reason of an aborted signal; the last network error when retries ran out; a `TypeError` for a
 *   bad argument or a key that differs from the request's `Idempotency-Key`
 * @example
 * ```ts
 * const res = await idempotentFetch('https://api.example.com/v1/charges', {
 *   method: 'POST',
 *   headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
 *   body: JSON.stringify({ amount: 500 }),
 *   idempotency: { onKey: (key) => saveKey(orderId, key), attemptTimeoutMs: 10_000 },
 * });
 * const { key, attempts, replayed } = idempotentFetch.info(res)!;
 * ```
 */
export async function idempotentFetch(input: Request | string | URL, init: IdempotentRequestInit = {}): Promise<Response> {
  const { idempotency: options = {}, signal: initSignal, ...rest } = init;
  const { onKey, onRetry, attemptTimeoutMs, fetch: send = (request) => fetch(request) } = options;
  const retries = count(options.retries, 3, 'retries');
  const initialDelayMs = count(options.initialDelayMs, 500, 'initialDelayMs');
  const maxDelayMs = count(options.maxDelayMs, 8000, 'maxDelayMs');
  const maxRetryAfterMs = count(options.maxRetryAfterMs, 60_000, 'maxRetryAfterMs');
  if (attemptTimeoutMs !== undefined) count(attemptTimeoutMs, 0, 'attemptTimeoutMs');
  const signals = [initSignal, options.signal, input instanceof Request ? input.signal : undefined].filter(
    (signal): signal is AbortSignal => signal != null,
  );
  throwIfAborted(signals);

  // The request once, checked as fetch checks it; a stream body needs `duplex` to be accepted at all.
  const stream = typeof ReadableStream !== 'undefined' && rest.body instanceof ReadableStream;
  const template = new Request(
    input instanceof Request ? input.clone() : input,
    stream ? ({ ...rest, duplex: 'half' } as RequestInit) : rest,
  );
  // Buffered, so a retry resends exactly these bytes (a stream can be read only once).
  const body = template.body === null ? null : await template.arrayBuffer();
  const headers = new Headers(template.headers);
  const key = keyOf(template.method, headers.get('idempotency-key'), options.key);
  if (key !== null) {
    headers.set('idempotency-key', key);
    await onKey?.(key);
  }
  const retryable = key !== null || SAFE_METHODS.has(template.method.toUpperCase());

  let expiresAt: number | undefined;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signals);
    const linked = attemptSignal(signals, attemptTimeoutMs);
    const sentAt = Date.now();
    let response: Response;
    try {
      response = await send(new Request(template, { headers, body, signal: linked.signal }));
      linked.clearTimeout();
    } catch (error) {
      linked.release();
      const aborted = abortedOf(signals);
      if (aborted) throw aborted.reason;
      const delayMs = backoffMs(attempt, initialDelayMs, maxDelayMs);
      // After a network error too: a retry that would land after the key expired could run the write a second time.
      if (!retryable || attempt > retries || !beforeKeyExpiry(expiresAt, delayMs, Date.now()))
        throw remember(error, key, attempt, expiresAt);
      await onRetry?.({ key, attempt: attempt + 1, delayMs, error });
      await sleep(delayMs, signals);
      continue;
    }
    const receivedAt = Date.now();
    if (key !== null) expiresAt = keyExpiresAt(response.headers, sentAt) ?? expiresAt;
    if (!retryable || attempt > retries) return remember(response, key, attempt, expiresAt);
    const code = mayCarryCode(response.status, response.headers) ? await codeOf(response) : undefined;
    if (!shouldRetry(response.status, response.headers, code)) return remember(response, key, attempt, expiresAt);
    const asked = serverDelayMs(response.headers, receivedAt);
    if (asked !== undefined && asked > maxRetryAfterMs) return remember(response, key, attempt, expiresAt);
    const delayMs = asked ?? backoffMs(attempt, initialDelayMs, maxDelayMs);
    // A retry that would land after the key expired could run the write a second time.
    if (!beforeKeyExpiry(expiresAt, delayMs, Date.now())) return remember(response, key, attempt, expiresAt);
    linked.release();
    await onRetry?.({ key, attempt: attempt + 1, delayMs, response, ...(code === undefined ? {} : { code }) });
    await response.body?.cancel().catch(() => {});
    await sleep(delayMs, signals);
  }
}

/**
 * What is known about an answer of {@link idempotentFetch}, or about the error it rejected with after its
 * retries ran out.
 *
 * @returns the key, the attempts, whether the answer is a replay and when the key expires; `undefined` for
 *   anything `idempotentFetch` did not return
 * @example
 * ```ts
 * const res = await idempotentFetch(url, { method: 'POST', body });
 * if (idempotentFetch.info(res)?.replayed) console.log('ran before; this is the stored answer');
 * ```
 */
idempotentFetch.info = (result: unknown): IdempotencyInfo | undefined =>
  typeof result === 'object' && result !== null ? infos.get(result) : undefined;

/** The operation's key: the caller's, the request's header, or a new one for a keyed method; `null` for others. */
function keyOf(method: string, header: string | null, given: string | undefined): string | null {
  if (given !== undefined && (typeof given !== 'string' || given === '')) throw new TypeError('idempotency.key must be a non-empty string');
  if (given !== undefined && header !== null && header !== given) {
    throw new TypeError('idempotency.key differs from the Idempotency-Key header of the request');
  }
  const key = given ?? header;
  if (key !== null) return key;
  return KEYED_METHODS.has(method.toUpperCase()) ? crypto.randomUUID() : null;
}

/** The problem code in a copy of the answer's body (the caller gets the body untouched). */
async function codeOf(response: Response): Promise<string | undefined> {
  try {
    return problemCodeOf(await response.clone().text());
  } catch {
    return undefined;
  }
}

/** Records what {@link idempotentFetch.info} tells about `result` (an object: a Response or an Error). */
function remember<T>(result: T, key: string | null, attempts: number, expiresAt: number | undefined): T {
  if (typeof result !== 'object' || result === null) return result;
  const replayed = result instanceof Response && result.headers.get('idempotent-replay') === 'true';
  infos.set(result, { key, attempts, replayed, expiresAt: expiresAt === undefined ? null : new Date(expiresAt) });
  return result;
}

/** A non-negative whole number option, or its default. */
function count(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`idempotency.${name} must be a whole number ≥ 0`);
  return value;
}
