/**
 * When the Durable Object cannot be reached or fails, keyed writes fail closed (503
 * idempotency_unavailable with Retry-After) and never fall through to the origin. Stub calls are
 * retried only when the platform marks the error retryable and not overloaded.
 *
 * The failing namespace below stands in for the platform (overload, unreachable object), not for the
 * code under test: the Worker's routing, retry and error mapping are real.
 */
import { describe, expect, it } from 'vitest';
import { isRetryable } from '../../src/middleware/retry';
import { interceptExecute, newKey, originCalls, expectProblem, sendWith } from './helpers';

function failingNamespace(error: unknown) {
  const calls = { get: 0, execute: 0 };
  const namespace = {
    idFromName: (name: string) => ({ name }),
    get: () => {
      calls.get++;
      return {
        execute: async () => {
          calls.execute++;
          throw error;
        },
      };
    },
  };
  return { namespace, calls };
}

const platformError = (message: string, flags: { retryable?: boolean; overloaded?: boolean }) => Object.assign(new Error(message), flags);

describe('an unavailable idempotency store', () => {
  it.each([
    ['a retryable error, retried with a fresh stub each time', { retryable: true }, 3],
    ['an overloaded object, not retried', { retryable: true, overloaded: true }, 1],
    ['a non-retryable error, not retried', {}, 1],
  ])('answers 503 with Retry-After for %s, without calling the origin', async (_, flags, tries) => {
    const key = newKey();
    const { namespace, calls } = failingNamespace(platformError('Durable Object is overloaded.', flags));
    const res = await sendWith({ IDEMPOTENCY: namespace }, '/echo/unavailable', { key, body: 'x' });
    expect(res.headers.get('retry-after')).toBe('1');
    await expectProblem(res, 503, 'idempotency_unavailable');
    expect(calls).toEqual({ get: tries, execute: tries });
    expect(await originCalls(key)).toBe(0);
  });

  it('recovers when a retryable error clears up', async () => {
    const key = newKey();
    let failures = 1;
    const flaky = interceptExecute((spec, execute) =>
      failures-- > 0 ? Promise.reject(platformError('Network connection lost.', { retryable: true })) : execute(spec),
    );
    const res = await sendWith({ IDEMPOTENCY: flaky }, '/echo/flaky-do', { key, body: 'x' });
    expect(res.status).toBe(200);
    expect(await originCalls(key)).toBe(1);
  });

  it('classifies platform errors', () => {
    expect(isRetryable(platformError('x', { retryable: true }))).toBe(true);
    expect(isRetryable(platformError('x', { retryable: true, overloaded: true }))).toBe(false);
    expect(isRetryable(platformError('x', {}))).toBe(false);
    expect(isRetryable('not an error')).toBe(false);
  });
});
