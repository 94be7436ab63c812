/**
 * With IDEMPOTENCY_SCOPE_HEADERS = "cookie:NAME", a request carrying that cookie twice is refused (issue #20,
 * finding 6): the scope would be one of them and the origin might act for the other.
 */
import { describe, expect, it } from 'vitest';
import { expectProblem, newKey, originCalls, sendWith } from './helpers';

const vars = { IDEMPOTENCY_SCOPE_HEADERS: 'cookie:session' };
const as = (key: string, cookie: string) => sendWith(vars, '/echo/duplicate-cookie', { key, auth: null, body: 'x', headers: { cookie } });

describe('a scope cookie sent twice', () => {
  it.each(['session=a; session=b', 'session=a; _ga=1; session=a', 'session=a, session=b', ' session =a;session=b'])(
    'refuses %j with 400 authorization_invalid, without calling the origin',
    async (cookie) => {
      const key = newKey();
      const body = await expectProblem(await as(key, cookie), 400, 'authorization_invalid');
      expect(body.detail).not.toContain('session');
      expect(await originCalls(key)).toBe(0);
    },
  );

  it('still scopes by one cookie, next to others whose names only contain it', async () => {
    const key = newKey();
    expect((await as(key, 'session=a; my_session=b; sessions=c')).status).toBe(200);
    expect((await as(key, 'session=a; my_session=z')).headers.get('idempotent-replay')).toBe('true');
    expect(await originCalls(key)).toBe(1);
  });
});
