/**
 * @module
 * `--scale`: first-time requests to the design floor and the product until each level of stored keys
 * (`--scale-levels`, default 1k, 10k, 100k; one SQLite file per key), each Worker in one process that
 * starts on empty storage. The warm-up (with `--warmup` > 0) is a few first-time requests, counted in
 * the first level. At each level: throughput of the last `--scale-probe` requests, memory (RSS of
 * the runtime) and disk per stored key right after ("hot") and after `--scale-idle` seconds without
 * traffic ("idle": objects closed, WAL files checkpointed).
 */
import { fmt, mib } from '../lib/env.ts';
import { fail } from '../lib/load.ts';
import { type Bench, measure, stopTarget } from '../lib/measure.ts';
import { diskUsage, rssBytes } from '../lib/proc.ts';
import { SCENARIOS } from '../lib/scenarios.ts';
import type { Target } from '../lib/targets.ts';
import { startSlot } from './scenarios.ts';

export interface Footprint {
  rssRuntimeBytes: number;
  /** (RSS now - RSS when empty) / stored keys. */
  rssPerKeyBytes: number;
  diskBytes: number;
  diskAllocatedBytes: number;
  diskFiles: number;
  sqliteFiles: number;
  walFiles: number;
  diskBytesPerKey: number;
  diskAllocatedPerKey: number;
  sqliteBytesPerFile: number;
}

export interface ScaleRow {
  scenario: 'design_floor_first' | 'first';
  level: number;
  storedKeys: number;
  fill: number;
  fillRps: number;
  fillSeconds: number;
  probe: number;
  rps: number;
  /** Probe req/s relative to the first level's. */
  vsFirstLevel?: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  cpuUsPerReq: number;
  hot: Footprint;
  idle?: Footprint;
}

export interface ScaleResult {
  rows: ScaleRow[];
  checks: { scenario: string; maxSpread: number; lowOverHigh: number; met: boolean }[];
  totalSeconds: number;
}

/** First-time throughput must stay within this fraction across levels. */
const MAX_SPREAD = 0.15;

function footprint(target: Target, keys: number, emptyRss: number): Footprint {
  const disk = diskUsage(target.storageDir);
  const rss = target.runtime.reduce((a, pid) => a + rssBytes(pid), 0);
  return {
    rssRuntimeBytes: rss,
    rssPerKeyBytes: keys > 0 ? (rss - emptyRss) / keys : Number.NaN,
    diskBytes: disk.bytes,
    diskAllocatedBytes: disk.allocated,
    diskFiles: disk.files,
    sqliteFiles: disk.sqliteFiles,
    walFiles: disk.walFiles,
    diskBytesPerKey: keys > 0 ? disk.bytes / keys : Number.NaN,
    diskAllocatedPerKey: keys > 0 ? disk.allocated / keys : Number.NaN,
    sqliteBytesPerFile: disk.sqliteFiles > 0 ? disk.sqliteBytes / disk.sqliteFiles : Number.NaN,
  };
}

const describe = (f: Footprint): string =>
  `RSS ${fmt(mib(f.rssRuntimeBytes), 1)} MiB (${fmt(f.rssPerKeyBytes)} B/key)  disk ${fmt(f.diskBytesPerKey)} B/key, ${fmt(f.sqliteBytesPerFile)} B per .sqlite (${f.walFiles} open WAL files)`;

export async function runScale(bench: Bench): Promise<ScaleResult> {
  const { settings, origin } = bench;
  const t0 = Date.now();
  const plan = [
    { name: 'design_floor_first' as const, target: await startSlot(bench, 'design-first', 'design-scale') },
    { name: 'first' as const, target: await startSlot(bench, 'product-first', 'product-scale') },
  ];
  console.log(
    `\nscale: levels ${settings.scaleLevels.join(', ')} stored keys, probe ${settings.scaleProbe} requests, ${settings.connections} connections`,
  );
  const rows: ScaleRow[] = [];
  const stored = new Map<string, number>();
  const emptyRss = new Map<string, number>();
  // Record the empty state, then warm up the first-time path itself (a cold isolate would make the
  // first level's probe the slowest): those keys are stored too and count towards the first level.
  const warmKeys = settings.warmupS > 0 ? Math.min(200, Math.floor((settings.scaleLevels[0] ?? 0) / 5)) : 0;
  for (const { name, target } of plan) {
    await origin.settle();
    const empty = footprint(target, 0, 0);
    emptyRss.set(name, empty.rssRuntimeBytes);
    console.log(
      `  ${name.padEnd(20)} empty: RSS ${fmt(mib(empty.rssRuntimeBytes), 1)} MiB, ${empty.diskBytes} bytes in ${empty.diskFiles} files`,
    );
    if (warmKeys > 0)
      await measure(bench, target, SCENARIOS[name], `${name} warm-up`, { prefix: `scale-${name}-warm-`, warmup: false, amount: warmKeys });
    stored.set(name, warmKeys);
  }
  for (const level of settings.scaleLevels) {
    const levelRows: [ScaleRow, Target][] = [];
    for (const { name, target } of plan) {
      const s = SCENARIOS[name];
      const have = stored.get(name) ?? 0;
      const probe = Math.min(settings.scaleProbe, level - have);
      const fill = level - have - probe;
      const label = `${name} @${level}`;
      let fillRps = Number.NaN;
      const fillStart = Date.now();
      if (fill > 0)
        fillRps = (
          await measure(bench, target, s, `${label} fill`, { prefix: `scale-${name}-${level}-fill-`, warmup: false, amount: fill })
        ).rps;
      const fillSeconds = (Date.now() - fillStart) / 1000;
      const m = await measure(bench, target, s, `${label} probe`, {
        prefix: `scale-${name}-${level}-probe-`,
        warmup: false,
        amount: probe,
      });
      const keyCount = Object.keys(await origin.keys(`scale-${name}-`)).length;
      if (keyCount !== level) fail(`${label}: the origin saw ${keyCount} distinct keys in total, expected ${level}`);
      stored.set(name, keyCount);
      const r = m.run.result;
      const row: ScaleRow = {
        scenario: name,
        level,
        storedKeys: keyCount,
        fill,
        fillRps,
        fillSeconds,
        probe,
        rps: m.rps,
        latencyP50Ms: r.latency.p50,
        latencyP99Ms: r.latency.p99,
        cpuUsPerReq: m.cpuUsPerReq.runtime,
        hot: footprint(target, keyCount, emptyRss.get(name) ?? 0),
      };
      const firstLevel = rows.find((x) => x.scenario === name);
      if (firstLevel) row.vsFirstLevel = row.rps / firstLevel.rps;
      rows.push(row);
      levelRows.push([row, target]);
      console.log(
        `  ${label.padEnd(26)} probe ${fmt(row.rps).padStart(5)} req/s (fill ${fmt(fillRps)} req/s, ${fmt(fillSeconds, 1)} s)  p99 ${fmt(row.latencyP99Ms, 1)} ms  CPU ${fmt(row.cpuUsPerReq)} µs/req  ${describe(row.hot)}`,
      );
    }
    if (settings.scaleIdleS > 0) {
      await new Promise((r) => setTimeout(r, settings.scaleIdleS * 1000));
      for (const [row, target] of levelRows) {
        row.idle = footprint(target, row.storedKeys, emptyRss.get(row.scenario) ?? 0);
        console.log(`  ${`${row.scenario} @${level}`.padEnd(26)} after ${settings.scaleIdleS} s idle: ${describe(row.idle)}`);
      }
    }
  }
  for (const { target } of plan) await stopTarget(bench, target);
  const checks = plan.map(({ name }) => {
    const rps = rows.filter((r) => r.scenario === name).map((r) => r.rps);
    const lowOverHigh = Math.min(...rps) / Math.max(...rps);
    return { scenario: name, maxSpread: MAX_SPREAD, lowOverHigh, met: lowOverHigh >= 1 - MAX_SPREAD };
  });
  return { rows, checks, totalSeconds: (Date.now() - t0) / 1000 };
}
