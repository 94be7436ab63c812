/**
 * @module
 * Aborting: the caller's signals (`init.signal`, `idempotency.signal`, a `Request`'s own) stop every attempt and
 * every wait. Written by hand rather than with `AbortSignal.any`, which Node 20.0–20.2 lacks.
 */

/** The first of `signals` that has been aborted. */
export const abortedOf = (signals: readonly AbortSignal[]): AbortSignal | undefined => signals.find((signal) => signal.aborted);

/** Throws the reason of the first aborted signal, as `fetch` rejects with it. */
export function throwIfAborted(signals: readonly AbortSignal[]): void {
  abortedOf(signals)?.throwIfAborted();
}

/** One attempt's signal: aborted when any caller's signal is, or after `timeoutMs` (a `TimeoutError`). */
export interface AttemptSignal {
  readonly signal: AbortSignal;
  /** Stops the timeout: the answer's headers are in, its body belongs to the caller. */
  clearTimeout(): void;
  /** Forgets the caller's signals: for an attempt that is over. */
  release(): void;
}

/** Links a new attempt to the caller's signals and to its own timeout. */
export function attemptSignal(signals: readonly AbortSignal[], timeoutMs: number | undefined): AttemptSignal {
  const controller = new AbortController();
  const onAbort = (event: Event) => controller.abort((event.target as AbortSignal).reason);
  for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(new DOMException(`The attempt took longer than ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
  const clear = () => {
    if (timer !== undefined) clearTimeout(timer);
  };
  return {
    signal: controller.signal,
    clearTimeout: clear,
    release() {
      clear();
      for (const signal of signals) signal.removeEventListener('abort', onAbort);
    },
  };
}

/** Waits `ms`, or rejects with the reason of the first caller's signal that aborts meanwhile. */
export function sleep(ms: number, signals: readonly AbortSignal[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = abortedOf(signals);
    if (aborted) return reject(aborted.reason);
    const done = () => {
      clearTimeout(timer);
      for (const signal of signals) signal.removeEventListener('abort', onAbort);
    };
    const onAbort = (event: Event) => {
      done();
      reject((event.target as AbortSignal).reason);
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
  });
}
