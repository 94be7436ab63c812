/**
 * Path parameters cannot step outside ORIGIN_URL's base path (issue #20, finding 4): Tomcat and Jetty drop what
 * follows `;` in a segment before they resolve dot segments, so `..;` is `..` to them.
 */
import { describe, expect, it } from 'vitest';
import { expectProblem, newKey, originCalls, originPathCalls, originUrl, sendWith } from './helpers';

const vars = { ORIGIN_URL: `${originUrl}/echo/base` };

describe('dot segments with path parameters under a base path', () => {
  it.each(['/..;/..;/manager/html', '/..;jsessionid=1/admin', '/.;/x', '/a/..%3B/b', '/a/%2e%2e%3bx/b', '/..;%E0/x'])(
    'refuses %s with 400 path_invalid, read or keyed write, without calling the origin',
    async (path) => {
      await expectProblem(await sendWith(vars, path, { method: 'GET' }), 400, 'path_invalid');
      const key = newKey();
      await expectProblem(await sendWith(vars, path, { key, body: 'x' }), 400, 'path_invalid');
      expect(await originCalls(key)).toBe(0);
      expect(await originPathCalls(`/echo/base${path}`)).toBe(0);
    },
  );

  it('forwards a path parameter on an ordinary segment, and a name that only starts with dots', async () => {
    for (const path of ['/items;v=2/1', '/...;x', '/..a;b']) {
      const res = await sendWith(vars, path, { method: 'GET' });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { url: string }).url).toBe(`/echo/base${path}`);
    }
  });
});
