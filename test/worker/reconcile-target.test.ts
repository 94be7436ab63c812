/**
 * Issue #29, findings 6 to 8: the reconcile GET carries the client's credential, so it reaches the origin itself and
 * nothing else. A template that does not resolve to the origin's own scheme, host and port is refused (`/\host` is
 * `//host` to the URL parser), and checked again for every URL built; a key can never move it (`.` and `..` would be
 * resolved away, percent-encoded or not); and retries that share one reconcile each get an answer of their own.
 */
import { describe, expect, it } from 'vitest';
import { reconcileRequest } from '../../src/middleware/reconcile';
import { resolveOptions } from '../../src/middleware/resolve';
import type { AttemptSpec } from '../../src/record/api';
import { Rejection } from '../../src/shared/problem';
import {
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
  sendWith,
  storedRecord,
  until,
} from './helpers';

const reconciling = (template: string) => ({ IDEMPOTENCY_ON_UNKNOWN: 'reconcile', IDEMPOTENCY_RECONCILE_URL: template });

/** The code of the rejection `build` throws, or `undefined` when it throws none. */
function refusal(build: () => unknown): string | undefined {
  try {
    build();
  } catch (error) {
    if (error instanceof Rejection) return error.problem.code;
    throw error;
  }
  return undefined;
}

describe('the reconcile URL template (finding 7)', () => {
  it('is refused when it does not resolve to the origin: 500 configuration_invalid naming the variable, never its value', async () => {
    for (const template of [
      '/\\evil.example/charges/{key}',
      '/\\\\evil.example/{key}',
      '/v1/../{key}',
      '/v1/%2e%2e/{key}',
      '//evil.example/{key}',
    ]) {
      const key = newKey();
      const body = await expectProblem(
        await sendWith(reconciling(template), '/echo/reconcile-template', { key, body: 'x' }),
        500,
        'configuration_invalid',
      );
      expect(body.detail).toContain('IDEMPOTENCY_RECONCILE_URL');
      expect(JSON.stringify(body)).not.toContain('evil');
      expect(await originCalls(key)).toBe(0);
    }
    const run = { mode: 'origin' as const, target: () => 'https://api.example' };
    expect(() => resolveOptions({ run, onUnknown: 'reconcile', reconcileUrl: '/\\evil.example/{key}' })).toThrow(/reconcileUrl/);
  });

  it('is checked again when the URL is built: a template that leaves the origin is never sent', () => {
    const headers: [string, string][] = [['authorization', 'Bearer t']];
    const build = (template: string, key = 'k1') =>
      reconcileRequest(template, 'https://api.example/v1/charges', key, 'idempotency-key', headers, 'headers:authorization');
    expect(refusal(() => build('/\\evil.example/{key}'))).toBe('configuration_invalid');
    expect(build('/v1/charges/{key}/status').url).toBe('https://api.example/v1/charges/k1/status');
  });
});

describe('a key in the reconcile URL (finding 8)', () => {
  it('can never move it: with /v1/charges/{key}/status, the key ".." (and ".") is refused before anything runs', async () => {
    const headers: [string, string][] = [['authorization', 'Bearer t']];
    const build = (key: string) =>
      reconcileRequest('/v1/charges/{key}/status', 'https://api.example/x', key, 'idempotency-key', headers, 'headers:authorization');
    expect(refusal(() => build('..'))).toBe('idempotency_key_invalid');
    expect(refusal(() => build('.'))).toBe('idempotency_key_invalid');
    // Dots that make no dot segment stay as they are: the URL asks about exactly that key.
    expect(build('a..b').url).toBe('https://api.example/v1/charges/a..b/status');
    expect(build('...').url).toBe('https://api.example/v1/charges/.../status');
    expect(build('%2e%2e').url).toBe('https://api.example/v1/charges/%252e%252e/status');

    // Through the proxy: the write is refused with 400 before any record or origin call.
    const vars = reconciling('/reconcile/found/{key}/status');
    for (const key of ['..', '.']) {
      const res = await sendWith(vars, '/echo/reconcile-dots', { key, body: 'x' });
      await expectProblem(res, 400, 'idempotency_key_invalid');
    }
    expect(await originCalls('..')).toBe(0);
  });
});

describe('retries that share one reconcile (finding 6)', () => {
  const reconcileCalls = async (key: string) =>
    ((await (await fetch(`${originUrl}/__calls?reconcile=${encodeURIComponent(key)}`)).json()) as { count: number }).count;

  it('each re-join the attempt it started, with a stream of their own: both get the whole answer, two POSTs in all', async () => {
    const key = newKey();
    const path = '/slow/300/shared-reconcile';
    const stub = await recordStub(key);
    // The first attempt dies mid-flight (a reset): its outcome is unknown.
    const dead = Promise.allSettled([stub.execute(attemptSpec(key, path, { onUnknown: 'reconcile', leaseMs: 1000, timeoutMs: 1000 }))]);
    await until(async () => (await originCalls(key)) === 1, 'the first attempt to reach the origin');
    await resetObject(key);
    await dead;
    const { lease_until: leaseUntil } = (await storedRecord(key))!;
    await until(() => Date.now() > leaseUntil, 'the lease of the dead attempt to end');

    // The reconcile URL answers 404 (it never ran) once released: the retry that asked starts the attempt again.
    const hold = newHold();
    const spec: AttemptSpec = {
      ...attemptSpec(key, path, { onUnknown: 'reconcile', leaseMs: 5000, timeoutMs: 5000 }),
      reconcile: { url: `${originUrl}/reconcile/missing/charges?hold=${hold}`, headers: [['idempotency-key', key]] },
    };
    const asking = (await recordStub(key)).execute(spec);
    await until(async () => (await reconcileCalls(key)) === 1, 'the reconcile GET to reach the origin');
    const same = await recordStub(key);
    const waiting = same.execute(spec);
    // Calls on one stub arrive in order: once this lookup is answered, the second retry is waiting on the first's question.
    await same.inspect();
    await release(hold);
    const outcomes = await Promise.all([asking, waiting].map(async (outcome) => readOutcome(await outcome)));
    for (const outcome of outcomes) expect(outcome).toMatchObject({ kind: 'response', response: { status: 200 } });
    const [first, second] = outcomes.map((outcome) => (outcome.kind === 'response' ? new TextDecoder().decode(outcome.response.body) : ''));
    expect(second).toBe(first);
    expect(JSON.parse(first!)).toMatchObject({ call: 2 });
    expect(await reconcileCalls(key)).toBe(1);
    expect(await originCalls(key)).toBe(2);
  });
});
