import { cloudflareTest } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';
import { devVarsUndone } from './test/dev-vars.ts';

export default defineConfig({
  test: {
    // The object and the service entrypoint refuse a malformed RPC argument by throwing to their caller, and
    // tests do that on purpose. workerd also reports such a throw as uncaught in the callee (which runs in the
    // test isolate); those reports, and only those, are not test failures.
    onUnhandledError: (error) => !/^Idempotency(Record|Service): /.test(error.message),
    projects: [
      {
        // Unit and integration tests inside workerd, against real Durable Object storage and alarms.
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: './wrangler.toml' },
            remoteBindings: false,
            miniflare: {
              bindings: {
                // A developer's .dev.vars (or .env) is not part of any test.
                ...devVarsUndone('./wrangler.toml'),
                ORIGIN_URL: inject('originUrl'),
                ORIGIN_TIMEOUT_MS: '1500',
                ORIGIN_LEASE_MS: '4000',
                MAX_BODY_BYTES: String(10 * 1024 * 1024),
              },
              // Real rate-limiting bindings for the rate limit tests (bound as IDEMPOTENCY_RATE_LIMITER and
              // IDEMPOTENCY_IP_RATE_LIMITER there only: the proxy limits whenever such a binding exists).
              ratelimits: {
                TEST_RATE_LIMITER: { namespace_id: '1001', simple: { limit: 3, period: 60 } },
                TEST_IP_RATE_LIMITER: { namespace_id: '1002', simple: { limit: 3, period: 60 } },
              },
            },
          })),
        ],
        test: {
          name: 'worker',
          // The Worker logs one JSON line per request; show console output only for failing tests.
          silent: 'passed-only',
          include: ['test/worker/**/*.test.ts'],
          globalSetup: ['test/origin/global-setup.ts'],
          testTimeout: 30_000,
        },
      },
      {
        // Plain Node: checks of the repository itself (docs against tests), the client's rules against a real
        // origin without the proxy, and idempotency-check against layers other than the proxy (quick, no wrangler).
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts', 'test/client/**/*.test.ts', 'test/check/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
        },
      },
      {
        // End-to-end tests in Node: the proxy under `wrangler dev` as users run it, a real origin,
        // real processes (crashes, restarts). One file at a time: the machine has 2 cores.
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 90_000,
        },
      },
    ],
  },
});
