/**
 * @module
 * How an attempt runs inside the object: the origin call (proxy mode) or the wait for the caller's report
 * (handler mode), both bounded by the attempt's lease.
 */
import { captureResponse } from '../shared/capture';
import type { Settled } from '../shared/outcome';
import type { OriginRequest } from './api';

/**
 * Calls the origin once and reads the whole answer; never throws. The call is abandoned when the lease
 * ends. The lease timer is cleared as soon as the answer is read: a pending timer would keep the object
 * from hibernating (and billed) for the rest of the lease.
 */
export async function callOrigin(origin: OriginRequest, headers: Headers, leaseMs: number): Promise<Settled> {
  const lease = new AbortController();
  const timer = setTimeout(() => lease.abort(new DOMException('origin lease ended', 'TimeoutError')), leaseMs);
  try {
    // The header list is already end-to-end only (forwardableHeaders); storableHeaders drops the
    // response's hop-by-hop headers, and content-encoding since reading the body decodes it.
    const response = await fetch(origin.url, {
      method: origin.method,
      headers,
      body: origin.body,
      redirect: 'manual',
      signal: lease.signal,
    });
    return await captureResponse(response, origin.maxBodyBytes, true);
  } catch {
    // No status line: the request may have reached the origin (workerd reports a refused and a broken connection
    // alike), so whether it ran is unknown. A body that breaks later is captureResponse's to judge, by its status.
    return lease.signal.aborted ? { kind: 'origin_timeout', mayHaveRun: true } : { kind: 'origin_unreachable', mayHaveRun: true };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `result`, or `origin_timeout` if it has not settled when the lease ends (the timer is cleared): the handler did
 * not report, and may have run the write.
 */
export async function withinLease(result: Promise<Settled>, leaseMs: number): Promise<Settled> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const expired = new Promise<Settled>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'origin_timeout', mayHaveRun: true }), leaseMs);
  });
  try {
    return await Promise.race([result, expired]);
  } finally {
    clearTimeout(timer);
  }
}
