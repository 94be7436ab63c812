/**
 * @module
 * The Workers the benchmark runs, each from its own wrangler config (read and built by `scripts/lib/workers.ts`), and
 * the product as built from another commit (`--baseline-ref`).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cleanup } from '../../scripts/lib/cleanup.ts';
import { buildWorker, type BuiltWorker, ROOT, readWorkerConfigAt, type WorkerConfig } from '../../scripts/lib/workers.ts';

export { buildWorker, type BuiltWorker, ROOT, type WorkerConfig } from '../../scripts/lib/workers.ts';

export const BENCH = join(ROOT, 'bench');

/** The Workers, by id. */
export const WORKER_CONFIGS = {
  floor: join(BENCH, 'floor/wrangler.toml'),
  design: join(BENCH, 'design-floor/wrangler.toml'),
  product: join(ROOT, 'wrangler.toml'),
  metered: join(BENCH, 'metered/wrangler.toml'),
} as const;
/** A Worker the runner can start; `baseline` is the product of `--baseline-ref`, built by {@link buildProductAt}. */
export type WorkerId = keyof typeof WORKER_CONFIGS | 'baseline';

/** The source of every Worker: a change mid-run invalidates the measurements (see `env.ts`). */
export const WORKER_SOURCES = ['wrangler.toml', 'src', 'bench/floor', 'bench/design-floor', 'bench/metered'];

/** Reads `id`'s wrangler config with wrangler's own reader. */
export function readWorkerConfig(id: WorkerId): WorkerConfig {
  if (id === 'baseline') throw new Error('the baseline Worker is built from its own worktree (buildProductAt)');
  return readWorkerConfigAt(WORKER_CONFIGS[id], id);
}

/**
 * The product as built from commit `ref`: checked out into a temporary detached git worktree whose `node_modules` is a
 * link to this one's (the bundle then has this worktree's dependencies: compare the lock files when they may differ),
 * built as {@link buildWorker} builds this one, and the worktree removed again. The bundle outlives it.
 */
export async function buildProductAt(ref: string, cleanup: Cleanup): Promise<{ commit: string; built: BuiltWorker }> {
  const git = (...args: string[]): string =>
    execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const commit = git('rev-parse', '--verify', '--end-of-options', `${ref}^{commit}`);
  const dir = mkdtempSync(join(tmpdir(), 'idem-bench-baseline-'));
  // Removed by the reaper should this process be killed outright; git then keeps a stale entry until `git worktree prune`.
  cleanup.addDir(dir);
  git('worktree', 'add', '--detach', dir, commit);
  try {
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    return { commit, built: await buildWorker(readWorkerConfigAt(join(dir, 'wrangler.toml'), 'baseline'), cleanup) };
  } finally {
    // The link goes first, so that nothing can follow it into this worktree's node_modules.
    rmSync(join(dir, 'node_modules'), { force: true });
    git('worktree', 'remove', '--force', dir);
    cleanup.removeDirNow(dir);
  }
}
