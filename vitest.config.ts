import { cloudflareTest } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        // Unit and integration tests inside workerd, against real Durable Object storage and alarms.
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: './wrangler.toml' },
            remoteBindings: false,
            miniflare: {
              bindings: {
                ORIGIN_URL: inject('originUrl'),
                ORIGIN_TIMEOUT_MS: '1500',
                ORIGIN_LEASE_MS: '4000',
                MAX_BODY_BYTES: String(10 * 1024 * 1024),
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
