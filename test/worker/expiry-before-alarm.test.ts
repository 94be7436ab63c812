/**
 * Expiry is decided on every read, not by the alarm: a stored answer past its expiry whose alarm has not fired
 * yet (held back in real storage, as a late or backlogged alarm would be) is never replayed; the key runs again.
 */
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { newKey, originCalls, recordStub, send, storedRecord, whole } from './helpers';

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
    // Read to its end: stored. (No replay before the expiry: it would fill the Worker's replay cache, which is another test's.)
    expect((await whole(send(path, { key, body: 'x' }))).status).toBe(200);
    // The alarm is held back for an hour and the stored expiry moved into the past, in real storage: only the read
    // path can tell that the record has expired. (A short TTL instead would race its own alarm on a slow machine.)
    const later = Date.now() + 3_600_000;
    await runInDurableObject(await recordStub(key), async (_, state) => {
      await state.storage.setAlarm(later);
      const record = state.storage.kv.get<Record<string, unknown>>('record')!;
      state.storage.kv.put('record', { ...record, expires_at: Date.now() - 1000 });
    });
    // Still stored, the alarm still to come: the record is past its expiry and nothing has collected it.
    expect(await pending(key)).toEqual({ alarm: later, stored: true });
    expect((await storedRecord(key))?.state).toBe('complete');
    const again = await send(path, { key, body: 'x' });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replay')).toBeNull();
    expect(((await again.json()) as { call: number }).call).toBe(2);
    expect(await originCalls(key)).toBe(2);
  });
});
