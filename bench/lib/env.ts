/**
 * @module
 * Where and on what the benchmark ran (machine, versions, commit), and the guard that aborts a run whose
 * Workers changed or restarted mid-run (a measurement mixing two versions is invalid).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLK_TCK, startTime, walkFiles } from './proc.ts';
import type { Target } from './targets.ts';
import { WORKERD_BIN, WORKERD_VERSION } from '../../scripts/lib/workerd.ts';
import { ROOT, WORKER_SOURCES } from './workers.ts';

export const median = (xs: readonly number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};
export const fmt = (x: number | undefined, digits = 0): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
export const mib = (bytes: number): number => bytes / (1024 * 1024);
export const stamp = (date: Date): string => date.toISOString().replace(/[:.]/g, '-');

/** Hash of every Worker's source files. */
export function sourceDigest(): string {
  const hash = createHash('sha256');
  for (const path of WORKER_SOURCES)
    walkFiles(join(ROOT, path), (file) => hash.update(`${file}\0`).update(readFileSync(file)).update('\0'));
  return hash.digest('hex');
}

export function gitDescribe(): { head: string; productSourceDirty: boolean | null; dirtyFiles: string[] } {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'wrangler.toml'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return { head, productSourceDirty: dirty !== '', dirtyFiles: dirty.split('\n').filter(Boolean) };
  } catch {
    return { head: 'unknown', productSourceDirty: null, dirtyFiles: [] };
  }
}

/** Throws when a Worker's source changed since `digest` was taken or one of its processes restarted. */
export function assertStable(digest: string, targets: Iterable<Target>, when: string): void {
  const problems: string[] = [];
  if (sourceDigest() !== digest) problems.push(`the source of a Worker (${WORKER_SOURCES.join(', ')}) changed`);
  for (const t of targets) {
    for (const [pid, start] of t.startTimes)
      if (startTime(pid) !== start) problems.push(`${t.label}: process ${pid} is gone (restarted or reloaded)`);
  }
  if (problems.length > 0)
    throw new Error(
      `${when}: ${problems.join('; ')}. Measurements mixing two versions are invalid; rerun without editing the Workers' files.`,
    );
}

const packageVersion = (path: string): string => {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
};

export interface Versions {
  node: string;
  wrangler: string;
  workerd: string;
  workerdPackage: string;
  autocannon: string;
}

export function versions(): Versions {
  let workerd = 'unknown';
  try {
    workerd = execFileSync(WORKERD_BIN, ['--version'], { encoding: 'utf8' })
      .trim()
      .replace(/^workerd\s*/, '');
  } catch {
    // keep unknown
  }
  return {
    node: process.version,
    wrangler: packageVersion(join(ROOT, 'node_modules/wrangler/package.json')),
    workerd,
    workerdPackage: WORKERD_VERSION,
    autocannon: packageVersion(join(ROOT, 'node_modules/autocannon/package.json')),
  };
}

export interface Machine {
  nproc: number;
  cpuModel: string;
  memTotalMiB: number;
  loadavgAtStart: string;
  clkTck: number;
  /** Which CPUs the processes ran on (`--pin`). */
  placement?: string;
}

export function machine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  let nproc: number;
  try {
    // --all: the machine's CPUs, not the ones this process is pinned to.
    nproc = Number(execFileSync('nproc', ['--all'], { encoding: 'utf8' }).trim());
  } catch {
    nproc = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  }
  const mem = /MemTotal:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
  let load = 'n/a';
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    // no loadavg
  }
  return { nproc, cpuModel: model, memTotalMiB: mem ? Math.round(Number(mem) / 1024) : Number.NaN, loadavgAtStart: load, clkTck: CLK_TCK };
}
