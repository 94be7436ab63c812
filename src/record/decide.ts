/**
 * @module
 * What a request finds for its key: decided synchronously (no await) from the stored row and the attempt running in
 * this instance, so that no other request interleaves between the decision and what it starts.
 */
import type { AttemptLimits, Outcome } from './api';
import type { Attempt } from './attempt';
import { type RecordRow, type RecordState, type RecordStore, expiryOf } from './storage';

/** What a request finds: an attempt to start (keeping a taken-over record's times) or join, or an answer. */
export type Decision =
  | { readonly start: { readonly expiresAt: number; readonly createdAt: number } }
  | { readonly join: Attempt }
  | { readonly outcome: Outcome }
  /** `replay`: a complete row, whose answer is read (and opened, when sealed) before it is sent. */
  | { readonly replay: RecordRow }
  /** `reconcile`: the row of a dead attempt, now `unknown`; the origin is asked before anything runs again. */
  | { readonly reconcile: RecordRow };

/** The states a record keeps until it expires or is purged: what it answers never changes. */
const SETTLED: ReadonlySet<RecordState> = new Set(['complete', 'too_large', 'lost']);

/** Whether `running` is the attempt of `record` and still counts as running here (see {@link Attempt.until}). */
export const alive = (running: Attempt | undefined, record: RecordRow, now: number): running is Attempt =>
  running !== undefined && running.id === record.attempt && now < running.until;

/** Whether `record` still counts: not expired, or the row of the attempt still `running` here (its answer is to come). */
export const counts = (record: RecordRow, now: number, running: Attempt | undefined): boolean =>
  expiryOf(record) > now || alive(running, record, now);

/**
 * Decides what a request with `spec` does. Writes only what the decision itself changes: an expired row is dropped, and
 * a dead attempt's row whose lease has ended becomes `unknown` under `hold` and `reconcile`.
 */
export function decide(store: RecordStore, spec: AttemptLimits, running: Attempt | undefined): Decision {
  const now = Date.now();
  let record = store.read();
  if (record !== undefined && !counts(record, now, running)) {
    // Expired (the alarm may be late or not yet run): the key is free again.
    store.expire(record);
    record = undefined;
  }
  if (record === undefined) return { start: { expiresAt: now + spec.ttlMs, createdAt: now } };
  if (record.fingerprint !== spec.fingerprint) {
    // Only a record that stays as it is until it expires (or is purged) may be remembered for conflicts: one in flight
    // may fail and free the key, and one held as unknown may run again (a take-over, or `reconcile`) and then too.
    if (!SETTLED.has(record.state)) return { outcome: { kind: 'conflict' } };
    return { outcome: { kind: 'conflict', stored: { fingerprint: record.fingerprint, expiresAt: record.expires_at } } };
  }
  switch (record.state) {
    case 'complete':
      return { replay: record };
    case 'too_large':
      return { outcome: { kind: 'response_too_large', status: record.status ?? 0 } };
    case 'lost':
      return { outcome: { kind: 'response_lost', status: record.status ?? 0 } };
    case 'unknown':
      // Held by an earlier request under `hold`; a request whose policy is now `retry` takes over.
      if (spec.onUnknown === 'hold') return { outcome: { kind: 'outcome_unknown' } };
      if (spec.onUnknown === 'reconcile') return { reconcile: record };
      return { start: { expiresAt: record.expires_at, createdAt: record.created_at } };
    case 'in_flight': {
      if (alive(running, record, now)) return { join: running };
      // The row outlived its attempt: this instance was reset while the attempt was running.
      if (now < record.lease_until) return { outcome: { kind: 'in_progress', retryAfterMs: record.lease_until - now } };
      // The lease has ended and nobody knows whether the origin ran the request.
      if (spec.onUnknown === 'hold' || spec.onUnknown === 'reconcile') {
        store.unknown(record.attempt);
        return spec.onUnknown === 'hold' ? { outcome: { kind: 'outcome_unknown' } } : { reconcile: { ...record, state: 'unknown' } };
      }
      // A take-over keeps the key's times (its in-flight row lives until the new lease ends anyway).
      return { start: { expiresAt: record.expires_at, createdAt: record.created_at } };
    }
  }
}
