/**
 * An attempt still running in its object keeps its key, whatever its row's times say: the row of a running
 * attempt counts for every request, lookup and purge, even once its lease and TTL have passed (a lease the
 * origin call outlives, a clock that moved). The row's times are moved into the past in real storage while the
 * origin holds the call (`/hold/<id>`); nothing else is changed.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/shared/bytes';
import { expectProblem, newHold, newKey, originCalls, recordStub, release, sendWith, storedRecord, until } from './helpers';

const ADMIN = 'admin-token-for-tests-0123456789';
const auth = 'Bearer test-token';
/** A lease long enough that only the stored times, never the origin call's own lease timer, can end it. */
const vars = { IDEMPOTENCY_ADMIN_TOKEN: ADMIN, ORIGIN_LEASE_MS: '10000' };

/** Starts a keyed write that the origin holds, and waits until it has reached the origin; `first` is its answer to come. */
async function running(key: string, hold: string): Promise<{ first: Promise<Response> }> {
  const first = sendWith(vars, `/hold/${hold}/running`, { key, body: 'x' });
  await until(async () => (await originCalls(key)) === 1, 'the attempt to reach the origin');
  return { first };
}

/** Moves the stored lease and expiry of the key's row to `at` (ms from now): into the past, the row no longer counts by its times. */
async function moveTimes(key: string, at: number): Promise<void> {
  await runInDurableObject(await recordStub(key), (_, state) => {
    const time = Date.now() + at;
    const record = state.storage.kv.get<Record<string, unknown>>('record')!;
    state.storage.kv.put('record', { ...record, lease_until: time, expires_at: time });
  });
}

/** Moves the stored lease and expiry of the key's row into the past: by its times alone, the row no longer counts. */
const outlive = (key: string) => moveTimes(key, -1000);

/** Lets the held attempt answer, and waits for it to be stored. */
async function finish(hold: string, key: string, first: Promise<Response>): Promise<void> {
  await release(hold);
  await first;
  await until(async () => (await storedRecord(key))?.state === 'complete', 'the attempt to store its answer');
}

describe('the row of an attempt still running here', () => {
  it('is joined by a duplicate after its lease and TTL have passed, never run a second time', async () => {
    const key = newKey();
    const hold = newHold();
    const { first } = await running(key, hold);
    await outlive(key);
    // The duplicate joins the running attempt and, after ORIGIN_TIMEOUT_MS, is told it is still in progress.
    await expectProblem(await sendWith(vars, `/hold/${hold}/running`, { key, body: 'x' }), 409, 'idempotency_key_in_progress');
    expect(await originCalls(key)).toBe(1);
    await finish(hold, key, first);
    expect(await originCalls(key)).toBe(1);
  });

  it('is still described by a lookup after its lease and TTL have passed', async () => {
    const key = newKey();
    const hold = newHold();
    const { first } = await running(key, hold);
    await outlive(key);
    const res = await sendWith(vars, `/_idempotency/keys/${key}`, { method: 'GET', auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ key, state: 'in_flight' });
    await finish(hold, key, first);
  });

  it('is never purged after its lease and TTL have passed: the purge answers 409 and the answer is still stored', async () => {
    const key = newKey();
    const hold = newHold();
    const { first } = await running(key, hold);
    await outlive(key);
    const purge = await sendWith(vars, `/_idempotency/admin/keys/${key}`, {
      method: 'DELETE',
      auth: `Bearer ${ADMIN}`,
      headers: { 'idempotency-scope': await sha256Hex(auth) },
    });
    await expectProblem(purge, 409, 'idempotency_key_in_progress');
    await finish(hold, key, first);
    expect(await originCalls(key)).toBe(1);
  });

  it('is kept by the alarm after its lease and TTL have passed: the alarm sets itself again, and the answer is stored', async () => {
    const key = newKey();
    const hold = newHold();
    const { first } = await running(key, hold);
    await outlive(key);
    // The alarm runs now, as a late one would: by its times the row has expired, but its attempt is still running here.
    expect(await runDurableObjectAlarm(await recordStub(key))).toBe(true);
    expect(await storedRecord(key)).toMatchObject({ state: 'in_flight' });
    const alarm = await runInDurableObject(await recordStub(key), (_, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    // Times back in the future, so that the stored answer is not expired by its moved times once it is written.
    await moveTimes(key, 60_000);
    await finish(hold, key, first);
    expect((await sendWith(vars, `/hold/${hold}/running`, { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});
