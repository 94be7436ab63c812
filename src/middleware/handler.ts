/**
 * @module
 * Handler mode, for the request that acquired its key: the app's handler runs in the Worker, and its answer is
 * captured while it streams to the client and reported to the object on the `AttemptReport` that `begin()` returned.
 */
import type { Context } from 'hono';
import type { BeginResult, Outcome, Settled } from '../record/api';
import { isResultStatus } from '../shared/status';
import { type LiveAnswer, liveAnswer } from '../record/live';

import { Rejection } from '../shared/problem';
import { within } from '../shared/timer';
import { type RecordRef, type Records, keyHashOf } from '../record/stub';

/** A handler-mode key the object gave this request to run. */
export type Acquired = Extract<BeginResult, { kind: 'acquired' }>;

/**
 * How long before the lease's end a handler's streamed answer is cut: the object ends an attempt that has not reported
 * by then as an unknown outcome (which `retry` frees), so the report of a cut result (lost) must reach it first.
 */
const leaseMargin = (leaseMs: number): number => Math.min(1000, Math.floor(leaseMs / 4));

/**
 * Handler mode, for the request that acquired the key: runs the handler and reports its answer. An answer that has
 * ended by the next turn is reported before it is sent, as a whole; a longer one streams to the client while it is
 * captured, and is reported when it ends (`waitUntil`), or cut just before the lease ends (even when its
 * client stopped reading past the capture limit, a result is then reported lost, never left for the key to be freed).
 * Duplicates wait for the report either way.
 */
export async function runHandler(
  records: Records,
  limits: { readonly maxBodyBytes: number; readonly leaseMs: number },
  c: Context,
  ref: RecordRef,
  acquired: Acquired,
  next: () => Promise<void>,
): Promise<Outcome> {
  const started = Date.now();
  const { maxBodyBytes, leaseMs } = limits;
  await next();
  let live: LiveAnswer;
  try {
    // The handler's bytes are served as they are, so its content-encoding is kept.
    live = liveAnswer(c.res, maxBodyBytes, false);
  } catch {
    const failed = { kind: 'origin_unreachable' } as const;
    await completeAttempt(records, ref, acquired, failed);
    return failed;
  }
  const recorded = live.settled.then((settled) => completeAttempt(records, ref, acquired, settled));
  const settled = await within(live.settled, 0);
  // An answer too large to store still reaches its client whole (streamed, below), even one that has already ended.
  if (settled !== undefined && settled.kind !== 'response_too_large') {
    const storedUntil = await recorded;
    if (settled.kind !== 'response') return settled;
    const outcome = { kind: 'response', replayed: false, response: settled.response } as const;
    return storedUntil === null ? outcome : { ...outcome, storedUntil };
  }
  const { status, headers, body } = live;
  const cut = setTimeout(() => body.stop(), Math.max(0, leaseMs - leaseMargin(leaseMs) - (Date.now() - started)));
  void live.settled.finally(() => clearTimeout(cut));
  try {
    c.executionCtx.waitUntil(recorded);
  } catch {
    // No execution context (a test calling app.request): the stream's own end still reports it.
  }
  const outcome = { kind: 'response', replayed: false, response: { status, headers, body: body.first(recorded) } } as const;
  return isResultStatus(status) ? { ...outcome, storedUntil: acquired.expiresAt } : outcome;
}

/** Reports the end of a handler-mode attempt; returns when the key can run again if its answer was stored. */
async function completeAttempt(records: Records, ref: RecordRef, { attempt, report }: Acquired, settled: Settled): Promise<number | null> {
  try {
    // In begin()'s RPC session: no second billed request.
    return await report.complete(settled);
  } catch {
    // The session is gone (the object was reset meanwhile): the object still takes the report by the attempt's id.
  } finally {
    (report as Partial<Disposable>)[Symbol.dispose]?.();
  }
  try {
    return (await records.call(ref, (stub) => stub.complete(attempt, settled))) ?? null;
  } catch (error) {
    // Not recorded: the key stays held until the lease ends. The client still gets the answer.
    const cause = error instanceof Rejection ? error.problem.cause : error;
    console.error(JSON.stringify({ event: 'complete_failed', key_hash: keyHashOf(ref.id), error: String(cause) }));
    return null;
  }
}
