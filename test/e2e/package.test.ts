/**
 * The package as a Hono user gets it: `npm pack`, the tarball installed into a fresh Worker project in a
 * temporary directory, type-checked there with strict settings (and without skipLibCheck), bundled with
 * `wrangler deploy --dry-run`, served with `wrangler dev`, and sent the same keyed POST twice.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newStateDir, removeDir, type RunningProxy, send, startProxy } from './harness';

const ROOT = resolve(import.meta.dirname, '../..');
const bin = (name: string) => join(ROOT, 'node_modules/.bin', name);
const version = (name: string) =>
  (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
const npm = (args: string[], cwd: string) =>
  execFileSync(
    process.env['npm_execpath'] ? process.execPath : 'npm',
    [...(process.env['npm_execpath'] ? [process.env['npm_execpath']] : []), ...args],
    {
      cwd,
      encoding: 'utf8',
      env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' },
    },
  );

const APP = `import { Hono } from 'hono';
import { idempotency, IdempotencyRecord, type IdempotencyOptions } from '${pkg.name}';

export { IdempotencyRecord };

interface Env {
  IDEMPOTENCY: DurableObjectNamespace<IdempotencyRecord>;
}

let runs = 0;
const options: IdempotencyOptions = { ttlSeconds: 3600, fingerprint: 'json' };
const app = new Hono<{ Bindings: Env }>();
app.use('/api/*', idempotency(options));
app.post('/api/charges', async (c) => c.json({ charged: (await c.req.json<{ amount: number }>()).amount, run: ++runs }, 201));
export default app;
`;

const WRANGLER = `name = "packed-consumer"
main = "src/index.ts"
compatibility_date = "2026-11-01"
send_metrics = false

[[durable_objects.bindings]]
name = "IDEMPOTENCY"
class_name = "IdempotencyRecord"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["IdempotencyRecord"]
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    lib: ['ES2022'],
    module: 'ESNext',
    moduleResolution: 'Bundler',
    types: ['@cloudflare/workers-types'],
    strict: true,
    skipLibCheck: false,
    noEmit: true,
  },
  include: ['src'],
};

let project: string;
let tarball: string;
let files: string[];
let worker: RunningProxy | undefined;
let stateDir: string | undefined;

beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), 'idem-packed-'));
  // Built here rather than by `prepack`, whose output would mix with the JSON `npm pack` prints.
  npm(['run', 'build', '--silent'], ROOT);
  const [packed] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', project], ROOT)) as [
    { filename: string; files: { path: string }[] },
  ];
  tarball = join(project, packed.filename);
  files = packed.files.map((file) => file.path).sort();
  mkdirSync(join(project, 'app/src'), { recursive: true });
  const app = join(project, 'app');
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({
      name: 'packed-consumer',
      private: true,
      type: 'module',
      dependencies: { [pkg.name]: `file:${tarball}`, hono: version('hono') },
      devDependencies: { '@cloudflare/workers-types': version('@cloudflare/workers-types') },
    }),
  );
  writeFileSync(join(app, 'src/index.ts'), APP);
  writeFileSync(join(app, 'wrangler.toml'), WRANGLER);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
  // From npm's cache, which `npm ci` of this repository has filled with every package the app needs.
  npm(['install', '--prefer-offline', '--ignore-scripts'], app);
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  if (stateDir) removeDir(stateDir);
  if (project) removeDir(project);
});

describe('the packed package', () => {
  it('holds the build, the README, the license and the changelog, and nothing else', () => {
    expect(files).toEqual(['CHANGELOG.md', 'LICENSE', 'README.md', 'dist/index.d.ts', 'dist/index.js', 'package.json']);
  });

  it("installs with hono as a peer: the app's own copy, not a second one", () => {
    const nested = join(project, 'app/node_modules', pkg.name, 'node_modules/hono');
    expect(() => readFileSync(join(nested, 'package.json'))).toThrow();
  });

  it("type-checks in the user's project with strict settings and without skipLibCheck", () => {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(project, 'app/tsconfig.json')], {
      encoding: 'utf8',
    });
  });

  it('bundles with wrangler deploy --dry-run', () => {
    const out = execFileSync(
      bin('wrangler'),
      ['deploy', '--dry-run', '--outdir', join(project, 'out'), '--config', join(project, 'app/wrangler.toml')],
      {
        encoding: 'utf8',
        env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
      },
    );
    expect(out).toContain('IdempotencyRecord');
  });

  it('serves: the same keyed POST twice runs once, the second answer is a replay', async () => {
    stateDir = newStateDir();
    worker = await startProxy({ originUrl: null, config: join(project, 'app/wrangler.toml'), stateDir });
    const key = randomUUID();
    const charge = (body: string) => send(worker!.url, '/api/charges', { key, body, headers: { 'content-type': 'application/json' } });
    const first = await charge('{"amount":500,"currency":"EUR"}');
    expect(first.status).toBe(201);
    const replay = await charge('{ "currency": "EUR", "amount": 500 }');
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    const [stored, replayed] = [(await first.json()) as { run: number }, await replay.json()];
    expect(replayed).toEqual(stored);
    expect(stored.run).toBe(1);
  });
});
