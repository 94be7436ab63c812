/**
 * @module
 * One attempt of a key, as the object runs it, and what a request waiting on it is answered.
 *
 * The wait a caller accepts (`timeoutMs`) is for the answer to begin: once the origin's status line and headers have
 * arrived, the first request and every duplicate that joins get the answer as it streams, until it ends (within the
 * attempt's lease). Handler-mode attempts have no live answer: their duplicates wait for the handler's report.
 */
import { RpcTarget } from 'cloudflare:workers';
import type { LiveAnswer, Readers } from './live';
import type { AttemptReport, Outcome, Settled } from './api';
import { isResultStatus } from '../shared/status';
import { within } from '../shared/timer';
import { BODY_CHUNK_BYTES } from './storage';
import { checkSettled } from './validate';

/**
 * How long past its lease an attempt still counts as running in this instance. The lease itself ends every attempt (it
 * cuts the origin call and the capture, and ends the wait for a handler's report); this only bounds one that did not end.
 */
export const LEASE_GRACE_MS = 5_000;

/**
 * The most streams of one key's answer open at once: duplicates joining its live answer, and replays of a stored answer
 * over 1 MiB streamed from storage. Each holds at most a chunk or a part in flight. A duplicate past it waits
 * for the answer to be stored and is replayed; a streamed replay past it answers `busy` (503 with `Retry-After`).
 */
export const MAX_READERS = 8;

/**
 * How an attempt ended, and until when its answer is stored (`undefined`: not stored); `held` when its outcome is
 * unknown and its policy holds the key rather than freeing it.
 */
export interface Finished {
  readonly settled: Settled;
  readonly storedUntil: number | undefined;
  readonly held: boolean;
}

/** An attempt running in this instance: its id, how it ends, its answer as it arrives, and its key's times. */
export interface Attempt {
  readonly id: string;
  readonly done: Promise<Finished>;
  /**
   * Until when this instance counts the attempt as running (ms since the epoch): its lease's end and a grace for the
   * attempt to end (the lease cuts the origin call, the capture and the wait for a handler's report). Past it, the
   * attempt is taken for dead, as after a reset. A lost answer's marker (`lost`) counts until the key expires.
   */
  readonly until: number;
  /**
   * The status of a result whose answer storage refused, and whose `lost` state it refused too: this instance then
   * answers `response_lost` for the key itself, so a duplicate never takes it over (see `IdempotencyRecord`).
   */
  readonly lost?: number;
  /** Proxy mode: the origin's answer once its head has arrived (`undefined`: none arrived), its body still streaming. */
  readonly answer?: Promise<LiveAnswer | undefined>;
  /** When the key can run again if the attempt's answer holds it (stored, too large or lost). */
  readonly expiresAt: number;
  /** When the key's record was created (its first request): a replay's `Age` counts from it. */
  readonly createdAt: number;
  /** Settles a handler-mode attempt (see `IdempotencyRecord.complete`). */
  readonly settle?: (settled: Settled) => void;
}

/**
 * The status of an attempt's end that says the write ran (a result's status line arrived: the response, or a result too
 * large to store or lost), or `undefined`.
 */
export function ranStatus(settled: Settled): number | undefined {
  const status = settled.kind === 'response' ? settled.response.status : 'status' in settled ? settled.status : undefined;
  return status !== undefined && isResultStatus(status) ? status : undefined;
}

/**
 * The marker that holds attempt `id` as lost in this instance until `expiresAt`, when storage refused even its `lost`
 * state: a request with the key joins it and gets `response_lost`, never a new attempt.
 */
export function lostAttempt(id: string, status: number, { expiresAt, createdAt }: { expiresAt: number; createdAt: number }): Attempt {
  const settled: Settled = { kind: 'response_lost', status };
  const done = Promise.resolve({ settled, storedUntil: undefined, held: false });
  return { id, until: expiresAt, lost: status, expiresAt, createdAt, done };
}

/** The {@link AttemptReport} that `begin` returns: an `RpcTarget`, so it is called in `begin`'s RPC session. */
export class Report extends RpcTarget implements AttemptReport {
  readonly #complete: (settled: Settled) => Promise<number | null>;

  constructor(complete: (settled: Settled) => Promise<number | null>) {
    super();
    this.#complete = complete;
  }

  complete(settled: Settled): Promise<number | null> {
    checkSettled(settled);
    return this.#complete(settled);
  }
}

/** How a duplicate that joins an attempt's live answer is bounded: the object's readers, and what it gets past them. */
export interface Joining {
  readonly readers: Readers;
  /** Past the bound, once the attempt's answer is stored: the object decides again (the stored answer, as a replay). */
  readonly stored: () => Promise<Outcome>;
}

/**
 * What a request waiting on `attempt` gets, waiting at most `timeoutMs` for the answer to begin; the attempt itself goes
 * on regardless.
 *
 * @param first - whether this request started the attempt (its answer is not a replay, and it alone gets the bytes past
 *   the capture limit)
 * @param joining - for a duplicate: the bound on live readers, and what it gets past it
 */
export async function awaitAttempt(attempt: Attempt, timeoutMs: number, first: boolean, joining?: Joining): Promise<Outcome> {
  const { answer, done } = attempt;
  // A call that got no head ends at once: its end is the answer.
  const head: Promise<LiveAnswer | Finished> =
    answer === undefined ? done : answer.then((live): Promise<LiveAnswer | Finished> | LiveAnswer => live ?? done);
  const begun = await within(Promise.race([done, head]), timeoutMs);
  if (begun === undefined) {
    // Nobody will read the first answer when it comes: past the limit its source is cancelled, not waited on.
    if (first) void answer?.then((live) => live?.body.abandon());
    return first ? { kind: 'origin_timeout' } : { kind: 'in_progress', retryAfterMs: 1000 };
  }
  if (!('body' in begun)) return finishedOutcome(begun, first, attempt.createdAt);
  const { status, headers, body } = begun;
  const holds = isResultStatus(status);
  if (!first && body.capture === 'too_large') return holds ? { kind: 'response_too_large', status } : { kind: 'origin_unreachable' };
  // Broken: the attempt ends at once, and its end says what the break means (lost, or a freed key).
  if (!first && body.capture === 'broken') return finishedOutcome(await done, first, attempt.createdAt);
  const stream = first ? body.first(done) : body.join(done, joining?.readers);
  // Too many readers already: this one waits for the attempt to end (holding no bytes), then is answered from its record.
  if (stream === undefined) return done.then((finished) => afterReaders(finished, joining!, attempt.createdAt));
  const outcome = {
    kind: 'response',
    replayed: !first,
    response: { status, headers, body: stream },
    createdAt: attempt.createdAt,
  } as const;
  return holds ? { ...outcome, storedUntil: attempt.expiresAt } : outcome;
}

/**
 * What a duplicate past the bound on readers gets once the attempt has ended: its stored answer, replayed; an answer not
 * stored (a 5xx, a transient status) as it is when it is small, else `origin_unreachable` (retrying is safe: the key is
 * free), so that no waiter is sent a large body from memory.
 */
function afterReaders(finished: Finished, joining: Joining, createdAt: number): Promise<Outcome> | Outcome {
  if (finished.storedUntil !== undefined) return joining.stored();
  const { settled } = finished;
  if (settled.kind === 'response' && settled.response.body.byteLength > BODY_CHUNK_BYTES) return { kind: 'origin_unreachable' };
  return finishedOutcome(finished, false, createdAt);
}

/** The answer of an attempt that has ended. */
function finishedOutcome({ settled, storedUntil, held }: Finished, first: boolean, createdAt: number): Outcome {
  if (settled.kind === 'origin_timeout' || settled.kind === 'origin_unreachable')
    return held ? { kind: settled.kind, held } : { kind: settled.kind };
  if (settled.kind !== 'response') return settled;
  const outcome = { kind: 'response', replayed: !first, response: settled.response, createdAt } as const;
  return storedUntil === undefined ? outcome : { ...outcome, storedUntil };
}
