/**
 * The client's decisions, rule by rule: whether to retry, how long the server asks to wait, when a key stops
 * protecting, and the backoff when nobody says.
 */
import { describe, expect, it } from 'vitest';
import {
  EXPIRY_MARGIN_MS,
  backoffMs,
  beforeKeyExpiry,
  keyExpiresAt,
  mayCarryCode,
  problemCodeOf,
  serverDelayMs,
  shouldRetry,
} from '../../src/client/advice.ts';

const h = (init: Record<string, string> = {}) => new Headers(init);

describe('shouldRetry', () => {
  it('follows x-should-retry, then Stripe-Should-Retry, over the status', () => {
    expect(shouldRetry(503, h({ 'x-should-retry': 'false' }), undefined)).toBe(false);
    expect(shouldRetry(400, h({ 'x-should-retry': 'true' }), undefined)).toBe(true);
    expect(shouldRetry(503, h({ 'stripe-should-retry': 'false' }), undefined)).toBe(false);
    expect(shouldRetry(500, h({ 'stripe-should-retry': 'true' }), undefined)).toBe(true);
    expect(shouldRetry(503, h({ 'x-should-retry': 'FALSE', 'stripe-should-retry': 'true' }), undefined)).toBe(false);
    // A value that is neither leaves the decision to the code and the status.
    expect(shouldRetry(503, h({ 'x-should-retry': 'maybe' }), undefined)).toBe(true);
  });

  it('never retries a key reuse, whatever a header says and with either conflict status', () => {
    expect(shouldRetry(409, h(), 'idempotency_key_reused')).toBe(false);
    expect(shouldRetry(422, h(), 'idempotency_key_reused')).toBe(false);
    expect(shouldRetry(409, h({ 'x-should-retry': 'true' }), 'idempotency_key_reused')).toBe(false);
  });

  it('reads the code when there is no header: retryable and final codes of the layer', () => {
    for (const code of ['idempotency_key_in_progress', 'idempotency_unavailable', 'origin_timeout', 'origin_unreachable', 'rate_limited']) {
      expect(shouldRetry(code === 'idempotency_key_in_progress' ? 409 : 503, h(), code)).toBe(true);
    }
    for (const code of ['response_too_large', 'origin_response_lost', 'idempotency_outcome_unknown']) {
      expect(shouldRetry(code === 'idempotency_outcome_unknown' ? 409 : 502, h(), code)).toBe(false);
    }
  });

  it('falls back to the status: 408, 429, 502, 503, 504 yes; another 409, 4xx or 500 no', () => {
    for (const status of [408, 429, 502, 503, 504]) expect(shouldRetry(status, h(), undefined)).toBe(true);
    for (const status of [200, 201, 400, 404, 409, 422, 500, 501]) expect(shouldRetry(status, h(), undefined)).toBe(false);
    expect(shouldRetry(409, h(), 'some_app_conflict')).toBe(false);
  });
});

describe('problemCodeOf and mayCarryCode', () => {
  it('reads the code of a problem document and of the error_object envelope', () => {
    expect(problemCodeOf('{"type":"t","title":"x","status":409,"detail":"d","code":"idempotency_key_reused"}')).toBe(
      'idempotency_key_reused',
    );
    expect(problemCodeOf('{"error":{"type":"idempotency_error","code":"rate_limited","message":"m","status":429}}')).toBe('rate_limited');
    for (const body of ['', 'not json', 'null', '42', '{"code":7}', '{"error":"x"}', '{"error":{"code":null}}']) {
      expect(problemCodeOf(body)).toBeUndefined();
    }
  });

  it('reads bodies only of JSON errors without advice headers and of a modest declared size', () => {
    expect(mayCarryCode(409, h({ 'content-type': 'application/problem+json' }))).toBe(true);
    expect(mayCarryCode(429, h({ 'content-type': 'application/json; charset=utf-8' }))).toBe(true);
    expect(mayCarryCode(200, h({ 'content-type': 'application/json' }))).toBe(false);
    expect(mayCarryCode(503, h({ 'content-type': 'text/html' }))).toBe(false);
    expect(mayCarryCode(503, h({ 'content-type': 'application/json', 'x-should-retry': 'true' }))).toBe(true);
    expect(mayCarryCode(503, h({ 'content-type': 'application/json', 'content-length': String(1 << 20) }))).toBe(false);
  });
});

describe('serverDelayMs', () => {
  const now = Date.parse('2026-12-02T12:00:00Z');

  it('prefers retry-after-ms, then Retry-After in seconds', () => {
    expect(serverDelayMs(h({ 'retry-after-ms': '250', 'retry-after': '9' }), now)).toBe(250);
    expect(serverDelayMs(h({ 'retry-after-ms': '12.5' }), now)).toBe(12.5);
    expect(serverDelayMs(h({ 'retry-after': '3' }), now)).toBe(3000);
    expect(serverDelayMs(h({ 'retry-after-ms': 'soon', 'retry-after': '2' }), now)).toBe(2000);
    expect(serverDelayMs(h({ 'retry-after-ms': '-5' }), now)).toBeUndefined();
  });

  it('reads a Retry-After date against the answer’s own Date header, and a past date as no wait', () => {
    expect(serverDelayMs(h({ 'retry-after': 'Wed, 02 Dec 2026 12:00:05 GMT' }), now)).toBe(5000);
    // The server's clock is 60 s behind ours: its "in 5 s" is still 5 s.
    const skewed = h({ date: 'Wed, 02 Dec 2026 11:59:00 GMT', 'retry-after': 'Wed, 02 Dec 2026 11:59:05 GMT' });
    expect(serverDelayMs(skewed, now)).toBe(5000);
    // A replay: its stored Date is 60 s old, its Age says so.
    const replayed = h({ date: 'Wed, 02 Dec 2026 11:59:00 GMT', age: '60', 'retry-after': 'Wed, 02 Dec 2026 12:00:05 GMT' });
    expect(serverDelayMs(replayed, now)).toBe(5000);
    expect(serverDelayMs(h({ 'retry-after': 'Wed, 02 Dec 2026 11:00:00 GMT' }), now)).toBe(0);
  });

  it('says nothing for no header or one it cannot read', () => {
    expect(serverDelayMs(h(), now)).toBeUndefined();
    expect(serverDelayMs(h({ 'retry-after': 'later' }), now)).toBeUndefined();
    expect(serverDelayMs(h({ 'retry-after': '-1' }), now)).toBeUndefined();
  });
});

describe('keyExpiresAt', () => {
  const now = Date.parse('2026-12-02T12:00:00Z');

  it('is Idempotency-Expires on the local clock, corrected by the answer’s Date', () => {
    expect(keyExpiresAt(h({ 'idempotency-expires': 'Thu, 03 Dec 2026 12:00:00 GMT' }), now)).toBe(now + 86_400_000);
    const skewed = h({ date: 'Wed, 02 Dec 2026 12:01:00 GMT', 'idempotency-expires': 'Wed, 02 Dec 2026 12:02:00 GMT' });
    expect(keyExpiresAt(skewed, now)).toBe(now + 60_000);
  });

  it('reads a replay’s stored Date plus its Age as the server’s clock (#28): an old Date is not taken for now', () => {
    // A replay 90 s after its first answer: Date is the first answer's, the key expires 10 s from the server's now.
    const replay = h({ date: 'Wed, 02 Dec 2026 11:58:30 GMT', age: '90', 'idempotency-expires': 'Wed, 02 Dec 2026 12:00:10 GMT' });
    expect(keyExpiresAt(replay, now)).toBe(now + 10_000);
    // Without Age the same answer would seem to leave 100 s.
    replay.delete('age');
    expect(keyExpiresAt(replay, now)).toBe(now + 100_000);
    // An Age that is not delta-seconds is ignored.
    expect(
      keyExpiresAt(h({ date: 'Wed, 02 Dec 2026 12:00:00 GMT', age: '-5', 'idempotency-expires': 'Wed, 02 Dec 2026 12:00:10 GMT' }), now),
    ).toBe(now + 10_000);
  });

  it('is undefined without the header or with an unreadable one', () => {
    expect(keyExpiresAt(h(), now)).toBeUndefined();
    expect(keyExpiresAt(h({ 'idempotency-expires': 'never' }), now)).toBeUndefined();
  });
});

describe('beforeKeyExpiry', () => {
  const now = Date.parse('2026-12-02T12:00:00Z');

  it('keeps a margin of 1 s before the expiry (HTTP dates have 1 s resolution)', () => {
    expect(EXPIRY_MARGIN_MS).toBe(1000);
    expect(beforeKeyExpiry(undefined, 60_000, now)).toBe(true);
    expect(beforeKeyExpiry(now + 5000, 3999, now)).toBe(true);
    expect(beforeKeyExpiry(now + 5000, 4000, now)).toBe(false);
    expect(beforeKeyExpiry(now + 500, 0, now)).toBe(false);
  });
});

describe('backoffMs', () => {
  it('doubles from the initial wait, keeps between half and all of it, and stops at the cap', () => {
    expect([1, 2, 3, 4].map((retry) => backoffMs(retry, 500, 8000, 0))).toEqual([250, 500, 1000, 2000]);
    expect([1, 2, 3, 4].map((retry) => backoffMs(retry, 500, 8000, 0.999999))).toEqual(
      [1, 2, 3, 4].map((r) => expect.closeTo(500 * 2 ** (r - 1), 1)),
    );
    expect(backoffMs(20, 500, 8000, 0.5)).toBe(6000);
  });
});
