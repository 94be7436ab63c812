import { describe, expect, it } from 'vitest';
import { MAX_KEY_LENGTH, describeKeyError, parseIdempotencyKey } from '../../src/shared/key';

describe('parseIdempotencyKey()', () => {
  it.each([
    ['7c52a3f0-3b8c-4e3d-aa1c-c8a7f4d4c121', '7c52a3f0-3b8c-4e3d-aa1c-c8a7f4d4c121'],
    ['stripe-charge-ch_123', 'stripe-charge-ch_123'],
    ['"quoted-key"', 'quoted-key'],
    ['"with\\"escape\\""', 'with"escape"'],
    ['!~', '!~'],
    ['k'.repeat(MAX_KEY_LENGTH), 'k'.repeat(MAX_KEY_LENGTH)],
  ])('accepts %j as %j', (raw, key) => {
    expect(parseIdempotencyKey(raw)).toEqual({ ok: true, key });
  });

  it.each([
    ['', 'empty'],
    ['""', 'empty'],
    ['k'.repeat(MAX_KEY_LENGTH + 1), 'too_long'],
    ['a, b', 'bad_characters'],
    ['\u00e9', 'bad_characters'],
    ['"unterminated', 'bad_structured_string'],
    ['"a";x=1', 'bad_structured_string'],
  ])('rejects %j (%s) with a sentence for the client', (raw, reason) => {
    const result = parseIdempotencyKey(raw);
    expect(result).toMatchObject({ ok: false, error: { reason } });
    if (!result.ok) expect(describeKeyError(result.error)).toMatch(/Idempotency-Key/);
  });
});
