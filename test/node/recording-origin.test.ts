/**
 * Issue #30: the recording origin (`src/check/origin.ts`), called directly (no proxy in front): each behaviour answers
 * as its header asks and is recorded as it really went (what was sent, how it ended), and the reconcile endpoint
 * tells the truth for the credential it is asked with.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_HEADER,
  EXECUTION_HEADER,
  type Execution,
  parseBehaviour,
  RECONCILE_HEADER,
  type RecordingOrigin,
  startRecordingOrigin,
  TAG_HEADER,
} from '../../src/check/origin.ts';

let origin: RecordingOrigin;
beforeAll(async () => {
  origin = await startRecordingOrigin();
});
afterAll(() => origin.close());

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
let tags = 0;

/** Sends a POST with a behaviour; returns the answer (or the failure) and the execution the origin recorded for it. */
async function call(behaviour: string, { key = 'k', credential = 'Bearer one' } = {}) {
  const tag = `t${++tags}`;
  const headers = { [BEHAVIOUR_HEADER]: behaviour, [TAG_HEADER]: tag, 'idempotency-key': key, authorization: credential };
  const answer = await fetch(`${origin.url}/api/write`, { method: 'POST', headers, body: 'body' }).then(
    async (res) => {
      try {
        return { status: res.status, headers: res.headers, body: new Uint8Array(await res.arrayBuffer()), broken: false };
      } catch {
        return { status: res.status, headers: res.headers, body: undefined, broken: true };
      }
    },
    () => undefined,
  );
  await origin.settled();
  const execution = origin.executions().find((e) => e.tag === tag) as Execution;
  return { answer, execution };
}

describe('the recording origin', () => {
  it('answers fast, slow and any status with its execution id in the header and the body, and records the exact bytes', async () => {
    for (const behaviour of ['fast', 'slow:20', 'status:503', 'status:201:10']) {
      const { answer, execution } = await call(behaviour);
      expect(answer!.status).toBe(execution.status);
      expect(answer!.headers.get(EXECUTION_HEADER)).toBe(execution.id);
      expect(JSON.parse(new TextDecoder().decode(answer!.body))).toMatchObject({ execution: execution.id });
      expect(execution).toMatchObject({ outcome: 'answered', answerSha256: sha256(answer!.body!), sentSha256: sha256(answer!.body!) });
    }
    expect((await call('status:503')).execution.ran).toBe(false);
    expect((await call('status:404')).execution.ran).toBe(true);
  });

  it('resets the connection before the status line, or after half the body, and records it so', async () => {
    const before = await call('reset-before-status');
    expect(before.answer).toBeUndefined();
    expect(before.execution).toMatchObject({ outcome: 'reset-before-status', headersAt: null, sentBytes: 0, ran: true });
    const mid = await call('reset-mid-body');
    expect(mid.answer).toMatchObject({ status: 200, broken: true });
    expect(mid.execution.outcome).toBe('reset-mid-body');
    expect(mid.execution.sentBytes).toBe(Math.floor(mid.execution.answerBytes / 2));
  });

  it('streams server-sent events and big bodies whose every part names the execution', async () => {
    const sse = await call('sse:3:10');
    const text = new TextDecoder().decode(sse.answer!.body);
    expect(text.match(new RegExp(sse.execution.id, 'g'))).toHaveLength(3);
    const big = await call('big:100000:chunked');
    expect(big.answer!.body!.byteLength).toBe(100_000);
    expect(big.answer!.headers.get('content-length')).toBeNull();
    expect(sha256(big.answer!.body!)).toBe(big.execution.answerSha256);
  });

  it('holds an execution until it is released', async () => {
    const held = call('hold:h1');
    await expect.poll(() => origin.executions().some((e) => e.behaviour === 'hold:h1' && e.headersAt === null)).toBe(true);
    origin.release('h1');
    expect((await held).execution.outcome).toBe('answered');
  });

  it('reconciles truthfully, per credential and key: the latest execution when it ran, else 404', async () => {
    const ask = (key: string, credential = 'Bearer two') =>
      fetch(`${origin.url}/_origin/reconcile/${key}`, { headers: { authorization: credential } });
    expect((await ask('r1')).status).toBe(404);
    const ran = await call('fast', { key: 'r1', credential: 'Bearer two' });
    const answer = await ask('r1');
    expect(answer.status).toBe(200);
    expect(answer.headers.get(EXECUTION_HEADER)).toBe(ran.execution.id);
    expect(await answer.json()).toMatchObject({ ran: true, execution: ran.execution.id, status: 200 });
    expect((await ask('r1', 'Bearer three')).status).toBe(404);
    await call('status:503', { key: 'r1', credential: 'Bearer two' });
    const failed = await ask('r1');
    expect(failed.status).toBe(404);
    const reconciliation = origin.reconciliations().find((q) => q.id === failed.headers.get(RECONCILE_HEADER));
    expect(reconciliation).toMatchObject({ key: 'r1', status: 404, execution: null });
    expect(origin.executions().filter((e) => e.path.startsWith('/_origin/'))).toEqual([]);
  });

  it('refuses a behaviour it does not know with 400, and parses the ones it does', () => {
    expect(parseBehaviour('sse:3:10')).toEqual({ kind: 'sse', events: 3, ms: 10 });
    expect(parseBehaviour(undefined)).toEqual({ kind: 'fast' });
    expect(parseBehaviour('status:99')).toBeTypeOf('string');
    expect(parseBehaviour('teleport')).toBeTypeOf('string');
  });
});
