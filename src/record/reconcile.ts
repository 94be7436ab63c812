/**
 * @module
 * `onUnknown: 'reconcile'`: asking the origin whether a request whose attempt died without an answer ran.
 * The object calls this before anything runs again under the key (issue #18).
 */
import { captureResponse } from '../shared/capture';
import type { StoredResponse } from './api';

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
