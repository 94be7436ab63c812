/**
 * @module
 * The Workers the benchmark runs, each from its own wrangler config: what wrangler's own reader
 * (`unstable_readConfig`) says about it, and the bundle `wrangler deploy --dry-run --outdir` builds for it.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, extname, join, resolve } from 'node:path';
import { unstable_getDurableObjectClassNameToUseSQLiteMap, unstable_readConfig } from 'wrangler';
import { spawnGroup, WRANGLER_JS } from '../../scripts/lib/processes.ts';
import type { Cleanup } from './cleanup.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BENCH = join(ROOT, 'bench');

/** The Workers, by id. */
export const WORKER_CONFIGS = {
  floor: join(BENCH, 'floor/wrangler.toml'),
  design: join(BENCH, 'design-floor/wrangler.toml'),
  product: join(ROOT, 'wrangler.toml'),
  metered: join(BENCH, 'metered/wrangler.toml'),
} as const;
export type WorkerId = keyof typeof WORKER_CONFIGS;

/** The source of every Worker: a change mid-run invalidates the measurements (see `env.ts`). */
export const WORKER_SOURCES = ['wrangler.toml', 'src', 'bench/floor', 'bench/design-floor', 'bench/metered'];

export interface DurableObjectClass {
  /** The binding name in `env`. */
  binding: string;
  className: string;
  sqlite: boolean;
}

/** One Worker's effective configuration (top-level environment). */
export interface WorkerConfig {
  id: WorkerId;
  configPath: string;
  name: string;
  /** Absolute path of the entry module. */
  main: string;
  compatibilityDate: string;
  compatibilityFlags: string[];
  vars: Record<string, unknown>;
  durableObjects: DurableObjectClass[];
}

/** Reads `id`'s wrangler config with wrangler's own reader. */
export function readWorkerConfig(id: WorkerId): WorkerConfig {
  const configPath = WORKER_CONFIGS[id];
  const config = unstable_readConfig({ config: configPath }, { hideWarnings: true });
  if (config.main === undefined) throw new Error(`${configPath}: no main`);
  if (config.compatibility_date === undefined) throw new Error(`${configPath}: no compatibility_date`);
  const sqlite = unstable_getDurableObjectClassNameToUseSQLiteMap(config.migrations);
  const durableObjects = config.durable_objects.bindings.map((b: { name: string; class_name: string; script_name?: string }) => {
    if (b.script_name !== undefined)
      throw new Error(`${configPath}: Durable Object binding ${b.name} names another script; not supported here`);
    return { binding: b.name, className: b.class_name, sqlite: sqlite.get(b.class_name) === true };
  });
  return {
    id,
    configPath,
    name: config.name ?? id,
    main: resolve(ROOT, config.main),
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags,
    vars: config.vars,
    durableObjects,
  };
}

export type ModuleKind = 'esModule' | 'commonJsModule' | 'text' | 'data' | 'wasm' | 'json';

export interface BuiltWorker {
  config: WorkerConfig;
  /** The dry-run output directory. */
  dir: string;
  /** Every module, the entry first: name relative to `dir`, and its kind. */
  modules: { name: string; kind: ModuleKind }[];
}

const KIND_BY_EXTENSION: Record<string, ModuleKind> = {
  '.js': 'esModule',
  '.mjs': 'esModule',
  '.cjs': 'commonJsModule',
  '.txt': 'text',
  '.html': 'text',
  '.sql': 'text',
  '.bin': 'data',
  '.wasm': 'wasm',
  '.json': 'json',
};

/** Files in `dir` (recursively), relative paths. */
function filesIn(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesIn(dir, join(prefix, entry.name)) : [join(prefix, entry.name)],
  );
}

/** `wrangler deploy --dry-run --outdir`: the exact bundle a deploy of the top-level environment would upload. */
export async function buildWorker(config: WorkerConfig, cleanup: Cleanup): Promise<BuiltWorker> {
  const dir = mkdtempSync(join(tmpdir(), `idem-bench-build-${config.id}-`));
  cleanup.addDir(dir);
  const group = spawnGroup(
    `wrangler deploy --dry-run (${config.id})`,
    process.execPath,
    [WRANGLER_JS, 'deploy', '--dry-run', '--outdir', dir, '--config', config.configPath, '--env', ''],
    { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' }, registry: cleanup },
  );
  await group.exited;
  await group.stop();
  if (group.child.exitCode !== 0) throw new Error(`${group.name} failed (exit ${group.child.exitCode}):\n${group.output()}`);
  const entry = `${basename(config.main, extname(config.main))}.js`;
  const files = filesIn(dir).filter((f) => !f.endsWith('.map') && f !== 'README.md');
  if (!files.includes(entry)) throw new Error(`${group.name}: no ${entry} in ${dir} (${files.join(', ')})`);
  const modules = [entry, ...files.filter((f) => f !== entry).sort()].map((name) => {
    const kind = KIND_BY_EXTENSION[extname(name)];
    if (kind === undefined) throw new Error(`${group.name}: module ${name} of an unknown kind`);
    return { name, kind };
  });
  return { config, dir, modules };
}
