/**
 * @module
 * Boots the proxy the way users run it: `wrangler dev` as a child process in its own process group, on
 * the loopback port it picks itself (`--port 0`, read from its "Ready on" line), with its own
 * `--persist-to` state directory, in front of the real test origin. Every process started here is
 * stopped by its own group id (`scripts/lib/processes.ts`).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startWranglerDev } from '../../scripts/lib/processes.ts';
import { startTestOrigin, type TestOrigin } from '../origin/server';
export { releaseAt as release, whole } from '../origin/control';

/** A new, empty state directory under the system temp dir. */
export const newStateDir = (): string => mkdtempSync(join(tmpdir(), 'idem-e2e-'));

/**
 * wrangler's dev registry, where `wrangler dev` sessions find each other's Workers by name (service bindings,
 * `script_name`): one per test file, so the consumer example binds to this file's proxy, never to an
 * `idempotency-proxy` that another test run on the same machine has registered under the same name.
 */
const REGISTRY = newStateDir();
process.once('exit', () => rmSync(REGISTRY, { recursive: true, force: true }));

/**
 * An empty env file: given to `wrangler dev` with `--env-file`, it is read instead of a developer's `.dev.vars` (or
 * `.env`) beside the config, so no test runs on someone's own secrets (issue #28).
 */
const NO_DEV_VARS = join(REGISTRY, 'empty.env');
writeFileSync(NO_DEV_VARS, '');

export interface ProxyOptions {
  /** ORIGIN_URL, or `null` for a Worker that has none (the consumer example). */
  originUrl: string | null;
  /** The wrangler config to run. @default the proxy's wrangler.toml */
  config?: string;
  stateDir: string;
  vars?: Record<string, string>;
}

export interface RunningProxy {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Output so far (for failure messages). */
  output(): string;
  /** SIGTERM to the whole group, then waits until none of its processes is left. */
  stop(): Promise<void>;
  /** SIGKILL to the whole group: a crash, nothing gets to clean up. */
  kill(): Promise<void>;
}

/** Starts `wrangler dev` on a port of its choosing and waits until it reports it is ready. */
export async function startProxy({ originUrl, config = 'wrangler.toml', stateDir, vars = {} }: ProxyOptions): Promise<RunningProxy> {
  const dev = await startWranglerDev({
    config,
    persistTo: stateDir,
    vars: { ...(originUrl === null ? {} : { ORIGIN_URL: originUrl }), ...vars },
    env: { CI: 'true', WRANGLER_LOG: 'log', WRANGLER_REGISTRY_PATH: REGISTRY },
    args: ['--env-file', NO_DEV_VARS],
    timeoutMs: 60_000,
  });
  return {
    url: dev.url,
    port: dev.port,
    process: dev.group.child,
    output: () => dev.group.output(),
    stop: () => dev.group.stop(10_000),
    kill: () => dev.group.kill(),
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
export function send(
  base: string,
  path: string,
  { method = 'POST', key, auth = 'Bearer e2e-token', body, headers = {}, signal }: SendOptions = {},
): Promise<Response> {
  const h: Record<string, string> = { ...headers };
  if (key !== undefined) h['idempotency-key'] = key;
  if (auth !== null) h['authorization'] = auth;
  return fetch(`${base}${path}`, { method, headers: h, body: body ?? null, redirect: 'manual', ...(signal ? { signal } : {}) });
}

/**
 * Polls `condition` every 25 ms until it holds; after `timeoutMs` it fails, saying what it waited for (rather
 * than leaving the test's own timeout to report a hang).
 */
export async function until(condition: () => boolean | Promise<boolean>, what = 'the condition', timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`until: gave up after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The `code` of a problem document, or the status of any other answer. */
export async function problemCode(res: Response): Promise<string> {
  return res.headers.get('content-type') === 'application/problem+json'
    ? ((await res.json()) as { code: string }).code
    : String(res.status);
}

/** What the key API reports about a key. */
export interface KeyInfo {
  state?: 'in_flight' | 'complete' | 'too_large' | 'lost' | 'unknown';
  status?: number | null;
  lease_until?: number | null;
  expires_at?: number;
}

/** What the proxy at `base` reports about `key` (its key API), `{}` when it has no record. */
export async function keyInfo(base: string, key: string, auth = 'Bearer e2e-token'): Promise<KeyInfo> {
  const res = await send(base, `/_idempotency/keys/${encodeURIComponent(key)}`, { method: 'GET', auth });
  return res.status === 200 ? ((await res.json()) as KeyInfo) : {};
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
