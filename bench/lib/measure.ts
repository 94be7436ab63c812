/**
 * @module
 * One measured run of a scenario against a target: warm-up, load, the CPU time of the target's own
 * processes and the origin over exactly that window, the stability guard and the correctness checks.
 */
import type { Cleanup } from '../../scripts/lib/cleanup.ts';
import type { Settings } from './cli.ts';
import { assertStable } from './env.ts';
import { type CheckInfo, check, fail, load, type LoadRun } from './load.ts';
import type { Origin } from './origin.ts';
import { CLK_TCK, cpuTicks } from './proc.ts';
import type { Scenario } from './scenarios.ts';
import type { Runner, Target } from './targets.ts';

/** What every mode gets. */
export interface Bench {
  settings: Settings;
  origin: Origin;
  runner: Runner;
  cleanup: Cleanup;
  /** Source digest at the start (see `env.ts`). */
  digest: string;
  /** Targets that are running now (checked for restarts after every run). */
  live: Set<Target>;
  /** Every target started during the run (for the report). */
  started: { label: string; command: string }[];
  /** `--baseline-ref`: the commit whose product (Worker `baseline`) runs next to this one. */
  baseline?: Baseline;
}

export interface Baseline {
  ref: string;
  commit: string;
}

/** Starts a target and keeps track of it. */
export async function startTarget(bench: Bench, ...args: Parameters<Runner['start']>): Promise<Target> {
  const t0 = Date.now();
  const target = await bench.runner.start(...args);
  bench.live.add(target);
  bench.started.push({ label: target.label, command: target.command });
  console.log(
    `  ${target.label}: ${target.url} ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (runtime pid ${target.runtime.join(',')})`,
  );
  return target;
}

export async function stopTarget(bench: Bench, target: Target): Promise<void> {
  bench.live.delete(target);
  await target.stop();
}

export interface CpuUsPerReq {
  /** The process(es) running the Worker and its Durable Objects. */
  runtime: number;
  /** Every workerd of the target (wrangler dev: plus its entry proxy). */
  workerd: number;
  /** wrangler dev's Node processes. */
  wranglerNode: number;
  origin: number;
}

type CpuSnapshot = Record<keyof CpuUsPerReq, number>;

function cpuSnapshot(target: Target | undefined, origin: Origin): CpuSnapshot {
  const sum = (pids: number[] | undefined): number => (pids === undefined ? Number.NaN : pids.reduce((acc, pid) => acc + cpuTicks(pid), 0));
  return {
    runtime: sum(target?.runtime),
    workerd: sum(target?.workerd),
    wranglerNode: target && target.node.length > 0 ? sum(target.node) : Number.NaN,
    origin: cpuTicks(origin.pid),
  };
}

export interface Measured {
  run: LoadRun;
  info: CheckInfo;
  completed: number;
  /** Requests per second over the run (autocannon's duration; the exact time to the last answer for `amount` runs). */
  rps: number;
  cpuUsPerReq: CpuUsPerReq;
}

export interface MeasureOptions {
  /** Prefix of this run's keys (measured run: `${prefix}m-`, warm-up: `${prefix}w-`). */
  prefix: string;
  /** A fixed number of requests instead of --duration. */
  amount?: number;
  warmup?: boolean;
  expectedBody?: string | undefined;
  /** Requests that may be left unanswered at the end. @default settings.connections (0 for `amount` runs) */
  allowInFlight?: number;
}

/**
 * Measures `s` against `target` (`undefined`: the origin itself). Correctness failures are recorded
 * (`fail`), a changed or restarted Worker aborts the run.
 */
export async function measure(
  bench: Bench,
  target: Target | undefined,
  s: Scenario,
  label: string,
  options: MeasureOptions,
): Promise<Measured> {
  const { settings, origin } = bench;
  const url = target?.url ?? origin.url;
  if (options.warmup !== false && settings.warmupS > 0) {
    const warm = await load(url, s, settings, { keyPrefix: `${options.prefix}w-`, durationS: settings.warmupS });
    if (warm.result.requests.total === 0) fail(`${label}: warm-up completed no request`);
  }
  const before = await origin.settle();
  const cpuBefore = cpuSnapshot(target, origin);
  const keyPrefix = `${options.prefix}m-`;
  const run = await load(url, s, settings, {
    keyPrefix,
    ...(options.amount !== undefined ? { amount: options.amount } : {}),
    expectedBody: options.expectedBody,
  });
  const after = await origin.settle();
  const cpuAfter = cpuSnapshot(target, origin);
  assertStable(bench.digest, bench.live, label);
  const info = await check(
    label,
    s,
    run,
    before,
    after,
    origin,
    keyPrefix,
    options.allowInFlight ?? (options.amount !== undefined ? 0 : settings.connections),
  );
  const completed = run.result.requests.total;
  const perReq = (key: keyof CpuSnapshot): number => ((cpuAfter[key] - cpuBefore[key]) / CLK_TCK / completed) * 1e6;
  return {
    run,
    info,
    completed,
    rps: completed / (options.amount !== undefined ? run.elapsedS : run.result.duration),
    cpuUsPerReq: { runtime: perReq('runtime'), workerd: perReq('workerd'), wranglerNode: perReq('wranglerNode'), origin: perReq('origin') },
  };
}
