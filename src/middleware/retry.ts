/**
 * @module
 * Retries a Durable Object call only when the platform says it may: the error is marked `retryable`
 * and the object is not `overloaded` (retrying an overloaded object makes it worse). Retrying
 * `execute()` is safe because the object is idempotent by construction: a repeated call joins,
 * replays, or reports the attempt in progress (a retry that joins the attempt its first try started is
 * answered as a replay). `begin()` is not retried: see the middleware.
 */

/** Options for {@link callDurableObject}. */
export interface RetryOptions {
  /** Total tries, the first included. @default 3 */
  readonly attempts?: number;
  /** Base delay of the jittered exponential backoff, in ms. @default 50 */
  readonly baseDelayMs?: number;
}

interface PlatformError {
  retryable?: boolean;
  overloaded?: boolean;
}

/** Whether the platform marked `error` safe to retry. */
export function isRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { retryable, overloaded } = error as PlatformError;
  return retryable === true && overloaded !== true;
}

/**
 * Calls `call` with a fresh stub each time (a stub can be left broken by an error) and retries
 * retryable failures with full-jitter backoff.
 *
 * @param makeStub - returns a new stub; called once per try
 * @param call - the RPC to make
 * @throws the last error when it is not retryable or the tries are used up
 */
export async function callDurableObject<S, R>(
  makeStub: () => S,
  call: (stub: S) => Promise<R>,
  { attempts = 3, baseDelayMs = 50 }: RetryOptions = {},
): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(makeStub());
    } catch (error) {
      if (attempt >= attempts || !isRetryable(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * baseDelayMs * 2 ** attempt));
    }
  }
}
