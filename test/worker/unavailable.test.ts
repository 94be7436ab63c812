/**
 * When the Durable Object cannot be reached or fails, keyed writes fail closed (503 idempotency_unavailable with
 * Retry-After) and never fall through to the origin. Calls are retried only when the platform marks the error
 * retryable and not overloaded, and `begin()` never.
 *
 * Real failures where workerd can produce them (a storage call SQLite refuses; a reset object, in
 * record.test.ts). The platform's `retryable` and `overloaded` errors cannot be produced locally: for those, and
 * only those, `bindingEdge` stands in at the binding's edge, in front of the real objects.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../../src/middleware';
import { isRetryable } from '../../src/record/stub';
import {
  type RecordMethod,
  bindingEdge,
  expectProblem,
  newKey,
  originCalls,
  originUrl,
  recordStub,
  refuseKvWrites,
  sendWith,
} from './helpers';

const platformError = (message: string, flags: { retryable?: boolean; overloaded?: boolean }) => Object.assign(new Error(message), flags);

/** The real objects behind an edge that fails the first `failures` calls of `method` with `error`. */
function failing(method: RecordMethod, error: Error, failures = Infinity) {
  const calls: Record<string, number> = {};
  const namespace = bindingEdge((called, call) => {
    calls[called] = (calls[called] ?? 0) + 1;
    return called === method && calls[called]! <= failures ? Promise.reject(error) : call();
  });
  return { namespace, calls };
}

describe('an unavailable idempotency store', () => {
  it('answers 503 with Retry-After when SQLite refuses the write, without calling the origin', async () => {
    const key = newKey();
    // The object's storage refuses every write. A stand-in at the storage's edge: the record is a KV value, and local
    // workerd lets no trigger onto the KV table (SQLITE_AUTH), so the refusal cannot be a real SQLite one here.
    await runInDurableObject(await recordStub(key), (_, state) => refuseKvWrites(state, 'disk full'));
    const res = await sendWith({}, '/echo/broken-storage', { key, body: 'x' });
    expect(res.headers.get('retry-after')).toBe('1');
    await expectProblem(res, 503, 'idempotency_unavailable');
    expect(await originCalls(key)).toBe(0);
  });

  it.each([
    ['a retryable error, retried with a fresh stub each time', { retryable: true }, 3],
    ['an overloaded object, not retried', { retryable: true, overloaded: true }, 1],
    ['a non-retryable error, not retried', {}, 1],
  ])('answers 503 with Retry-After for %s, without calling the origin', async (_, flags, tries) => {
    const key = newKey();
    const { namespace, calls } = failing('execute', platformError('Durable Object is overloaded.', flags));
    const res = await sendWith({ IDEMPOTENCY: namespace }, '/echo/unavailable', { key, body: 'x' });
    expect(res.headers.get('retry-after')).toBe('1');
    await expectProblem(res, 503, 'idempotency_unavailable');
    expect(calls).toEqual({ execute: tries });
    expect(await originCalls(key)).toBe(0);
  });

  it('recovers when a retryable error clears up', async () => {
    const key = newKey();
    const { namespace, calls } = failing('execute', platformError('Network connection lost.', { retryable: true }), 1);
    expect((await sendWith({ IDEMPOTENCY: namespace }, '/echo/flaky-do', { key, body: 'x' })).status).toBe(200);
    expect(calls).toEqual({ execute: 2 });
    expect(await originCalls(key)).toBe(1);
  });

  it('never retries begin(): an answer lost on the way may have acquired the key', async () => {
    const { namespace, calls } = failing('begin', platformError('Network connection lost.', { retryable: true }), 1);
    let runs = 0;
    const app = new Hono();
    app.use(idempotency({ reporter: false }));
    app.post('*', (c) => c.text(`run ${++runs}`, 201));
    const res = await app.request(
      '/handler',
      { method: 'POST', headers: { authorization: 'Bearer t', 'idempotency-key': newKey() }, body: 'x' },
      { IDEMPOTENCY: namespace },
    );
    await expectProblem(res, 503, 'idempotency_unavailable');
    expect(calls).toEqual({ begin: 1 });
    expect(runs).toBe(0);
  });

  it('retry: false turns retries off', async () => {
    const key = newKey();
    const { namespace, calls } = failing('execute', platformError('Network connection lost.', { retryable: true }), 1);
    const app = new Hono();
    app.use(idempotency({ reporter: false, retry: false, run: { mode: 'origin', target: () => new URL(`${originUrl}/echo/no-retry`) } }));
    const res = await app.request(
      '/x',
      { method: 'POST', headers: { authorization: 'Bearer t', 'idempotency-key': key }, body: 'x' },
      { IDEMPOTENCY: namespace },
    );
    await expectProblem(res, 503, 'idempotency_unavailable');
    expect(calls).toEqual({ execute: 1 });
  });

  it('answers 500 configuration_invalid when the namespace binding is missing, without calling the handler', async () => {
    let runs = 0;
    const app = new Hono();
    app.use(idempotency({ binding: 'MISSING', reporter: false }));
    app.post('*', (c) => c.text(`run ${++runs}`));
    const res = await app.request(
      '/x',
      { method: 'POST', headers: { authorization: 'Bearer t', 'idempotency-key': newKey() }, body: 'x' },
      env,
    );
    const body = await expectProblem(res, 500, 'configuration_invalid');
    expect(body.detail).toContain('MISSING');
    expect(runs).toBe(0);
  });

  it('answers 500 internal_error, without a stack trace, when the proxy itself breaks', async () => {
    // A binding of the wrong kind makes the proxy's own code fail: the answer is a problem, nothing more.
    const res = await sendWith({ IDEMPOTENCY: 'not a namespace' }, '/echo/bug', { key: newKey(), body: 'x' });
    const body = await expectProblem(res, 500, 'internal_error');
    expect(JSON.stringify(body)).not.toMatch(/at \w+ \(|\.ts:\d+|TypeError/);
  });

  it('classifies platform errors', () => {
    expect(isRetryable(platformError('x', { retryable: true }))).toBe(true);
    expect(isRetryable(platformError('x', { retryable: true, overloaded: true }))).toBe(false);
    expect(isRetryable(platformError('x', {}))).toBe(false);
    expect(isRetryable('not an error')).toBe(false);
  });
});
