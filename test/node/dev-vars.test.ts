/**
 * Issue #28: tests ignore a developer's `.dev.vars`. wrangler reads it beside the config for every local Worker, and an
 * `IDEMPOTENCY_ADMIN_TOKEN` there (where wrangler.toml says secrets go) made a test fail. The workerd tests bind back
 * every name it sets (`test/dev-vars.ts`, used by vitest.config.ts); the end-to-end tests give `wrangler dev` an empty
 * `--env-file` instead (`test/e2e/harness.ts`).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { devVarsUndone } from '../dev-vars.ts';

const dir = mkdtempSync(join(tmpdir(), 'dev-vars-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('devVarsUndone()', () => {
  it('binds every name of a .dev.vars back to its [vars] value, or to "" (unset)', () => {
    const config = join(dir, 'wrangler.toml');
    writeFileSync(config, 'name = "p"\nmain = "index.ts"\ncompatibility_date = "2026-11-01"\n[vars]\nLOG_REQUESTS = "true"\n');
    expect(devVarsUndone(config)).toEqual({});
    writeFileSync(join(dir, '.dev.vars'), 'IDEMPOTENCY_ADMIN_TOKEN=short\nLOG_REQUESTS=false\nORGIN_URL=http://elsewhere\n');
    expect(devVarsUndone(config)).toEqual({ IDEMPOTENCY_ADMIN_TOKEN: '', LOG_REQUESTS: 'true', ORGIN_URL: '' });
  });
});
