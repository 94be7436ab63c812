/**
 * Issue #28: a configuration can be checked before it is deployed. `npm run check:config` reads a wrangler config with
 * wrangler's own reader and runs the proxy's real configuration reader over it, printing every problem; a dry-run
 * deploy alone passed configurations that answer 500 to every request.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'check-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the command as `npm run check:config` does: its output and exit code. */
function checkConfig(...args: string[]): { output: string; code: number } {
  try {
    return { output: execFileSync(process.execPath, ['scripts/check-config.ts', ...args], { encoding: 'utf8', stdio: 'pipe' }), code: 0 };
  } catch (error) {
    const failed = error as { stdout: string; status: number };
    return { output: failed.stdout, code: failed.status };
  }
}

/** A wrangler config in a file of its own. */
function config(name: string, toml: string): string {
  const path = join(dir, `${name}.toml`);
  writeFileSync(path, `name = "proxy"\nmain = "src/proxy/index.ts"\ncompatibility_date = "2026-11-01"\n${toml}`);
  return path;
}

describe('npm run check:config', () => {
  it('passes this repository’s wrangler.toml, top level and every environment', () => {
    for (const args of [[], ['--env', 'staging'], ['--env', 'production']]) {
      const { output, code } = checkConfig(...args);
      expect(code, output).toBe(0);
      expect(output).toContain('ok: wrangler.toml');
    }
  });

  it('prints every problem of a configuration that would answer 500 to every request, and exits 1', () => {
    const path = config(
      'broken',
      `[vars]
ORIGIN_URL = "request"
ORGIN_URL = "https://api.example.com"
IDEMPOTENCY_TTL_SECONDS = "1 day"
LOG_HASH_SECRET = "short"
[[vars.IDEMPOTENCY_ROUTES]]
pattern = "/payments/*"
ttl_seconds = "forever"
[[durable_objects.bindings]]
name = "IDEMPOTENCY"
class_name = "IdempotencyRecord"
[[ratelimits]]
name = "IDEMPOTENCY_RATE_LIMITER"
namespace_id = "1001"
simple = { limit = 100, period = 60 }
`,
    );
    const { output, code } = checkConfig('--config', path);
    expect(code).toBe(1);
    expect(output).toContain('5 problems');
    for (const problem of [
      'ORGIN_URL is not a setting of the proxy (did you mean ORIGIN_URL?)',
      'ORIGIN_HOSTS is required with ORIGIN_URL = "request"',
      'IDEMPOTENCY_TTL_SECONDS must be a whole number',
      'LOG_HASH_SECRET must be at least 16 characters long',
      'IDEMPOTENCY_ROUTES[0].ttl_seconds: must be a whole number',
    ])
      expect(output).toContain(`- ${problem}`);
    // The rate limiter and the namespace are bindings the proxy knows; no value is printed.
    expect(output).not.toContain('IDEMPOTENCY_RATE_LIMITER');
    expect(output).not.toContain('api.example.com');
  });

  it('checks the environment it is given, not the top level', () => {
    const path = config(
      'environments',
      `[vars]
ORIGIN_URL = "https://api.example.com"
[env.production.vars]
ORIGIN_URL = "https://api.example.com"
IDEMPOTENCY_ERROR_FORMAT = "xml"
`,
    );
    expect(checkConfig('--config', path).code).toBe(0);
    const { output, code } = checkConfig('--config', path, '--env', 'production');
    expect(code).toBe(1);
    expect(output).toContain('- IDEMPOTENCY_ERROR_FORMAT must be one of problem, error_object');
  });
});
