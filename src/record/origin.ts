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
    return lease.signal.aborted ? { kind: 'origin_timeout' } : { kind: 'origin_unreachable' };
  } finally {
    clearTimeout(timer);
  }
}

/** `result`, or `origin_timeout` if it has not settled when the lease ends (the timer is cleared). */
export async function withinLease(result: Promise<Settled>, leaseMs: number): Promise<Settled> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const expired = new Promise<Settled>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'origin_timeout' }), leaseMs);
  });
  try {
    return await Promise.race([result, expired]);
  } finally {
    clearTimeout(timer);
  }
}
