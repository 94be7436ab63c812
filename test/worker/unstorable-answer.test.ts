/**
 * Issue #29, findings 1 and 11: a write whose answer cannot be stored never runs again. Whatever refuses the answer
 * (a malformed keyring, SQLite, a full disk), once a result status was seen the key is held (`lost`: 502
 * `origin_response_lost`) rather than freed for a second run; a keyring the object could not seal with is refused
 * before anything runs; and an answer whose head alone is too large to store is `response_too_large`, even with an
 * empty body. Through the real middleware and the real object; storage refusals are real ones (a SQLite trigger, the
 * KV API refusing writes inside the object).
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { idempotency } from '../../src/middleware';
import { recordName } from '../../src/record/stub';
import { sha256Hex } from '../../src/shared/bytes';
import {
  answering,
  attemptSpec,
  expectProblem,
  newHold,
  newKey,
  originCalls,
  readOutcome,
  recordStub,
  refuseKvWrites,
  release,
  storedRecord,
  until,
} from './helpers';

/** The object of a handler-mode app's key (`answering()`: namespace `app`, credential `Bearer t`). */
const appStub = async (key: string) =>
  env.IDEMPOTENCY.get(env.IDEMPOTENCY.idFromName(recordName('app', 'headers:authorization', await sha256Hex('Bearer t'), key)));

/** Makes SQLite refuse the body chunk rows of the object (a body over 1 MiB is stored in them). */
async function refuseChunks(stub: DurableObjectStub): Promise<void> {
  await runInDurableObject(stub, (_, state) => {
    state.storage.sql.exec(`CREATE TABLE body_chunk (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)`);
    state.storage.sql.exec(`CREATE TRIGGER refuse_store BEFORE INSERT ON body_chunk BEGIN SELECT RAISE(ABORT, 'storage refused'); END`);
  });
}

/** `store_failed` lines are expected here. */
const quietErrors = () => vi.spyOn(console, 'error').mockImplementation(() => {});
afterEach(() => vi.restoreAllMocks());

describe('a result whose answer cannot be stored (finding 1)', () => {
  it('handler mode: a malformed IDEMPOTENCY_ENCRYPTION_KEYS is refused with 500 configuration_invalid before the handler runs', async () => {
    const short = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const bindings = { ...env, IDEMPOTENCY_ENCRYPTION_KEYS: `k1:${short}` };
    let runs = 0;
    const app = new Hono();
    app.use(idempotency({ reporter: false, leaseMs: 1000, timeoutMs: 1000 }));
    app.post('*', (c) => c.json({ run: ++runs }, 201));
    const key = newKey();
    const send = () =>
      Promise.resolve(
        app.request('/x', { method: 'POST', headers: { authorization: 'Bearer t', 'idempotency-key': key }, body: 'x' }, bindings),
      );
    const body = await expectProblem(await send(), 500, 'configuration_invalid');
    expect(body.detail).toContain('IDEMPOTENCY_ENCRYPTION_KEYS');
    expect(JSON.stringify(body)).not.toContain(short);
    await expectProblem(await send(), 500, 'configuration_invalid');
    expect(runs).toBe(0);
    expect(await storedRecord(key, 'Bearer t', 'app')).toBeUndefined();
  });

  it('the object itself refuses begin() and execute() with a malformed keyring in its own env, storing nothing', async () => {
    for (const call of ['begin', 'execute'] as const) {
      const key = newKey();
      const stub = await recordStub(key);
      await runInDurableObject(stub, (instance) => {
        const own = instance as unknown as { env: Record<string, unknown> };
        own.env = { ...own.env, IDEMPOTENCY_ENCRYPTION_KEYS: 'not-a-keyring' };
      });
      const spec = attemptSpec(key, '/echo/object-keyring');
      const outcome = call === 'begin' ? await stub.begin(spec) : await stub.execute(spec);
      expect(outcome).toMatchObject({ kind: 'configuration_invalid' });
      expect(JSON.stringify(outcome)).toContain('IDEMPOTENCY_ENCRYPTION_KEYS');
      expect(await storedRecord(key)).toBeUndefined();
      expect(await originCalls(key)).toBe(0);
    }
  });

  it('handler mode: SQLite refusing the answer holds the key as lost (502 origin_response_lost), never a second run after the lease', async () => {
    quietErrors();
    const app = answering(() => new Response(new Uint8Array(2 * 1024 * 1024), { status: 201 }), { leaseMs: 1000, timeoutMs: 1000 });
    const key = newKey();
    await refuseChunks(await appStub(key));
    // The first client still gets the handler's answer.
    const first = await app.request(key);
    expect(first.status).toBe(201);
    expect((await first.arrayBuffer()).byteLength).toBe(2 * 1024 * 1024);
    const { lease_until: leaseUntil } = (await storedRecord(key, 'Bearer t', 'app'))!;
    await until(() => Date.now() > leaseUntil, 'the lease to end');
    await expectProblem(await app.request(key), 502, 'origin_response_lost');
    expect(app.runs()).toBe(1);
    expect(await storedRecord(key, 'Bearer t', 'app')).toMatchObject({ state: 'lost', status: 201 });
  });

  it('proxy mode: storage refusing every write keeps the key held in this instance (502 origin_response_lost), never a second call', async () => {
    quietErrors();
    const key = newKey();
    const hold = newHold();
    const stub = await recordStub(key);
    const spec = attemptSpec(key, `/hold/${hold}/refused-everything`, { leaseMs: 1000, timeoutMs: 1000 });
    const first = stub.execute(spec);
    await until(async () => (await originCalls(key)) === 1, 'the attempt to reach the origin');
    // From now on the object's storage refuses every write: neither the answer nor `lost` can be stored.
    await runInDurableObject(stub, (_, state) => refuseKvWrites(state, 'disk full'));
    await release(hold);
    expect(await readOutcome(await first)).toMatchObject({ kind: 'response', response: { status: 200 } });
    const { lease_until: leaseUntil } = (await storedRecord(key))!;
    await until(() => Date.now() > leaseUntil, 'the lease to end');
    expect(await stub.execute(spec)).toEqual({ kind: 'response_lost', status: 200 });
    expect(await originCalls(key)).toBe(1);
  });
});

describe('an answer whose head is too large to store (finding 11)', () => {
  it('is response_too_large even with an empty body: the first client gets it, every retry 502, one run', async () => {
    const headers = new Headers();
    for (let i = 0; i < 320; i++) headers.append('x-big', 'h'.repeat(1024));
    const app = answering(() => new Response(null, { status: 204, headers }));
    const key = newKey();
    expect((await app.request(key)).status).toBe(204);
    expect(await storedRecord(key, 'Bearer t', 'app')).toMatchObject({ state: 'too_large', status: 204 });
    await expectProblem(await app.request(key), 502, 'response_too_large');
    expect(app.runs()).toBe(1);
  });
});
