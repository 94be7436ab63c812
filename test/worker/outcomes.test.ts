/**
 * Issue #18: a write never runs twice after a broken answer, and an unknown outcome can be held. Against the
 * real `IdempotencyRecord` in workerd and the counting test origin; waits poll for stored state, and time
 * bounds are read from the stored lease.
 */
import { describe, expect, it } from 'vitest';
import type { AttemptLimits } from '../../src/record/api';
import {
  answering,
  attemptSpec,
  expectProblem,
  newHold,
  newKey,
  originCalls,
  originUrl,
  readOutcome,
  recordStub,
  release,
  resetObject,
  storedRecord,
  until,
} from './helpers';

const spec = (key: string, path: string, limits: Partial<AttemptLimits> = {}) =>
  attemptSpec(key, path, { timeoutMs: 2500, leaseMs: 2500, ...limits });

/**
 * A spec under `reconcile` whose reconcile URL answers `answer` (`found`, `missing`, `broken`, `refuse`: no answer, the
 * connection closed), held until `hold` is released when one is given.
 */
const reconciling = (key: string, path: string, answer: string, hold?: string) => ({
  ...spec(key, path, { onUnknown: 'reconcile' }),
  reconcile: {
    url: `${originUrl}/reconcile/${answer}/charges?idempotency_key=${encodeURIComponent(key)}${hold === undefined ? '' : `&hold=${hold}`}`,
    headers: [
      ['idempotency-key', key],
      ['authorization', 'Bearer test-token'],
    ] as [string, string][],
  },
});
const reconcileCalls = async (key: string) =>
  ((await (await fetch(`${originUrl}/__calls?reconcile=${encodeURIComponent(key)}`)).json()) as { count: number }).count;

/**
 * Starts an attempt at `/hold/<id>/<name>`, waits until the origin holds it, resets the object (the outcome is unknown),
 * then lets the origin answer that path at once: the path to send again and the stored lease.
 */
async function diedMidFlight(key: string, name: string, limits: Partial<AttemptLimits>): Promise<{ path: string; leaseUntil: number }> {
  const hold = newHold();
  const path = `/hold/${hold}/${name}`;
  const first = Promise.allSettled([(await recordStub(key)).execute(spec(key, path, limits))]);
  await until(async () => (await originCalls(key)) > 0);
  await resetObject(key);
  await first;
  await release(hold);
  const { lease_until: leaseUntil } = (await storedRecord(key))!;
  return { path, leaseUntil };
}

describe('IdempotencyRecord: onUnknown', () => {
  it('hold: after the lease of a dead attempt the key answers outcome_unknown, never a second call; a purge frees it', async () => {
    const key = newKey();
    const limits = { onUnknown: 'hold' as const };
    const { path, leaseUntil } = await diedMidFlight(key, 'hold', limits);
    expect((await (await recordStub(key)).execute(spec(key, path, limits))).kind).toBe('in_progress');
    await until(() => Date.now() > leaseUntil);
    expect(await (await recordStub(key)).execute(spec(key, path, limits))).toEqual({ kind: 'outcome_unknown' });
    expect(await (await recordStub(key)).execute(spec(key, path, limits))).toEqual({ kind: 'outcome_unknown' });
    expect(await (await recordStub(key)).inspect()).toMatchObject({ state: 'unknown', status: null, lease_until: null });
    expect(await originCalls(key)).toBe(1);
    expect(await (await recordStub(key)).purge()).toEqual({ kind: 'purged', state: 'unknown' });
    expect(await (await recordStub(key)).execute(spec(key, path, limits))).toMatchObject({ kind: 'response' });
  });

  it('hold, then a request whose policy is retry: that request takes the held key over with the same key', async () => {
    const key = newKey();
    const { path, leaseUntil } = await diedMidFlight(key, 'switch', { onUnknown: 'hold' });
    await until(() => Date.now() > leaseUntil);
    expect((await (await recordStub(key)).execute(spec(key, path, { onUnknown: 'hold' }))).kind).toBe('outcome_unknown');
    expect(await (await recordStub(key)).execute(spec(key, path, { onUnknown: 'retry' }))).toMatchObject({
      kind: 'response',
      replayed: false,
    });
    expect(await originCalls(key)).toBe(2);
  });
});

describe('IdempotencyRecord: lost answers', () => {
  it('handler mode: a complete() saying the body broke after a result status stores lost; 5xx lost frees the key', async () => {
    const limits = { fingerprint: 'fp', timeoutMs: 1000, leaseMs: 2000, ttlMs: 60_000 };
    const acquire = async (key: string) => {
      const begun = await (await recordStub(key)).begin(limits);
      if (begun.kind !== 'acquired') throw new Error('not acquired');
      return begun.attempt;
    };
    const key = newKey();
    await (await recordStub(key)).complete(await acquire(key), { kind: 'response_lost', status: 201 });
    expect(await (await recordStub(key)).begin(limits)).toEqual({ kind: 'response_lost', status: 201 });
    expect(await (await recordStub(key)).inspect()).toMatchObject({ state: 'lost', status: 201 });
    const other = newKey();
    await (await recordStub(other)).complete(await acquire(other), { kind: 'response_lost', status: 503 });
    expect(await storedRecord(other)).toBeUndefined();
  });
});

describe('idempotency() handler mode: a body that breaks after its status', () => {
  const breaking = (status: number) => () =>
    new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('partial'));
          controller.error(new Error('handler body broke'));
        },
      }),
      { status },
    );

  it('answers 502 origin_response_lost for a result status and never runs the handler again', async () => {
    const app = answering(breaking(201));
    const key = newKey();
    await expectProblem(await app.request(key), 502, 'origin_response_lost');
    await expectProblem(await app.request(key), 502, 'origin_response_lost');
    expect(app.runs()).toBe(1);
  });

  it('frees the key for a 5xx whose body breaks', async () => {
    const app = answering(breaking(503));
    const key = newKey();
    await expectProblem(await app.request(key), 502, 'origin_unreachable');
    await expectProblem(await app.request(key), 502, 'origin_unreachable');
    expect(app.runs()).toBe(2);
  });
});

describe('IdempotencyRecord: onUnknown reconcile', () => {
  it('stores and replays the 2xx answer of the reconcile URL: one POST, the credential sent, the key never runs again', async () => {
    const key = newKey();
    const { path, leaseUntil } = await diedMidFlight(key, 'found', { onUnknown: 'reconcile' });
    await until(() => Date.now() > leaseUntil);
    const outcome = await readOutcome(await (await recordStub(key)).execute(reconciling(key, path, 'found')));
    expect(outcome).toMatchObject({ kind: 'response', replayed: true, response: { status: 200 } });
    if (outcome.kind !== 'response') return;
    expect(JSON.parse(new TextDecoder().decode(outcome.response.body))).toMatchObject({ reconciled: true, key, credential: true });
    expect(await storedRecord(key)).toMatchObject({ state: 'complete', status: 200 });
    expect(await (await recordStub(key)).execute(reconciling(key, path, 'found'))).toMatchObject({
      kind: 'response',
      replayed: true,
    });
    expect(await originCalls(key)).toBe(1);
    expect(await reconcileCalls(key)).toBe(1);
  });

  it('runs the request when the reconcile URL answers 404 (it never ran): exactly two POSTs', async () => {
    const key = newKey();
    const { path, leaseUntil } = await diedMidFlight(key, 'missing', { onUnknown: 'reconcile' });
    await until(() => Date.now() > leaseUntil);
    const outcome = await (await recordStub(key)).execute(reconciling(key, path, 'missing'));
    expect(outcome).toMatchObject({ kind: 'response', replayed: false, response: { status: 200 } });
    expect(await originCalls(key)).toBe(2);
    expect(await (await recordStub(key)).execute(reconciling(key, path, 'missing'))).toMatchObject({
      kind: 'response',
      replayed: true,
    });
    expect(await originCalls(key)).toBe(2);
  });

  it('holds the key as unknown (503 with Retry-After) while the reconcile URL cannot say, and asks again on the next retry', async () => {
    const key = newKey();
    const { path, leaseUntil } = await diedMidFlight(key, 'broken', { onUnknown: 'reconcile' });
    await until(() => Date.now() > leaseUntil);
    for (let asked = 1; asked <= 2; asked++) {
      expect(await (await recordStub(key)).execute(reconciling(key, path, 'broken'))).toEqual({
        kind: 'outcome_pending',
        retryAfterMs: 1000,
      });
      expect(await reconcileCalls(key)).toBe(asked);
    }
    expect(await (await recordStub(key)).inspect()).toMatchObject({ state: 'unknown' });
    expect(await originCalls(key)).toBe(1);
  });

  it.each([
    ['closes the connection without an answer', 'refuse', false],
    ['does not answer within the wait, its 404 coming later', 'missing', true],
  ])('holds the key as unknown when the reconcile URL %s, never running the request again', async (_, answer, late) => {
    const key = newKey();
    const { path, leaseUntil } = await diedMidFlight(key, `silent-${answer}`, { onUnknown: 'reconcile' });
    await until(() => Date.now() > leaseUntil);
    const silent = late ? newHold() : undefined;
    // No answer is not "never ran": the retry is told to come back, and the next one asks again.
    for (let asked = 1; asked <= 2; asked++) {
      expect(await (await recordStub(key)).execute({ ...reconciling(key, path, answer, silent), timeoutMs: 500 })).toEqual({
        kind: 'outcome_pending',
        retryAfterMs: 1000,
      });
      expect(await reconcileCalls(key)).toBe(asked);
    }
    expect(await (await recordStub(key)).inspect()).toMatchObject({ state: 'unknown' });
    expect(await originCalls(key)).toBe(1);
    if (silent !== undefined) await release(silent);
  });
});

describe('IdempotencyRecord: an origin call that ends without a status line', () => {
  it('hold: a connection reset before the status holds the key as unknown; the retry answers outcome_unknown, no second call', async () => {
    const key = newKey();
    const limits = { onUnknown: 'hold' as const };
    expect(await (await recordStub(key)).execute(spec(key, '/reset-before-status/hold', limits))).toEqual({
      kind: 'origin_unreachable',
      held: true,
    });
    expect(await storedRecord(key)).toMatchObject({ state: 'unknown' });
    expect(await (await recordStub(key)).execute(spec(key, '/reset-before-status/hold', limits))).toEqual({ kind: 'outcome_unknown' });
    expect(await (await recordStub(key)).inspect()).toMatchObject({ state: 'unknown' });
    expect(await originCalls(key)).toBe(1);
  });

  it('reconcile: the retry asks the origin, and its answer is replayed: one POST in all', async () => {
    const key = newKey();
    const first = await (await recordStub(key)).execute(reconciling(key, '/reset-before-status/rc', 'found'));
    expect(first).toEqual({ kind: 'origin_unreachable', held: true });
    expect(await (await recordStub(key)).execute(reconciling(key, '/reset-before-status/rc', 'found'))).toMatchObject({
      kind: 'response',
      replayed: true,
      response: { status: 200 },
    });
    expect(await originCalls(key)).toBe(1);
    expect(await reconcileCalls(key)).toBe(1);
  });

  it('retry (the default): the key is freed and the retry runs again with the same key', async () => {
    const key = newKey();
    expect(await (await recordStub(key)).execute(spec(key, '/reset-before-status/retry'))).toEqual({ kind: 'origin_unreachable' });
    expect(await storedRecord(key)).toBeUndefined();
    await (await recordStub(key)).execute(spec(key, '/reset-before-status/retry'));
    expect(await originCalls(key)).toBe(2);
  });

  it('hold: a lease that ends before the status line holds the key as unknown', async () => {
    const key = newKey();
    const limits = { onUnknown: 'hold' as const, leaseMs: 400, timeoutMs: 400 };
    // The origin holds the call until after the lease (released at the end).
    const hold = newHold();
    const path = `/hold/${hold}/lease-hold`;
    await (await recordStub(key)).execute(spec(key, path, limits));
    await until(async () => (await storedRecord(key))?.state === 'unknown', 'the lease to end and hold the key');
    expect(await (await recordStub(key)).execute(spec(key, path, limits))).toEqual({ kind: 'outcome_unknown' });
    expect(await originCalls(key)).toBe(1);
    await release(hold);
  });

  it('a lease that ends while a result body is arriving stores lost: 502 origin_response_lost, never a second call', async () => {
    const key = newKey();
    const limits = { leaseMs: 400, timeoutMs: 400 };
    // The head and part of the body come at once; the rest only once released (at the end), after the lease.
    const hold = newHold();
    const path = `/drip/0/lease-body?pause=${hold}`;
    await (await recordStub(key)).execute(spec(key, path, limits));
    await until(async () => (await storedRecord(key))?.state === 'lost', 'the lease to end mid-body');
    expect(await (await recordStub(key)).execute(spec(key, path, limits))).toEqual({
      kind: 'response_lost',
      status: 200,
    });
    expect(await originCalls(key)).toBe(1);
    await release(hold);
  });
});
