/**
 * @module
 * Boots the proxy the way users run it: `wrangler dev` as a child process in its own process group, on
 * a free loopback port, with its own `--persist-to` state directory, in front of the real test origin.
 * Every process started here is stopped by its own group id.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startTestOrigin, type TestOrigin } from '../origin/server';

const ROOT = resolve(import.meta.dirname, '../..');
const WRANGLER = join(ROOT, 'node_modules/.bin/wrangler');

/** A free TCP port on 127.0.0.1 (closed again before it is handed out). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** A new, empty state directory under the system temp dir. */
export const newStateDir = (): string => mkdtempSync(join(tmpdir(), 'idem-e2e-'));

export interface ProxyOptions {
  /** ORIGIN_URL, or `null` for a Worker that has none (the consumer example). */
  originUrl: string | null;
  /** The wrangler config to run. @default the proxy's wrangler.toml */
  config?: string;
  stateDir: string;
  vars?: Record<string, string>;
  port?: number;
}

export interface RunningProxy {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Output so far (for failure messages). */
  output(): string;
  /** SIGTERM to the whole group, then waits for it to exit. */
  stop(): Promise<void>;
  /** SIGKILL to the whole group: a crash, nothing gets to clean up. */
  kill(): Promise<void>;
}

/** Starts `wrangler dev` and waits until it answers HTTP. */
export async function startProxy({ originUrl, config, stateDir, vars = {}, port }: ProxyOptions): Promise<RunningProxy> {
  const listen = port ?? (await freePort());
  const args = ['dev', '--ip', '127.0.0.1', '--port', String(listen), '--persist-to', stateDir, '--inspector-port', String(await freePort())];
  if (config) args.push('--config', config);
  for (const [name, value] of Object.entries({ ...(originUrl === null ? {} : { ORIGIN_URL: originUrl }), ...vars })) args.push('--var', `${name}:${value}`);
  const child = spawn(WRANGLER, args, {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true', NO_COLOR: '1', WRANGLER_LOG: 'log' },
  });
  let log = '';
  child.stdout?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));

  const signalGroup = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    await exited;
  };

  const url = `http://127.0.0.1:${listen}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${log}`);
    try {
      await fetch(`${url}/__ready`, { method: 'GET', signal: AbortSignal.timeout(2000) });
      break;
    } catch {
      if (Date.now() > deadline) {
        await signalGroup('SIGKILL');
        throw new Error(`wrangler dev did not become ready:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    url,
    port: listen,
    process: child,
    output: () => log,
    stop: () => signalGroup('SIGTERM'),
    kill: () => signalGroup('SIGKILL'),
  };
}

/** Every file below `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

/** Files below `dir` whose bytes contain `needle`. */
export function filesContaining(dir: string, needle: string): string[] {
  const bytes = Buffer.from(needle);
  return filesUnder(dir).filter((path) => readFileSync(path).includes(bytes));
}

/** Removes a state directory. */
export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true });

export interface SendOptions {
  method?: string;
  key?: string;
  auth?: string | null;
  body?: string | Uint8Array<ArrayBuffer>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** One request to the proxy. */
export function send(base: string, path: string, { method = 'POST', key, auth = 'Bearer e2e-token', body, headers = {}, signal }: SendOptions = {}): Promise<Response> {
  const h: Record<string, string> = { ...headers };
  if (key !== undefined) h['idempotency-key'] = key;
  if (auth !== null) h['authorization'] = auth;
  return fetch(`${base}${path}`, { method, headers: h, body: body ?? null, redirect: 'manual', ...(signal ? { signal } : {}) });
}

/** Calls seen by the origin for an Idempotency-Key, or for a path. */
export async function originCount(originUrl: string, query: { key: string } | { path: string }): Promise<number> {
  const res = await fetch(`${originUrl}/__calls?${new URLSearchParams(query)}`);
  return ((await res.json()) as { count: number }).count;
}

/** Runs `tasks` with at most `limit` in flight. */
export async function pool<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results = new Array<T>(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) {
        const index = next++;
        results[index] = await tasks[index]!();
      }
    }),
  );
  return results;
}

/** The origin and the proxy a test file runs against. */
export interface FileSetup {
  readonly origin: TestOrigin;
  readonly proxy: RunningProxy;
  readonly stateDir: string;
}

/**
 * For the calling test file: starts a test origin and the proxy in front of it (own state directory,
 * `vars` on top of the defaults) before the tests, and stops both and removes the state afterwards.
 * The returned object is filled in by `beforeAll`.
 */
export function proxyForFile(vars: Record<string, string> = {}): FileSetup {
  const setup = {} as { origin: TestOrigin; proxy: RunningProxy; stateDir: string };
  beforeAll(async () => {
    setup.origin = await startTestOrigin();
    setup.stateDir = newStateDir();
    setup.proxy = await startProxy({ originUrl: setup.origin.url, stateDir: setup.stateDir, vars });
  });
  afterAll(async () => {
    await setup.proxy?.stop();
    await setup.origin?.close();
    if (setup.stateDir) removeDir(setup.stateDir);
  });
  return setup;
}
