/**
 * @module
 * The default mode: every scenario in interleaved repeats, medians, the ratios with their targets, and
 * the latency the proxy adds over the floor.
 */
import { fmt, median } from '../lib/env.ts';
import { fail } from '../lib/load.ts';
import { type Bench, type CpuUsPerReq, measure, startTarget, stopTarget } from '../lib/measure.ts';
import {
  BENCH_KEYRING,
  DEFAULT_SCENARIOS,
  prime,
  replayKey,
  type ScenarioName,
  scenario,
  scenarioNames,
  type Slot,
} from '../lib/scenarios.ts';
import type { Target } from '../lib/targets.ts';
import { STREAM } from './stream.ts';
import type { WorkerId } from '../lib/workers.ts';

export interface ScenarioRow {
  scenario: ScenarioName;
  repeat: number;
  target: string;
  completed: number;
  durationS: number;
  rps: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  cpuUsPerReq: CpuUsPerReq;
  statusCodes: Record<string, number>;
  non2xx: number;
  errors: number;
  timeouts: number;
  originCalls: number;
  answered2xx?: number;
  unanswered?: number;
  cutOffButForwarded?: number;
}

export interface Summary {
  rps: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  cpuUsPerReq: CpuUsPerReq;
  non2xx: number;
  completed: number;
  repeats: number;
}

export type Metric = 'req/s' | 'runtime CPU/req' | 'all-workerd CPU/req';

export interface Ratio {
  label: string;
  metric: Metric;
  value: number;
  perRepeat: number[];
  op: '>=' | '<=';
  target: number | null;
  met: boolean | null;
}

export interface LatencyRow {
  scenario: ScenarioName;
  baseline: ScenarioName;
  p50Ms: number;
  baselineP50Ms: number;
  p99Ms: number;
  baselineP99Ms: number;
}

export interface ScenariosResult {
  scenarios: ScenarioName[];
  runs: ScenarioRow[];
  summary: Partial<Record<ScenarioName, Summary>>;
  ratios: Ratio[];
  latency: LatencyRow[];
}

/** [a, b, metric, op, target]: a / b must be `op` target; `null`: shown for information. */
const RATIO_DEFS: [ScenarioName, ScenarioName, Metric, '>=' | '<=', number | null][] = [
  ['passthrough_post', 'floor', 'req/s', '>=', 0.97],
  ['passthrough_post', 'floor', 'runtime CPU/req', '<=', 1.05],
  ['passthrough_get', 'floor', 'req/s', '>=', 0.97],
  ['passthrough_get', 'floor', 'runtime CPU/req', '<=', 1.05],
  ['replay', 'floor', 'req/s', '>=', 1.3],
  ['replay', 'floor', 'runtime CPU/req', '<=', null],
  ['conflict', 'floor', 'req/s', '>=', 1.3],
  ['conflict', 'floor', 'runtime CPU/req', '<=', null],
  ['first', 'design_floor_first', 'req/s', '>=', 1.0],
  ['first', 'design_floor_first', 'runtime CPU/req', '<=', 0.95],
  ['replay_unlogged', 'floor', 'req/s', '>=', null],
  ['replay_unlogged', 'replay', 'runtime CPU/req', '<=', null],
  ['replay_sealed', 'replay', 'req/s', '>=', null],
  ['replay_sealed', 'replay', 'runtime CPU/req', '<=', null],
  ['first_sealed', 'first', 'req/s', '>=', null],
  ['first_sealed', 'first', 'runtime CPU/req', '<=', null],
  ['replay_large_sealed', 'replay_large', 'req/s', '>=', null],
  ['replay_large_sealed', 'replay_large', 'runtime CPU/req', '<=', null],
];

/** [scenario, baseline] pairs of the latency table. */
const LATENCY_PAIRS: [ScenarioName, ScenarioName][] = [
  ['passthrough_post', 'floor'],
  ['passthrough_get', 'floor'],
  ['replay', 'floor'],
  ['first', 'floor'],
  ['first', 'design_floor_first'],
  ['first_sealed', 'first'],
];

/** The Worker each slot runs, and the vars on top of its own. */
const SLOTS: Record<Exclude<Slot, 'origin'>, { worker: WorkerId; vars?: Record<string, string>; fresh: boolean }> = {
  floor: { worker: 'floor', fresh: false },
  product: { worker: 'product', fresh: false },
  'product-unlogged': { worker: 'product', vars: { LOG_REQUESTS: 'false' }, fresh: false },
  'product-sealed': { worker: 'product', vars: { IDEMPOTENCY_ENCRYPTION_KEYS: BENCH_KEYRING }, fresh: false },
  'product-large': { worker: 'product', fresh: false },
  'product-large-sealed': { worker: 'product', vars: { IDEMPOTENCY_ENCRYPTION_KEYS: BENCH_KEYRING }, fresh: false },
  'product-first': { worker: 'product', fresh: true },
  'product-first-sealed': { worker: 'product', vars: { IDEMPOTENCY_ENCRYPTION_KEYS: BENCH_KEYRING }, fresh: true },
  'design-first': { worker: 'design', fresh: true },
};

export function startSlot(bench: Bench, slot: Exclude<Slot, 'origin'>, label: string, inspector = false): Promise<Target> {
  const { worker, vars } = SLOTS[slot];
  return startTarget(bench, worker, label, { ...(vars ? { vars } : {}), inspector });
}

const pick = (metric: Metric, x: { rps: number; cpuUsPerReq: CpuUsPerReq }): number =>
  metric === 'req/s' ? x.rps : metric === 'runtime CPU/req' ? x.cpuUsPerReq.runtime : x.cpuUsPerReq.workerd;

export async function runScenarios(bench: Bench): Promise<ScenariosResult> {
  const { settings, origin } = bench;
  const names = scenarioNames((settings.only ?? DEFAULT_SCENARIOS).filter((name) => name !== STREAM));
  // Long-lived processes for the stateless scenarios, started one after the other.
  const lasting = new Map<Slot, Target>();
  for (const name of names) {
    const slot = scenario(name).slot;
    if (slot !== 'origin' && !SLOTS[slot].fresh && !lasting.has(slot)) lasting.set(slot, await startSlot(bench, slot, slot));
  }
  // Each process that serves a fixed-key scenario gets its own key stored once; its replays must repeat that body.
  const primed = new Map<Slot, string>();
  for (const [slot, target] of lasting) {
    const fixed = names.map(scenario).find((s) => s.slot === slot && s.key === 'fixed');
    if (fixed !== undefined) primed.set(slot, await prime(target.url, slot, origin.count, () => origin.settle(), fixed.path));
  }

  console.log(
    `\nscenarios: ${settings.repeats} repeats × (${settings.warmupS} s warm-up + ${settings.durationS} s), ${settings.connections} connections`,
  );
  const runs: ScenarioRow[] = [];
  for (let rep = 1; rep <= settings.repeats; rep++) {
    // Odd repeats in order, even repeats in reverse, so drift on a noisy machine does not always favour
    // the same scenario.
    for (const name of rep % 2 === 1 ? names : [...names].reverse()) {
      const s = scenario(name);
      const label = `${name} #${rep}`;
      // First-time scenarios: a new process on empty storage every time.
      const fresh =
        s.slot !== 'origin' && SLOTS[s.slot].fresh
          ? await startSlot(bench, s.slot as Exclude<Slot, 'origin'>, `${s.slot}-r${rep}`)
          : undefined;
      const target = s.slot === 'origin' ? undefined : (fresh ?? lasting.get(s.slot));
      try {
        const m = await measure(bench, target, s, label, {
          prefix: `${name}-r${rep}-`,
          expectedBody: s.key === 'fixed' && s.expect === 201 ? primed.get(s.slot) : undefined,
        });
        const r = m.run.result;
        const row: ScenarioRow = {
          scenario: name,
          repeat: rep,
          target: target?.label ?? 'origin',
          completed: m.completed,
          durationS: r.duration,
          rps: m.rps,
          latencyP50Ms: r.latency.p50,
          latencyP99Ms: r.latency.p99,
          cpuUsPerReq: m.cpuUsPerReq,
          statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count ?? 0])),
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          ...m.info,
        };
        runs.push(row);
        console.log(
          `  ${label.padEnd(30)} ${fmt(row.rps).padStart(6)} req/s  p50 ${fmt(row.latencyP50Ms, 1).padStart(5)} ms  p99 ${fmt(row.latencyP99Ms, 1).padStart(6)} ms  ` +
            `runtime CPU ${fmt(row.cpuUsPerReq.runtime).padStart(5)} µs/req  origin calls ${row.originCalls}` +
            (row.answered2xx !== undefined
              ? ` = ${row.answered2xx} answered 2xx + ${row.cutOffButForwarded} cut off at the end (of ${row.unanswered})`
              : ''),
        );
      } finally {
        if (fresh) await stopTarget(bench, fresh);
      }
    }
  }
  for (const slot of primed.keys()) {
    const count = await origin.count(replayKey(slot));
    if (count !== 1) fail(`the replay key of ${slot} reached the origin ${count} times over the whole run (expected 1)`);
  }
  for (const target of lasting.values()) await stopTarget(bench, target);
  return { scenarios: names, runs, ...summarize(names, runs, settings.repeats) };
}

function summarize(names: ScenarioName[], runs: ScenarioRow[], repeats: number): Pick<ScenariosResult, 'summary' | 'ratios' | 'latency'> {
  const summary: Partial<Record<ScenarioName, Summary>> = {};
  for (const name of names) {
    const rows = runs.filter((r) => r.scenario === name);
    const med = (f: (r: ScenarioRow) => number): number => median(rows.map(f));
    summary[name] = {
      rps: med((r) => r.rps),
      latencyP50Ms: med((r) => r.latencyP50Ms),
      latencyP99Ms: med((r) => r.latencyP99Ms),
      cpuUsPerReq: {
        runtime: med((r) => r.cpuUsPerReq.runtime),
        workerd: med((r) => r.cpuUsPerReq.workerd),
        wranglerNode: med((r) => r.cpuUsPerReq.wranglerNode),
        origin: med((r) => r.cpuUsPerReq.origin),
      },
      non2xx: rows.reduce((a, r) => a + r.non2xx, 0),
      completed: rows.reduce((a, r) => a + r.completed, 0),
      repeats: rows.length,
    };
  }
  const ratios: Ratio[] = [];
  for (const [a, b, metric, op, target] of RATIO_DEFS) {
    const sa = summary[a];
    const sb = summary[b];
    if (!sa || !sb) continue;
    const value = pick(metric, sa) / pick(metric, sb);
    // Paired per-repeat ratios show how much of the difference is noise.
    const perRepeat: number[] = [];
    for (let rep = 1; rep <= repeats; rep++) {
      const ra = runs.find((r) => r.scenario === a && r.repeat === rep);
      const rb = runs.find((r) => r.scenario === b && r.repeat === rep);
      perRepeat.push(ra && rb ? pick(metric, ra) / pick(metric, rb) : Number.NaN);
    }
    const met = target === null ? null : op === '>=' ? value >= target : value <= target;
    ratios.push({ label: `${a} / ${b}`, metric, value, perRepeat, op, target, met });
  }
  const latency: LatencyRow[] = [];
  for (const [name, baseline] of LATENCY_PAIRS) {
    const s = summary[name];
    const b = summary[baseline];
    if (s && b)
      latency.push({
        scenario: name,
        baseline,
        p50Ms: s.latencyP50Ms,
        baselineP50Ms: b.latencyP50Ms,
        p99Ms: s.latencyP99Ms,
        baselineP99Ms: b.latencyP99Ms,
      });
  }
  return { summary, ratios, latency };
}
