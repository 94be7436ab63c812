/**
 * Issue #29, findings 4 and 5: what one key's readers can hold is bounded. At most `MAX_READERS` streams of a key's
 * answer are open at once (duplicates joining the live answer, replays streamed from storage): a duplicate past them
 * waits for the stored answer and is replayed, a streamed replay past them answers 503 with `Retry-After`. A stored
 * answer over 1 MiB is replayed from storage part by part, never read whole. And the lease bounds every attempt: a first
 * client that stops reading past the capture limit no longer keeps its attempt (and its key) past the lease. Against the
 * real object and origin; nothing here is timed: the lease's end is read from the stored record.
 */
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../../src/record/api';
import { isStored } from '../../src/middleware/answer';
import { MAX_READERS } from '../../src/record/attempt';
import { sha256Hex } from '../../src/shared/bytes';
import {
  answering,
  attemptSpec,
  expectProblem,
  newKey,
  originCalls,
  readOutcome,
  recordStub,
  sendWith,
  storedRecord,
  until,
} from './helpers';

const ADMIN = 'admin-token-for-tests-0123456789';
const MIB = 1024 * 1024;

describe('duplicates joining a live answer', () => {
  it(`stream to at most ${MAX_READERS} of them at once; the others wait for the stored answer and replay it, byte-exact`, async () => {
    const key = newKey();
    const path = '/sse/10/100/bounded-joiners';
    const stub = await recordStub(key);
    const spec = attemptSpec(key, path, { timeoutMs: 5000, leaseMs: 10_000 });
    const first = stub.execute(spec);
    await until(async () => (await originCalls(key)) === 1, 'the first request to reach the origin');
    const duplicates = Array.from({ length: MAX_READERS + 4 }, async () => readOutcome(await (await recordStub(key)).execute(spec)));
    const outcomes = await Promise.all([readOutcome(await first), ...duplicates]);
    const bodies = outcomes.map((outcome) =>
      outcome.kind === 'response' ? new TextDecoder().decode(outcome.response.body) : outcome.kind,
    );
    expect(new Set(bodies).size).toBe(1);
    // The joiners' answers are the live one (`storedUntil`); those past the bound were read back from storage (`expiresAt`).
    const joined = outcomes.slice(1).filter((outcome) => outcome.kind === 'response' && outcome.storedUntil !== undefined);
    const replayed = outcomes.slice(1).filter((outcome) => outcome.kind === 'response' && outcome.expiresAt !== undefined);
    expect([joined.length, replayed.length]).toEqual([MAX_READERS, 4]);
    expect(await originCalls(key)).toBe(1);
  });
});

describe('a stored answer over 1 MiB', () => {
  const path = `/bytes/${2.5 * MIB}/streamed-replay`;
  const spec = (key: string) => attemptSpec(key, path, { maxBodyBytes: 4 * MIB });

  it('is replayed from storage as a stream, byte-exact (one of a single part stays whole)', async () => {
    const key = newKey();
    const stub = await recordStub(key);
    const first = await readOutcome(await stub.execute(spec(key)));
    const replay = (await stub.execute(spec(key))) as Outcome;
    expect(replay).toMatchObject({ kind: 'response', replayed: true });
    if (replay.kind !== 'response' || first.kind !== 'response') return;
    expect(isStored(replay.response)).toBe(false);
    const replayed = await new Response(replay.response.body).arrayBuffer();
    expect(Buffer.from(replayed).equals(Buffer.from(first.response.body))).toBe(true);
    const small = newKey();
    await readOutcome(await (await recordStub(small)).execute(attemptSpec(small, '/echo/small-replay')));
    const whole = (await (await recordStub(small)).execute(attemptSpec(small, '/echo/small-replay'))) as Outcome;
    expect(whole.kind === 'response' && isStored(whole.response)).toBe(true);
  });

  it(`streams to at most ${MAX_READERS} readers at once: the next gets 503 idempotency_unavailable with Retry-After, until one is done`, async () => {
    const key = newKey();
    const vars = { MAX_BODY_BYTES: String(4 * MIB) };
    const send = () => sendWith(vars, path, { key, body: 'x' });
    expect((await (await send()).arrayBuffer()).byteLength).toBe(2.5 * MIB);
    // Replays whose clients do not read (yet).
    const open: Response[] = [];
    for (let i = 0; i < MAX_READERS; i++) {
      const replay = await send();
      expect(replay.headers.get('idempotent-replay')).toBe('true');
      open.push(replay);
    }
    const busy = await send();
    expect(busy.headers.get('retry-after')).toBe('1');
    await expectProblem(busy, 503, 'idempotency_unavailable');
    // A reader that is done frees its place.
    expect((await open.pop()!.arrayBuffer()).byteLength).toBe(2.5 * MIB);
    const next = await send();
    expect(next.headers.get('idempotent-replay')).toBe('true');
    expect((await next.arrayBuffer()).byteLength).toBe(2.5 * MIB);
    await Promise.all(open.map((res) => res.body?.cancel()));
    expect(await originCalls(key)).toBe(1);
  });

  it('breaks a replay still streaming when the record is purged meanwhile, never streaming another answer', async () => {
    const key = newKey();
    const large = `/bytes/${12 * MIB}/purged-mid-replay`;
    const stub = await recordStub(key);
    await readOutcome(await stub.execute(attemptSpec(key, large, { maxBodyBytes: 16 * MIB })));
    const replay = (await stub.execute(attemptSpec(key, large, { maxBodyBytes: 16 * MIB }))) as Outcome;
    if (replay.kind !== 'response' || isStored(replay.response)) throw new Error('the replay was not streamed');
    const reader = replay.response.body.getReader();
    let read = 0;
    while (read < MIB) read += (await reader.read()).value?.byteLength ?? MIB;
    expect(await stub.purge()).toMatchObject({ kind: 'purged' });
    await expect(
      (async () => {
        for (let next = await reader.read(); !next.done; next = await reader.read()) read += next.value.byteLength;
      })(),
    ).rejects.toThrow();
    expect(read).toBeLessThan(12 * MIB);
  });
});

describe('the lease bounds an attempt whose first client stops reading past the capture limit (finding 5)', () => {
  /** Starts an attempt whose answer (32 MiB, over a 1 MiB limit) its first client never reads. */
  async function stalled(key: string, path: string): Promise<ReadableStream<Uint8Array>> {
    const outcome = (await (
      await recordStub(key)
    ).execute(attemptSpec(key, path, { maxBodyBytes: MIB, timeoutMs: 1500, leaseMs: 1500 }))) as Outcome;
    if (outcome.kind !== 'response' || isStored(outcome.response)) throw new Error(`the first answer was not streamed: ${outcome.kind}`);
    return outcome.response.body;
  }

  it('a 5xx: the attempt ends at the lease and frees the key; the retry runs again, a purge finds nothing', async () => {
    const key = newKey();
    const path = `/big-status/500/${32 * MIB}/stalled-5xx`;
    const body = await stalled(key, path);
    const { lease_until: leaseUntil } = (await storedRecord(key))!;
    await until(() => Date.now() > leaseUntil, 'the lease to end');
    await until(async () => (await storedRecord(key)) === undefined, 'the attempt to end and free the key');
    const purge = await sendWith({ IDEMPOTENCY_ADMIN_TOKEN: ADMIN }, `/_idempotency/admin/keys/${key}`, {
      method: 'DELETE',
      auth: `Bearer ${ADMIN}`,
      headers: { 'idempotency-scope': await sha256Hex('Bearer test-token') },
    });
    await expectProblem(purge, 404, 'idempotency_key_not_found');
    await (await recordStub(key)).execute(attemptSpec(key, '/status/201/after-stall'));
    expect(await originCalls(key)).toBe(2);
    await body.cancel().catch(() => {});
  });

  it('a result: the attempt ends at the lease as lost (502 origin_response_lost), never a second call', async () => {
    const key = newKey();
    const path = `/bytes/${32 * MIB}/stalled-result`;
    const body = await stalled(key, path);
    await until(async () => (await storedRecord(key))?.state === 'lost', 'the lease to end the attempt as lost');
    expect(await (await recordStub(key)).execute(attemptSpec(key, path, { maxBodyBytes: MIB }))).toEqual({
      kind: 'response_lost',
      status: 200,
    });
    expect(await originCalls(key)).toBe(1);
    // Its stream broke where the lease ended.
    await expect(new Response(body).arrayBuffer()).rejects.toThrow();
    expect(await runInDurableObject(await recordStub(key), (_, state) => state.storage.kv.get<{ state: string }>('record')?.state)).toBe(
      'lost',
    );
  });
});

describe('handler mode: the lease bounds an answer whose client stops reading past the capture limit (findings 1, 5)', () => {
  it('holds the key as lost at the lease (502 origin_response_lost), never running the handler again', async () => {
    // A result over the 1 KiB limit, streamed for as long as it is read: its client reads nothing.
    const app = answering(
      () =>
        new Response(
          new ReadableStream({
            pull(controller) {
              controller.enqueue(new Uint8Array(64 * 1024));
            },
          }),
          { status: 201 },
        ),
      { maxBodyBytes: 1024, leaseMs: 1500, timeoutMs: 1500 },
    );
    const key = newKey();
    const first = await app.request(key);
    expect(first.status).toBe(201);
    const { lease_until: leaseUntil } = (await storedRecord(key, 'Bearer t', 'app'))!;
    await until(() => Date.now() > leaseUntil, 'the lease to end');
    await until(async () => (await storedRecord(key, 'Bearer t', 'app'))?.state !== 'in_flight', 'the attempt to end');
    await expectProblem(await app.request(key), 502, 'origin_response_lost');
    expect(app.runs()).toBe(1);
    await first.body?.cancel().catch(() => {});
  });
});
