/**
 * @module
 * How an attempt runs inside the object: the origin call (proxy mode) or the wait for the caller's report
 * (handler mode), both bounded by the attempt's lease; and, under `onUnknown: 'reconcile'`, the question the object asks
 * the origin before anything runs again under a key whose attempt died without an answer.
 */
import type { OriginRequest, Settled, StoredResponse } from './api';
import { type LiveAnswer, captureResponse, liveAnswer } from './live';
import { within } from '../shared/timer';

/** An attempt under way: its answer's head as soon as it arrives (proxy mode), and how the attempt ends. */
export interface Running {
  /** The origin's answer once its status line and headers have arrived; `undefined` when none arrived. */
  readonly answer?: Promise<LiveAnswer | undefined>;
  readonly settled: Promise<Settled>;
}

/**
 * Calls the origin once; never rejects. The answer streams while its body is captured, until its end or the lease's:
 * then the call is aborted and the capture stopped wherever it is (a first client that stalls past the capture limit
 * included), so the attempt ends there: a result's body breaks off (`response_lost`), any other status frees the key.
 * The lease timer is cleared as soon as the answer has ended: a pending timer would keep the object from hibernating
 * (and billed) for the rest of the lease.
 */
export function callOrigin(origin: OriginRequest, headers: Headers, leaseMs: number): Running {
  const lease = new AbortController();
  let live: LiveAnswer | undefined;
  const timer = setTimeout(() => {
    lease.abort(new DOMException('origin lease ended', 'TimeoutError'));
    live?.body.stop();
  }, leaseMs);
  // The header list is already end-to-end only (forwardableHeaders); storableHeaders drops the response's hop-by-hop
  // headers, and content-encoding since reading the body decodes it.
  const answer = fetch(origin.url, { method: origin.method, headers, body: origin.body, redirect: 'manual', signal: lease.signal }).then(
    (response) => (live = liveAnswer(response, origin.maxBodyBytes, true)),
    () => undefined,
  );
  const settled = answer
    .then(
      (live): Promise<Settled> | Settled =>
        live?.settled ??
        // No status line: the request may have reached the origin (workerd reports a refused and a broken connection alike), so
        // whether it ran is unknown. A body that breaks later is the capture's to judge, by its status.
        (lease.signal.aborted ? { kind: 'origin_timeout', mayHaveRun: true } : { kind: 'origin_unreachable', mayHaveRun: true }),
    )
    .finally(() => clearTimeout(timer));
  return { answer, settled };
}

/**
 * `result`, or `origin_timeout` if it has not settled when the lease ends: the handler did not report, and may have
 * run the write.
 */
export async function withinLease(result: Promise<Settled>, leaseMs: number): Promise<Settled> {
  return (await within(result, leaseMs)) ?? { kind: 'origin_timeout', mayHaveRun: true };
}

/** What the origin said: it ran (its answer to store), it never ran, or it could not say. */
export type Reconciled = { readonly ran: StoredResponse } | 'never_ran' | 'unknown';

/**
 * `GET url` with the retry's scope headers and key; never throws.
 *
 * @param url - the reconcile URL, `{key}` already replaced by the percent-encoded key
 * @param headers - the retry request's scope headers and `Idempotency-Key` (the credential is never stored)
 * @param maxBodyBytes - a 2xx answer larger than this cannot be stored, so it says nothing
 * @param timeoutMs - how long to wait for the whole answer
 * @returns a 2xx as `ran`, 404 as `never_ran`, anything else (or no answer) as `unknown`
 */
export async function reconcile(url: string, headers: Headers, maxBodyBytes: number, timeoutMs: number): Promise<Reconciled> {
  try {
    const response = await fetch(url, { method: 'GET', headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    if (response.status === 404) {
      await response.body?.cancel();
      return 'never_ran';
    }
    if (response.status < 200 || response.status > 299) {
      await response.body?.cancel();
      return 'unknown';
    }
    const settled = await captureResponse(response, maxBodyBytes, true);
    return settled.kind === 'response' ? { ran: settled.response } : 'unknown';
  } catch {
    return 'unknown';
  }
}
