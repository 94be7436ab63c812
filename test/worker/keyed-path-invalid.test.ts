/**
 * Under a base path (`ORIGIN_URL` with a path), a keyed write whose path could leave it is refused exactly as a
 * read is: 400 `path_invalid`, before any record exists and without an origin call.
 */
import { describe, expect, it } from 'vitest';
import { expectProblem, newKey, originCalls, originPathCalls, originUrl, sendWith, storedRecord } from './helpers';

const vars = { ORIGIN_URL: `${originUrl}/echo/base` };

describe('a keyed write with a path that could leave the base path', () => {
  it('gets 400 path_invalid: the origin is not called and no record is stored', async () => {
    for (const bad of ['a%2Fb', 'a%5Cb', '..;', '..%3B']) {
      const key = newKey();
      const path = `/keyed-${key}/${bad}/admin`;
      await expectProblem(await sendWith(vars, path, { key, body: 'x' }), 400, 'path_invalid');
      expect(await originCalls(key)).toBe(0);
      expect(await originPathCalls(`/echo/base${path}`)).toBe(0);
      expect(await storedRecord(key)).toBeUndefined();
    }
  });
});
