/**
 * @module
 * The Markdown report: where and how it ran, then the ratios (with per-repeat values and met/missed),
 * the raw table, the latency table, the billing table; or the scale or profile tables.
 */
import type { BillingResult } from '../modes/billing.ts';
import type { ProfileResult } from '../modes/profile.ts';
import type { ScaleResult } from '../modes/scale.ts';
import type { ScenariosResult } from '../modes/scenarios.ts';
import type { StallResult } from '../modes/stall.ts';
import { type StreamRequest, type StreamResult, TTFB_TARGET_MS } from '../modes/stream.ts';
import type { Settings } from './cli.ts';
import { fmt, type Machine, mib, type Versions } from './env.ts';
import type { Baseline } from './measure.ts';
import { BODY } from './scenarios.ts';

export interface Report {
  startedAt: string;
  finishedAt?: string;
  settings: Settings;
  machine: Machine;
  versions: Versions;
  product: { head: string; productSourceDirty: boolean | null; dirtyFiles: string[]; sourceDigest: string; baseline?: Baseline };
  /** Every Worker process started, and how. */
  targets: { label: string; command: string }[];
  scenarios?: ScenariosResult;
  stream?: StreamResult;
  scale?: ScaleResult;
  profile?: ProfileResult;
  billing?: BillingResult;
  stall?: StallResult;
  failures?: string[];
}

const times = (x: number): string => `${fmt(x, 2)}x`;
const signed = (x: number, digits = 1): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(digits)}` : 'n/a');

function header(r: Report): string[] {
  const { machine: m, versions: v, settings: s } = r;
  const b = r.product.baseline;
  const baseline =
    b === undefined
      ? ''
      : `; baseline (\`name@baseline\`, ratios this / baseline): the product at ${b.commit.slice(0, 12)} (\`--baseline-ref ${b.ref}\`), built the same way from a temporary worktree`;
  const runtime =
    s.runtime === 'workerd'
      ? `Runtime: bare \`workerd\` (the binary wrangler ships), each Worker's \`wrangler deploy --dry-run\` bundle with a generated config (its vars from its wrangler config, Durable Objects with SQLite on local disk), one process per Worker; CPU = utime+stime of that process.`
      : `Runtime: \`wrangler dev --ip 127.0.0.1 --port 0 --inspector-port 0 --log-level info\` per Worker (own --persist-to)${
          Object.keys(s.wranglerEnv).length
            ? `, env ${Object.entries(s.wranglerEnv)
                .map(([k, x]) => `${k}=${x}`)
                .join(' ')}`
            : ''
        }; "runtime" CPU is the workerd that runs the Worker and its Durable Objects, "all workerd" adds wrangler dev's entry proxy, "wrangler node" is wrangler's own Node processes.`;
  const load =
    s.mode === 'scale'
      ? `first-time requests in batches (probe: the last ${s.scaleProbe} requests before each level, measured; fill: the ones before, unmeasured except req/s); "hot" right after the probe, "idle" after ${s.scaleIdleS} s without traffic`
      : s.mode === 'profile'
        ? `${s.durationS} s per scenario under the V8 sampling profiler (250 µs), after ${s.warmupS} s warm-up`
        : s.mode === 'billing'
          ? `${s.billingRequests} requests per scenario through the metered Worker`
          : s.mode === 'stall'
            ? `${s.stallReaders} stalled readers per case (see the stall table)`
            : `${s.durationS} s measured after ${s.warmupS} s warm-up, median of ${s.repeats} interleaved repeats; first-time scenarios on a new process with empty storage every run`;
  return [
    `Product: commit ${r.product.head.slice(0, 12)}${r.product.productSourceDirty ? ' plus uncommitted changes' : ''}${baseline}. Machine: ${m.nproc} × ${m.cpuModel}, ${m.memTotalMiB} MiB (load average at start ${m.loadavgAtStart}). ` +
      `Node ${v.node}, wrangler ${v.wrangler}, workerd ${v.workerd} (npm ${v.workerdPackage}), autocannon ${v.autocannon}.`,
    `Settings: ${s.connections} connections, pipelining ${s.pipelining}, ${load}, origin delay ${s.originDelayMs} ms, ${Buffer.byteLength(BODY)}-byte JSON body. ${runtime} CPU per completed request from /proc (CLK_TCK ${m.clkTck}); ${m.placement ?? 'processes not pinned to CPUs'}. Latency resolution 1 ms.`,
    '',
  ];
}

function scenarioTables(x: ScenariosResult, s: Settings): string[] {
  const lines: string[] = [];
  if (x.ratios.length > 0) {
    lines.push('| ratio | metric | value | per repeat | target | |', '|---|---|---:|---|---|---|');
    for (const r of x.ratios) {
      lines.push(
        `| ${r.label} | ${r.metric} | ${times(r.value)} | ${r.perRepeat.map((p) => fmt(p, 2)).join(', ')} | ${r.target === null ? '–' : `${r.op === '>=' ? '≥' : '≤'} ${r.target.toFixed(2)}x`} | ${r.met === null ? '' : r.met ? 'met' : '**missed**'} |`,
      );
    }
    lines.push('');
  }
  const wranglerDev = s.runtime === 'wrangler-dev';
  lines.push(
    `| scenario | req/s | p50 ms | p99 ms | runtime CPU µs/req |${wranglerDev ? ' all workerd CPU µs/req | wrangler node CPU µs/req |' : ''} origin CPU µs/req | non-2xx |`,
  );
  lines.push(`|---|---:|---:|---:|---:|${wranglerDev ? '---:|---:|' : ''}---:|---:|`);
  for (const [name, v] of Object.entries(x.summary)) {
    lines.push(
      `| ${name} | ${fmt(v.rps)} | ${fmt(v.latencyP50Ms, 1)} | ${fmt(v.latencyP99Ms, 1)} | ${fmt(v.cpuUsPerReq.runtime)} |${wranglerDev ? ` ${fmt(v.cpuUsPerReq.workerd)} | ${fmt(v.cpuUsPerReq.wranglerNode)} |` : ''} ${fmt(v.cpuUsPerReq.origin)} | ${v.non2xx} |`,
    );
  }
  if (x.latency.length > 0) {
    lines.push(
      '',
      `Latency added over the baseline (medians, origin delay ${s.originDelayMs} ms${s.originDelayMs === 20 ? '' : '; the target table is for --origin-delay-ms 20'}):`,
      '',
    );
    lines.push(
      '| scenario | baseline | p50 ms | baseline p50 | added p50 ms | p50 ratio | p99 ms | baseline p99 | added p99 ms | p99 ratio |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const l of x.latency) {
      lines.push(
        `| ${l.scenario} | ${l.baseline} | ${fmt(l.p50Ms, 1)} | ${fmt(l.baselineP50Ms, 1)} | ${signed(l.p50Ms - l.baselineP50Ms)} | ${times(l.p50Ms / l.baselineP50Ms)} | ${fmt(l.p99Ms, 1)} | ${fmt(l.baselineP99Ms, 1)} | ${signed(l.p99Ms - l.baselineP99Ms)} | ${times(l.p99Ms / l.baselineP99Ms)} |`,
      );
    }
  }
  return lines;
}

const STREAM_ROWS: [StreamRequest, string][] = [
  ['direct', 'the origin directly'],
  ['floor', 'the floor'],
  ['first', 'the product, first-time keyed POST'],
  ['replay', 'the product, its replay'],
  ['first@baseline', 'the baseline build, first-time keyed POST'],
  ['replay@baseline', 'the baseline build, its replay'],
];

function streamTables(x: StreamResult, repeats: number): string[] {
  const { floor } = x.summary;
  const lines = [
    `Stream: the origin trickles ${x.trickle.bytes} bytes (${x.trickle.chunks} chunks of ${x.trickle.chunkBytes}, one every ${x.trickle.intervalMs} ms), one request at a time on a kept-alive connection; medians of ${repeats}. First byte = first body byte; the target (issue #19) is the first-time request's first byte within +${TTFB_TARGET_MS} ms of the floor's at p50.`,
    '',
    '| request | headers p50 ms | first byte p50 ms | vs floor | last byte p50 ms | vs floor | first byte per repeat | last byte per repeat |',
    '|---|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const [request, label] of STREAM_ROWS) {
    const v = x.summary[request];
    if (v === undefined) continue;
    lines.push(
      `| ${label} | ${fmt(v.headersMs, 1)} | ${fmt(v.ttfbMs, 1)} | ${signed(v.ttfbMs - floor.ttfbMs)} | ${fmt(v.ttlbMs, 1)} | ${signed(v.ttlbMs - floor.ttlbMs)} | ${v.perRepeatTtfbMs.map((p) => fmt(p, 1)).join(', ')} | ${v.perRepeatTtlbMs.map((p) => fmt(p, 1)).join(', ')} |`,
    );
  }
  lines.push(
    '',
    `- First-time first byte within +${TTFB_TARGET_MS} ms of the floor's: ${x.ttfbTargetMet ? 'met' : '**missed**'} (${signed(x.summary.first.ttfbMs - floor.ttfbMs)} ms).`,
  );
  return lines;
}

function scaleTables(x: ScaleResult, s: Settings): string[] {
  const lines = [
    `| worker | stored keys | req/s (probe) | vs first level | req/s (fill) | fill time s | p50 ms | p99 ms | runtime CPU µs/req | RSS MiB (hot) | RSS MiB (${s.scaleIdleS} s idle) | disk bytes/key (hot) | disk bytes/key (idle) | bytes per .sqlite (idle) | open WAL files (hot / idle) |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of x.rows) {
    lines.push(
      `| ${r.scenario} | ${r.storedKeys} | ${fmt(r.rps)} | ${r.vsFirstLevel === undefined ? '–' : times(r.vsFirstLevel)} | ${fmt(r.fillRps)} | ${fmt(r.fillSeconds, 1)} | ${fmt(r.latencyP50Ms, 1)} | ${fmt(r.latencyP99Ms, 1)} | ${fmt(r.cpuUsPerReq)} | ` +
        `${fmt(mib(r.hot.rssRuntimeBytes), 1)} | ${fmt(mib(r.idle?.rssRuntimeBytes ?? Number.NaN), 1)} | ${fmt(r.hot.diskBytesPerKey)} | ${fmt(r.idle?.diskBytesPerKey)} | ${fmt(r.idle?.sqliteBytesPerFile)} | ${r.hot.walFiles} / ${r.idle?.walFiles ?? 'n/a'} |`,
    );
  }
  lines.push('');
  for (const c of x.checks)
    lines.push(
      `- ${c.scenario}: first-time req/s across levels within ${c.maxSpread * 100}%: ${c.met ? 'met' : '**missed**'} (lowest / highest probe = ${times(c.lowOverHigh)})`,
    );
  lines.push(`- Total time in scale mode: ${fmt(x.totalSeconds)} s.`);
  return lines;
}

function profileTables(x: ProfileResult): string[] {
  const lines: string[] = [];
  for (const [name, p] of Object.entries(x)) {
    lines.push(
      `**${name}** (${p.completed} requests; busy ${fmt(p.busyUsPerReq)} µs/req of V8-sampled time in the isolate)`,
      '',
      '| µs/req | share | function (bundle file:line) |',
      '|---:|---:|---|',
    );
    for (const t of p.top.slice(0, 15)) lines.push(`| ${fmt(t.usPerReq, 1)} | ${fmt(t.share * 100, 1)}% | \`${t.fn}\` |`);
    lines.push('');
  }
  return lines;
}

/** The order of a scenario's rows: the proxy, the design floor, then handler mode. */
const WORKERS = ['product', 'design', 'handler'];

function billingTables(x: BillingResult): string[] {
  const lines = [
    `What the platform bills per request (${x.requestsPerScenario} requests per scenario through \`bench/metered/\`, which subclasses each Durable Object class to count; ${x.workerSide}).`,
    `Prices (${x.prices.source}, read ${x.prices.readOn}): ${x.prices.text}. "$ per 1M" = a million such requests' Durable Object requests, rows read and rows written at those prices, past the included amounts.`,
    '',
    '| scenario | worker | DO requests/req | rows read/req | rows written/req | setAlarm/req | deleteAll/req | bytes stored/key | $ per 1M |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  // Product and design floor side by side, scenario by scenario.
  const order = [...new Set(x.rows.map((r) => r.scenario))];
  const rows = [...x.rows].sort(
    (a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario) || WORKERS.indexOf(a.worker) - WORKERS.indexOf(b.worker),
  );
  for (const r of rows) {
    lines.push(
      `| ${r.scenario} | ${r.worker} | ${fmt(r.perRequest.doRequests, 3)} | ${fmt(r.perRequest.rowsRead, 2)} | ${fmt(r.perRequest.rowsWritten, 2)} | ${fmt(r.perRequest.setAlarm, 2)} | ${fmt(r.perRequest.deleteAll, 2)} | ${r.bytesPerKey === undefined ? '–' : fmt(r.bytesPerKey)} | ${fmt(r.doCostPerMillion, 4)} |`,
    );
  }
  lines.push('', ...x.notes.map((note) => `- ${note}`));
  return lines;
}

function stallTables(x: StallResult, repeats: number): string[] {
  const lines = [
    `Stall: ${x.readers} readers stop reading one key's answer of ${fmt(mib(x.answerBytes), 1)} MiB (each pauses its socket once the head arrived); the runtime's RSS sampled every 20 ms for ${x.holdS} s, peak minus the RSS just before; median of ${repeats} runs, each on a new process.`,
    '',
    '| case | added RSS MiB (median) | per repeat | answers (status: count, all repeats) |',
    '|---|---:|---|---|',
  ];
  for (const [kind, v] of Object.entries(x.summary)) {
    const statuses = Object.entries(v.statuses)
      .map(([s, n]) => `${s}: ${n}`)
      .join(', ');
    lines.push(`| ${kind} | ${fmt(mib(v.addedBytes), 1)} | ${v.perRepeat.map((b) => fmt(mib(b), 1)).join(', ')} | ${statuses} |`);
  }
  return lines;
}

export function markdown(r: Report): string {
  const lines = header(r);
  if (r.scenarios) lines.push(...scenarioTables(r.scenarios, r.settings));
  if (r.stream) lines.push(...(r.scenarios ? [''] : []), ...streamTables(r.stream, r.settings.repeats));
  if (r.profile) lines.push(...profileTables(r.profile));
  if (r.scale) lines.push(...scaleTables(r.scale, r.settings));
  if (r.billing) lines.push('', ...billingTables(r.billing));
  if (r.stall) lines.push(...stallTables(r.stall, r.settings.repeats));
  return lines.join('\n');
}
