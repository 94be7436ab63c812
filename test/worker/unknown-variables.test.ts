/**
 * Issue #28: a misspelt variable is never ignored. A name that looks like a setting of the proxy but is not one
 * (`ORGIN_URL`, `IDEMPOTENCY_TTL`, `--var ORIGIN_URL=…` with `=`) is refused with `configuration_invalid`, naming it and
 * the closest known name, before anything is forwarded or stored; every problem of a configuration is reported, not
 * only the first; and an invalid optional feature (the admin token) turns only that feature off.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, readConfig } from '../../src/proxy/config';
import { KNOWN_NAMES, unknownVariables } from '../../src/proxy/variables';
import { expectProblem, newKey, originPathCalls, sendWith } from './helpers';

afterEach(() => vi.restoreAllMocks());

const ORIGIN = 'https://api.example.com';

/** The messages of a refused configuration, one per problem. */
function problemsOf(vars: Record<string, unknown>): string[] {
  try {
    readConfig(vars);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((problem) => problem.message);
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(Object.keys(vars))} to be refused`);
}

describe('a name like a setting that is not one', () => {
  it.each([
    ['ORGIN_URL', 'ORGIN_URL is not a setting of the proxy (did you mean ORIGIN_URL?)'],
    ['origin_url', 'origin_url is not a setting of the proxy (did you mean ORIGIN_URL?)'],
    ['IDEMPOTENCY_TTL', 'IDEMPOTENCY_TTL is not a setting of the proxy (did you mean IDEMPOTENCY_TTL_SECONDS?)'],
    ['REQUIRE_IDEMPOTENCY_KEYS', 'REQUIRE_IDEMPOTENCY_KEYS is not a setting of the proxy (did you mean REQUIRE_IDEMPOTENCY_KEY?)'],
    ['MAX_BODY_SIZE', 'MAX_BODY_SIZE is not a setting of the proxy'],
    ['LOG_LEVEL', 'LOG_LEVEL is not a setting of the proxy'],
    ['IDEMPOTENCY_SOMETHING_NEW', 'IDEMPOTENCY_SOMETHING_NEW is not a setting of the proxy'],
  ])('%s is refused, naming it and the closest known name', (name, message) => {
    expect(problemsOf({ ORIGIN_URL: ORIGIN, [name]: 'x' })).toEqual([message]);
  });

  it("names `--var NAME=VALUE` by its name only, never the value it swallowed, and says wrangler's form", () => {
    const [message] = problemsOf({ ORIGIN_URL: ORIGIN, 'LOG_HASH_SECRET=secret-part': 'rest' });
    expect(message).toBe(
      "LOG_HASH_SECRET… is not a setting of the proxy (did you mean LOG_HASH_SECRET?); wrangler's --var takes NAME:VALUE, not NAME=VALUE",
    );
    expect(message).not.toContain('secret-part');
  });

  it('leaves every known name and the operator’s own bindings alone', () => {
    const vars = Object.fromEntries(KNOWN_NAMES.map((name) => [name, undefined]));
    expect(unknownVariables({ ...vars, ASSETS: {}, MY_API_KEY: 'x', TEST_RATE_LIMITER: {}, ORIGIN: 'x' })).toEqual([]);
  });

  it('answers every request with configuration_invalid naming it, and forwards nothing', async () => {
    const path = `/echo/misspelt-${newKey()}`;
    for (const init of [{ method: 'GET' }, { key: newKey(), body: 'x' }]) {
      const body = await expectProblem(await sendWith({ ORGIN_URL: 'http://127.0.0.1:9' }, path, init), 500, 'configuration_invalid');
      expect(body.detail).toContain('ORGIN_URL is not a setting of the proxy (did you mean ORIGIN_URL?)');
      expect(body.detail).not.toContain('127.0.0.1');
    }
    expect(await originPathCalls(path)).toBe(0);
  });
});

describe('every problem of a configuration', () => {
  it('is reported, not only the first', () => {
    expect(
      problemsOf({
        ORIGIN_URL: 'request',
        IDEMPOTENCY_TTL_SECONDS: 'soon',
        IDEMPOTENCY_ERROR_FORMAT: 'xml',
        IDEMPOTENCY_TLL_SECONDS: '60',
        IDEMPOTENCY_ROUTES: [{ pattern: 'no-slash' }],
        IDEMPOTENCY_ADMIN_TOKEN: 'short',
      }),
    ).toEqual([
      'IDEMPOTENCY_TLL_SECONDS is not a setting of the proxy (did you mean IDEMPOTENCY_TTL_SECONDS?)',
      'ORIGIN_HOSTS is required with ORIGIN_URL = "request"',
      'IDEMPOTENCY_TTL_SECONDS must be a whole number',
      'IDEMPOTENCY_ERROR_FORMAT must be one of problem, error_object',
      expect.stringContaining('IDEMPOTENCY_ROUTES[0].pattern'),
      'IDEMPOTENCY_ADMIN_TOKEN must be at least 32 characters long',
    ]);
  });
});

describe('an invalid optional feature', () => {
  it('turns only that feature off, with one log line per configuration', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: unknown) => void lines.push(String(line)));
    expect(readConfig({ ORIGIN_URL: ORIGIN, IDEMPOTENCY_ADMIN_TOKEN: 'short' }).disabled.map((error) => error.variables)).toEqual([
      ['IDEMPOTENCY_ADMIN_TOKEN'],
    ]);
    const vars = { IDEMPOTENCY_ADMIN_TOKEN: 'too-short-a-token' };
    for (let i = 0; i < 3; i++) expect((await sendWith(vars, '/echo/admin-off', { key: newKey(), body: 'x' })).status).toBe(200);
    await expectProblem(await sendWith(vars, `/_idempotency/admin/keys/${newKey()}`, { method: 'GET' }), 500, 'configuration_invalid');
    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(logged).toEqual([
      {
        event: 'configuration_invalid',
        variables: ['IDEMPOTENCY_ADMIN_TOKEN'],
        message: 'IDEMPOTENCY_ADMIN_TOKEN must be at least 32 characters long',
        disabled: true,
      },
    ]);
    expect(lines.join()).not.toContain('too-short-a-token');
  });
});
