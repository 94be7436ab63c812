/**
 * @module
 * The default mode: every scenario in interleaved repeats, medians, the ratios with their targets, and
 * the latency the proxy adds over the floor. With `--baseline-ref`, every product scenario also runs on the product
 * as built from that commit (`name@baseline`), right after its twin in each repeat, in processes of its own; the ratio
 * of the two is reported for req/s and runtime CPU/req.
 */
import { fmt, median } from '../lib/env.ts';
import { fail } from '../lib/load.ts';
import { type Bench, type CpuUsPerReq, measure, startTarget, stopTarget } from '../lib/measure.ts';
import {
  BENCH_KEYRING,
  DEFAULT_SCENARIOS,
  prime,
  replayKey,
  type Scenario,
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
  /** Run on the product of `--baseline-ref`. */
  baseline?: true;
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
  /** By run name: the scenario's, `name@baseline` for its run on the baseline build. */
  summary: Record<string, Summary>;
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

/** This build's scenario against the baseline build's, for each metric. */
const BASELINE_METRICS: Metric[] = ['req/s', 'runtime CPU/req'];

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

export function startSlot(
  bench: Bench,
  slot: Exclude<Slot, 'origin'>,
  label: string,
  inspector = false,
  baseline = false,
): Promise<Target> {
  const { worker, vars } = SLOTS[slot];
  return startTarget(bench, baseline ? 'baseline' : worker, label, { ...(vars ? { vars } : {}), inspector });
}

/** One scenario on one build, as run in a repeat. */
export interface Run {
  name: ScenarioName;
  /** The run's name in the summary and the report. */
  id: string;
  s: Scenario;
  /** Which process serves it: the slot, `-baseline` on the baseline build. */
  place: string;
}

/** The runs of `names`: each product scenario followed by its twin on the baseline build when there is one. */
export function runsOf(names: ScenarioName[], baseline: boolean): Run[] {
  return names.flatMap((name) => {
    const s = scenario(name);
    const ours: Run = { name, id: name, s, place: s.slot };
    if (!baseline || s.slot === 'origin' || SLOTS[s.slot].worker !== 'product') return [ours];
    return [ours, { name, id: `${name}@baseline`, s: { ...s, baseline: true }, place: `${s.slot}-baseline` }];
  });
}

const idOf = (row: ScenarioRow): string => (row.baseline ? `${row.scenario}@baseline` : row.scenario);

const pick = (metric: Metric, x: { rps: number; cpuUsPerReq: CpuUsPerReq }): number =>
  metric === 'req/s' ? x.rps : metric === 'runtime CPU/req' ? x.cpuUsPerReq.runtime : x.cpuUsPerReq.workerd;

export async function runScenarios(bench: Bench): Promise<ScenariosResult> {
  const { settings, origin } = bench;
  const names = scenarioNames((settings.only ?? DEFAULT_SCENARIOS).filter((name) => name !== STREAM));
  const all = runsOf(names, bench.baseline !== undefined);
  // Long-lived processes for the stateless scenarios, started one after the other.
  const lasting = new Map<string, Target>();
  for (const { s, place } of all) {
    if (s.slot !== 'origin' && !SLOTS[s.slot].fresh && !lasting.has(place))
      lasting.set(place, await startSlot(bench, s.slot, place, false, s.baseline));
  }
  // Each process that serves a fixed-key scenario gets its own key stored once; its replays must repeat that body.
  const primed = new Map<string, string>();
  for (const [place, target] of lasting) {
    const fixed = all.find((run) => run.place === place && run.s.key === 'fixed');
    if (fixed !== undefined) primed.set(place, await prime(target.url, fixed.s, origin.count, () => origin.settle()));
  }

  console.log(
    `\nscenarios: ${settings.repeats} repeats × (${settings.warmupS} s warm-up + ${settings.durationS} s), ${settings.connections} connections`,
  );
  const runs: ScenarioRow[] = [];
  for (let rep = 1; rep <= settings.repeats; rep++) {
    // Odd repeats in order, even repeats in reverse, so drift on a noisy machine does not always favour
    // the same scenario.
    for (const { name, id, s, place } of rep % 2 === 1 ? all : [...all].reverse()) {
      const label = `${id} #${rep}`;
      // First-time scenarios: a new process on empty storage every time.
      const fresh =
        s.slot !== 'origin' && SLOTS[s.slot].fresh ? await startSlot(bench, s.slot, `${place}-r${rep}`, false, s.baseline) : undefined;
      const target = s.slot === 'origin' ? undefined : (fresh ?? lasting.get(place));
      try {
        const m = await measure(bench, target, s, label, {
          prefix: `${id}-r${rep}-`,
          expectedBody: s.key === 'fixed' && s.expect === 201 ? primed.get(place) : undefined,
        });
        const r = m.run.result;
        const row: ScenarioRow = {
          scenario: name,
          ...(s.baseline ? { baseline: true } : {}),
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
  for (const place of primed.keys()) {
    const { s } = all.find((run) => run.place === place)!;
    const count = await origin.count(replayKey(s.slot, s.baseline));
    if (count !== 1) fail(`the replay key of ${place} reached the origin ${count} times over the whole run (expected 1)`);
  }
  for (const target of lasting.values()) await stopTarget(bench, target);
  return { scenarios: names, runs, ...summarize(all, runs, settings.repeats) };
}

function summarize(all: Run[], runs: ScenarioRow[], repeats: number): Pick<ScenariosResult, 'summary' | 'ratios' | 'latency'> {
  const summary: Record<string, Summary> = {};
  for (const { id } of all) {
    const rows = runs.filter((r) => idOf(r) === id);
    const med = (f: (r: ScenarioRow) => number): number => median(rows.map(f));
    summary[id] = {
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
  const twins = all.filter((run) => run.s.baseline).map(({ id, name }) => [name, id] as const);
  const defs = [
    ...twins.flatMap(([a, b]) => BASELINE_METRICS.map((metric) => [a, b, metric, metric === 'req/s' ? '>=' : '<=', null] as const)),
    ...RATIO_DEFS,
  ];
  for (const [a, b, metric, op, target] of defs) {
    const sa = summary[a];
    const sb = summary[b];
    if (!sa || !sb) continue;
    const value = pick(metric, sa) / pick(metric, sb);
    // Paired per-repeat ratios show how much of the difference is noise.
    const perRepeat: number[] = [];
    for (let rep = 1; rep <= repeats; rep++) {
      const ra = runs.find((r) => idOf(r) === a && r.repeat === rep);
      const rb = runs.find((r) => idOf(r) === b && r.repeat === rep);
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
