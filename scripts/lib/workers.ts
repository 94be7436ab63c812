/**
 * @module
 * A Worker as the bare runtime serves it, from its wrangler config: what wrangler's own reader
 * (`unstable_readConfig`) says about it, and the bundle `wrangler deploy --dry-run --outdir` builds for it. Used by the
 * benchmark (`bench/`) and the fault-schedule run (`scripts/torture/`).
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { unstable_getDurableObjectClassNameToUseSQLiteMap, unstable_readConfig } from 'wrangler';
import type { Registry } from './cleanup.ts';
import { spawnGroup, WRANGLER_JS } from './processes.ts';

export const ROOT = resolve(import.meta.dirname, '../..');

export interface DurableObjectClass {
  /** The binding name in `env`. */
  binding: string;
  className: string;
  sqlite: boolean;
}

/** One Worker's effective configuration (top-level environment). */
export interface WorkerConfig {
  /** A short name for logs and temp directories. */
  id: string;
  configPath: string;
  name: string;
  /** Absolute path of the entry module. */
  main: string;
  compatibilityDate: string;
  compatibilityFlags: string[];
  vars: Record<string, unknown>;
  durableObjects: DurableObjectClass[];
}

/** Reads the wrangler config at `configPath` with wrangler's own reader; `id` names it in logs. */
export function readWorkerConfigAt(configPath: string, id: string): WorkerConfig {
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
    main: resolve(dirname(configPath), config.main),
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

/**
 * `wrangler deploy --dry-run --outdir`: the exact bundle a deploy of the top-level environment would upload. Run from
 * the config's directory, so a copy of the project (a planted bug, `scripts/torture/mutants.ts`) is built from itself.
 */
export async function buildWorker(config: WorkerConfig, registry: Registry): Promise<BuiltWorker> {
  const dir = mkdtempSync(join(tmpdir(), `idem-build-${config.id}-`));
  registry.addDir(dir);
  const group = spawnGroup(
    `wrangler deploy --dry-run (${config.id})`,
    process.execPath,
    [WRANGLER_JS, 'deploy', '--dry-run', '--outdir', dir, '--config', config.configPath, '--env', ''],
    { cwd: dirname(config.configPath), env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' }, registry },
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
