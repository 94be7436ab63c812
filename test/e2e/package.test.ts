/**
 * The package as a Hono user gets it: `npm pack`, the tarball installed into a fresh Worker project in a
 * temporary directory, type-checked there with strict settings (and without skipLibCheck), bundled with
 * `wrangler deploy --dry-run`, served with `wrangler dev`, sent the same keyed POST twice, and checked by the
 * package's bin (`npx idempotency-check`). Its second entry,
 * `idempotency-proxy/client`, is type-checked in the same project for Workers, for Node (`@types/node` only)
 * and for browsers (the DOM library), and a Node script resolving it from the package charges the served app
 * twice under one key.
 */
import { execFileSync, spawnSync } from 'node:child_process';
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
const npmCommand = (args: string[]): [string, string[]] =>
  process.env['npm_execpath'] ? [process.execPath, [process.env['npm_execpath'], ...args]] : ['npm', args];
const npmEnv = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
const npm = (args: string[], cwd: string) => execFileSync(...npmCommand(args), { cwd, encoding: 'utf8', env: npmEnv });

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

// The client from a Worker: one more source file of the app, type-checked with it.
const WORKER_CLIENT = `import { idempotentFetch, type IdempotencyInfo } from '${pkg.name}/client';

export async function relay(request: Request, env: { UPSTREAM: Fetcher }): Promise<IdempotencyInfo | undefined> {
  const res = await idempotentFetch(request, { idempotency: { retries: 2, fetch: (r) => env.UPSTREAM.fetch(r) } });
  return idempotentFetch.info(res);
}
`;

// The client from Node (run by the test, and type-checked against @types/node without the DOM library) and
// from a browser page (type-checked against the DOM library).
const NODE_CLIENT = `import { idempotentFetch, type IdempotentRequestInit } from '${pkg.name}/client';

const init: IdempotentRequestInit = {
  method: 'POST',
  headers: { authorization: 'Bearer e2e-token', 'content-type': 'application/json' },
  body: '{"amount":700}',
};
let key = '';
const first = await idempotentFetch(String(process.argv[2]), { ...init, idempotency: { onKey: (k) => void (key = k) } });
const second = await idempotentFetch(String(process.argv[2]), { ...init, idempotency: { key, attemptTimeoutMs: 30_000 } });
console.log(JSON.stringify({ key, info: [idempotentFetch.info(first), idempotentFetch.info(second)], bodies: [await first.json(), await second.json()] }));
`;

const BROWSER_CLIENT = `import { idempotentFetch } from '${pkg.name}/client';

const stop = new AbortController();
document.querySelector('button')?.addEventListener('click', () => stop.abort());
export const res: Promise<Response> = idempotentFetch(new URL('/api/charges', location.href), {
  method: 'POST',
  body: new FormData(),
  signal: stop.signal,
  idempotency: { onRetry: ({ attempt, delayMs }) => console.log(attempt, delayMs) },
});
`;

const strict = { target: 'ES2022', strict: true, skipLibCheck: false, noEmit: true };
const NODE_TSCONFIG = {
  compilerOptions: { ...strict, lib: ['ES2022'], module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'] },
  include: ['node'],
};
const BROWSER_TSCONFIG = {
  compilerOptions: { ...strict, lib: ['ES2022', 'DOM'], module: 'ESNext', moduleResolution: 'Bundler', types: [] },
  include: ['browser'],
};

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
  const app = join(project, 'app');
  for (const dir of ['src', 'node', 'browser']) mkdirSync(join(app, dir), { recursive: true });
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({
      name: 'packed-consumer',
      private: true,
      type: 'module',
      dependencies: { [pkg.name]: `file:${tarball}`, hono: version('hono') },
      devDependencies: { '@cloudflare/workers-types': version('@cloudflare/workers-types'), '@types/node': version('@types/node') },
    }),
  );
  writeFileSync(join(app, 'src/index.ts'), APP);
  writeFileSync(join(app, 'wrangler.toml'), WRANGLER);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
  writeFileSync(join(app, 'src/relay.ts'), WORKER_CLIENT);
  writeFileSync(join(app, 'node/charge.mts'), NODE_CLIENT);
  writeFileSync(join(app, 'tsconfig.node.json'), JSON.stringify(NODE_TSCONFIG));
  writeFileSync(join(app, 'browser/page.ts'), BROWSER_CLIENT);
  writeFileSync(join(app, 'tsconfig.browser.json'), JSON.stringify(BROWSER_TSCONFIG));
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
    expect(files).toEqual([
      'CHANGELOG.md',
      'LICENSE',
      'README.md',
      'dist/check.js',
      'dist/client.d.ts',
      'dist/client.js',
      'dist/index.d.ts',
      'dist/index.js',
      'package.json',
    ]);
  });

  it("installs with hono as a peer: the app's own copy, not a second one", () => {
    const nested = join(project, 'app/node_modules', pkg.name, 'node_modules/hono');
    expect(() => readFileSync(join(nested, 'package.json'))).toThrow();
  });

  it("type-checks in the user's project with strict settings and without skipLibCheck, the client for Workers, Node and browsers", () => {
    for (const config of ['tsconfig.json', 'tsconfig.node.json', 'tsconfig.browser.json']) {
      execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(project, 'app', config)], {
        encoding: 'utf8',
      });
    }
  });

  it('keeps the client free of imports: nothing of hono, the runtime or any dependency', () => {
    const client = readFileSync(join(project, 'app/node_modules', pkg.name, 'dist/client.js'), 'utf8');
    expect(client).not.toMatch(/^\s*(import|export)\b[^;]*\bfrom\s/m);
    expect(client).not.toMatch(/\bimport\s*\(/);
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

  it('npx idempotency-check, the bin of the installed tarball, checks the served app: every check it can run passes', () => {
    const [command, args] = npmCommand([
      'exec',
      '--offline',
      '--',
      'idempotency-check',
      `${worker!.url}/api/charges`,
      '-H',
      'Authorization: Bearer e2e-token',
      '--as',
      'Authorization: Bearer e2e-other-token',
      '-d',
      '{"amount":500}',
      '--json',
    ]);
    const run = spawnSync(command, args, { cwd: join(project, 'app'), encoding: 'utf8', env: npmEnv });
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stderr).toMatch(/Sends real writes: at most \d+ POST requests/);
    const report = JSON.parse(run.stdout) as { checks: { name: string; status: string }[]; failed: number };
    expect(report.checks.filter((check) => check.status === 'fail')).toEqual([]);
    expect(report.checks.filter((check) => check.status === 'pass').map((check) => check.name)).toEqual([
      'replay',
      'mismatch',
      'concurrent',
      'read_ignores_key',
      'key_too_long',
      'scope',
      'retry_advice',
      'expiry_advertised',
    ]);
  });

  it('from Node, idempotency-proxy/client resolves and charges the served app once under one key', () => {
    // Node 22 strips the script's types itself; the client only needs what Node 20 has.
    const out = execFileSync(process.execPath, [join(project, 'app/node/charge.mts'), `${worker!.url}/api/charges`], {
      cwd: join(project, 'app'),
      encoding: 'utf8',
    });
    const { key, info, bodies } = JSON.parse(out) as { key: string; info: unknown[]; bodies: { run: number }[] };
    expect(info).toMatchObject([
      { key, attempts: 1, replayed: false },
      { key, attempts: 1, replayed: true },
    ]);
    expect(bodies[1]).toEqual(bodies[0]);
  });
});
