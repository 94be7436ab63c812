/**
 * @module
 * The Workers the benchmark runs, each from its own wrangler config (read and built by `scripts/lib/workers.ts`).
 */
import { join } from 'node:path';
import { ROOT, readWorkerConfigAt, type WorkerConfig } from '../../scripts/lib/workers.ts';

export { buildWorker, type BuiltWorker, ROOT, type WorkerConfig } from '../../scripts/lib/workers.ts';

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

/** Reads `id`'s wrangler config with wrangler's own reader. */
export const readWorkerConfig = (id: WorkerId): WorkerConfig => readWorkerConfigAt(WORKER_CONFIGS[id], id);
