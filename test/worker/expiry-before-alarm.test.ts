/**
 * Expiry is decided on every read, not by the alarm: a stored answer past its expiry whose alarm has not fired
 * yet (held back in real storage, as a late or backlogged alarm would be) is never replayed; the key runs again.
 */
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { newKey, originCalls, recordStub, sendWith, storedRecord, until } from './helpers';

const vars = { IDEMPOTENCY_TTL_SECONDS: '1' };

/** The object's alarm, and whether it still holds its record. */
async function pending(key: string) {
  return runInDurableObject(await recordStub(key), async (_, state) => ({
    alarm: await state.storage.getAlarm(),
    stored: state.storage.kv.get('record') !== undefined,
  }));
}

describe('a stored answer past its expiry, before its alarm', () => {
  it('is not replayed: the same request runs again at the origin', async () => {
    const key = newKey();
    const path = '/echo/expiry-before-alarm';
    expect((await sendWith(vars, path, { key, body: 'x' })).status).toBe(200);
    expect((await sendWith(vars, path, { key, body: 'x' })).headers.get('idempotent-replay')).toBe('true');
    // The alarm is held back for an hour: only the read path can tell that the record has expired.
    const later = Date.now() + 3_600_000;
    await runInDurableObject(await recordStub(key), (_, state) => state.storage.setAlarm(later));
    const { expires_at: expiresAt } = (await storedRecord(key))!;
    await until(() => Date.now() > expiresAt, 'the stored expiry to pass');
    // Still stored, the alarm still to come: the record is past its expiry and nothing has collected it.
    expect(await pending(key)).toEqual({ alarm: later, stored: true });
    expect((await storedRecord(key))?.state).toBe('complete');
    const again = await sendWith(vars, path, { key, body: 'x' });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(((await again.json()) as { call: number }).call).toBe(2);
    expect(await originCalls(key)).toBe(2);
  });
});
