/**
 * @module
 * Billing counts: each scenario's request shape, a fixed number of times, through the metered Worker
 * (`bench/metered/`: the product's proxy app and the design floor's Worker with their Durable Object
 * classes subclassed to count), then what the platform bills per request and per million requests.
 * A second, short pass brings expiry forward to count what each stored key's alarm costs, which also
 * shows that alarms fire on this runtime.
 */
import { fmt } from '../lib/env.ts';
import { fail } from '../lib/load.ts';
import { type Bench, startTarget, stopTarget } from '../lib/measure.ts';
import { PATH, requestHeaders, type ScenarioName, SCENARIOS } from '../lib/scenarios.ts';
import type { Target } from '../lib/targets.ts';
import { readWorkerConfig } from '../lib/workers.ts';
import { type Counters, emptyCounters } from '../metered/counters.ts';

/** Durable Objects prices, as quoted (see `source`). */
export const PRICES = {
  source: 'developers.cloudflare.com/durable-objects/platform/pricing/ (Workers Paid)',
  readOn: '2026-11-30',
  text: 'requests $0.15/M after 1M included (each RPC method call and each alarm invocation is one); duration $12.50/M GB-s after 400,000 GB-s, billed at 128 MB; SQLite rows read $0.001/M after 25 B/month; rows written $1.00/M after 50 M/month (each setAlarm() is one row written); stored data $0.20/GB-month after 5 GB',
  requestPerM: 0.15,
  rowReadPerM: 0.001,
  rowWrittenPerM: 1.0,
  storagePerGbMonth: 0.2,
};

type Kind = 'product' | 'design' | 'handler';
/** Whose Durable Object class a kind's counters are: handler mode uses the product's. */
const counted = (kind: Kind): 'product' | 'design' => (kind === 'handler' ? 'product' : kind);
/** The shapes each kind is counted for: handler mode for its first-time write and its replay. */
const shapesOf = (kind: Kind): ScenarioName[] => (kind === 'handler' ? ['replay', 'first'] : SHAPES);

export interface BillingRow {
  scenario: string;
  worker: Kind;
  requests: number;
  statuses: Record<string, number>;
  methods: Record<string, number>;
  /** Per request; `rowsWritten` includes one row per setAlarm(). */
  perRequest: { doRequests: number; rowsRead: number; rowsWritten: number; setAlarm: number; deleteAll: number };
  bytesPerKey: number | undefined;
  /** Durable Objects requests and rows of a million such requests, in $. */
  doCostPerMillion: number;
}

export interface BillingResult {
  requestsPerScenario: number;
  workerSide: string;
  prices: typeof PRICES;
  rows: BillingRow[];
  notes: string[];
}

const SHAPES: ScenarioName[] = ['passthrough_post', 'passthrough_get', 'replay', 'conflict', 'first'];

/** What the design floor answers where it differs from the product: it keeps no fingerprint, so a reused key replays. */
const expected = (kind: Kind, name: ScenarioName): number => (kind === 'design' && name === 'conflict' ? 201 : SCENARIOS[name].expect);

async function meter(target: Target): Promise<Record<'product' | 'design', Counters>> {
  const all = (await (await fetch(`${target.url}/__meter`)).json()) as Partial<Record<'product' | 'design', Counters>>;
  return { product: all.product ?? emptyCounters(), design: all.design ?? emptyCounters() };
}
const resetMeter = async (target: Target): Promise<void> =>
  void (await fetch(`${target.url}/__meter/reset`, { method: 'POST' })).body?.cancel();

/** Sends `count` requests of one shape (8 at a time); returns the statuses. */
async function drive(
  target: Target,
  kind: Kind,
  name: ScenarioName,
  count: number,
  key: (i: number) => string | undefined,
): Promise<Record<string, number>> {
  const s = SCENARIOS[name];
  const statuses: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = next++; i < count; i = next++) {
        const headers: Record<string, string> = { ...requestHeaders(s), 'x-bench-worker': kind };
        const k = key(i);
        if (k !== undefined) headers['idempotency-key'] = k;
        const res = await fetch(`${target.url}${PATH}`, { method: s.method, headers, ...(s.body !== undefined ? { body: s.body } : {}) });
        await res.arrayBuffer();
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      }
    }),
  );
  return statuses;
}

function row(name: string, kind: Kind, requests: number, statuses: Record<string, number>, c: Counters, perKey: boolean): BillingRow {
  const per = (x: number): number => x / requests;
  const perRequest = {
    doRequests: per(c.doRequests),
    rowsRead: per(c.rowsRead),
    rowsWritten: per(c.rowsWritten + c.setAlarm),
    setAlarm: per(c.setAlarm),
    deleteAll: per(c.deleteAll),
  };
  const doCostPerMillion =
    perRequest.doRequests * PRICES.requestPerM + perRequest.rowsRead * PRICES.rowReadPerM + perRequest.rowsWritten * PRICES.rowWrittenPerM;
  return {
    scenario: name,
    worker: kind,
    requests,
    statuses,
    methods: c.methods,
    perRequest,
    bytesPerKey: perKey && c.objects > 0 ? c.bytesStored / c.objects : undefined,
    doCostPerMillion,
  };
}

export async function runBilling(bench: Bench): Promise<BillingResult> {
  const { settings, origin } = bench;
  const n = settings.billingRequests;
  const product = readWorkerConfig('product');
  const design = readWorkerConfig('design');
  const meteredConfig = readWorkerConfig('metered');
  for (const c of [product, design]) {
    if (c.compatibilityDate !== meteredConfig.compatibilityDate)
      throw new Error(
        `bench/metered/wrangler.toml: compatibility_date ${meteredConfig.compatibilityDate} differs from ${c.configPath} (${c.compatibilityDate}); make them equal`,
      );
  }
  const vars = { ...design.vars, ...product.vars };
  console.log(`\nbilling: ${n} requests per scenario through the metered Worker`);
  const target = await startTarget(bench, 'metered', 'metered', { vars });
  const rows: BillingRow[] = [];
  try {
    for (const kind of ['product', 'design', 'handler'] as const) {
      const fixed = `billing-${kind}-fixed`;
      await drive(target, kind, 'replay', 1, () => fixed);
      for (const name of shapesOf(kind)) {
        const s = SCENARIOS[name];
        const prefix = `billing-${kind}-${name}-`;
        await origin.settle();
        await resetMeter(target);
        const before = await origin.settle();
        const statuses = await drive(target, kind, name, n, (i) =>
          s.key === 'fixed' ? fixed : s.key === 'unique' ? `${prefix}${i}` : undefined,
        );
        const after = await origin.settle();
        const c = (await meter(target))[counted(kind)];
        const want = expected(kind, name);
        if (statuses[want] !== n)
          fail(
            `billing ${kind} ${name}: expected ${n} × ${want}, got ${JSON.stringify(statuses)}; the Worker's output ends:\n${target.output().slice(-1500)}`,
          );
        const calls = after - before;
        const wantCalls = s.originCalls === 'none' ? 0 : n;
        if (calls !== wantCalls) fail(`billing ${kind} ${name}: ${calls} origin calls, expected ${wantCalls}`);
        if (s.key === 'unique') {
          const keys = await origin.keys(prefix);
          if (Object.keys(keys).length !== n || Object.values(keys).some((x) => x !== 1))
            fail(`billing ${kind} ${name}: not every key reached the origin exactly once`);
        }
        const r = row(name, kind, n, statuses, c, s.key === 'unique');
        rows.push(r);
        console.log(
          `  ${`${kind} ${name}`.padEnd(26)} DO requests ${fmt(r.perRequest.doRequests, 3)}/req  rows read ${fmt(r.perRequest.rowsRead, 2)}/req  rows written ${fmt(r.perRequest.rowsWritten, 2)}/req  ${JSON.stringify(c.methods)}`,
        );
      }
    }
  } finally {
    await stopTarget(bench, target);
  }
  rows.push(...(await expiryRows(bench, vars)));
  return {
    requestsPerScenario: n,
    workerSide:
      "the product's Worker side is the proxy Worker's own fetch handler (`proxyWorker`, imported in bench/metered/product.ts), so its replay cache and its RPC calls are the real ones; the design floor's is its own fetch handler; `handler` is the product's `idempotency()` middleware in handler mode, its handler calling the origin itself",
    prices: PRICES,
    rows,
    notes: [
      'The design floor keeps no request fingerprint: its "conflict" (same key, other body) is answered as a replay (201), which is what is counted for it.',
      'Rows written include one row per setAlarm() (pricing page). Rows a deleteAll() removes are billed as rows written but are not visible to the counters; deleteAll() calls are listed instead.',
      'Duration (GB-s while an object is active, including while it waits for the origin) and the Workers request and CPU price are not included.',
      'bytes stored/key: `sql.databaseSize` of each object after its latest call (the page counts stored data until deleteAll()); at $0.20/GB-month a key held for the 24 h TTL costs about bytes × 6.6e-12 $.',
      "expiry rows: the same first-time requests, then the time until each stored key's alarm has run (product: IDEMPOTENCY_TTL_SECONDS=15, ORIGIN_LEASE_MS=1000; design floor: its 24 h alarm brought forward to 15 s by the metered subclass); counted per stored key, alarm runs only.",
    ],
  };
}

/** What expiry costs per stored key, and proof that alarms fire here. */
async function expiryRows(bench: Bench, vars: Record<string, unknown>): Promise<BillingRow[]> {
  const n = Math.min(bench.settings.billingRequests, 200);
  const target = await startTarget(bench, 'metered', 'metered-expiry', {
    // Expiry well after both kinds' requests are sent: an alarm that ran before the counters were reset would go uncounted
    // (at 3 s, the product's first alarms ran while the design floor's requests were still being sent on a busy machine).
    vars: { ...vars, IDEMPOTENCY_TTL_SECONDS: '15', ORIGIN_LEASE_MS: '1000', ORIGIN_TIMEOUT_MS: '800', BENCH_ALARM_IN_MS: '15000' },
  });
  const rows: BillingRow[] = [];
  try {
    const statuses: Record<'product' | 'design', Record<string, number>> = { product: {}, design: {} };
    for (const kind of ['product', 'design'] as const)
      statuses[kind] = await drive(target, kind, 'first', n, (i) => `billing-expiry-${kind}-${i}`);
    await resetMeter(target);
    const t0 = Date.now();
    let counts = await meter(target);
    while ((counts.product.deleteAll < n || counts.design.deleteAll < n) && Date.now() - t0 < 90_000) {
      await new Promise((r) => setTimeout(r, 250));
      counts = await meter(target);
    }
    for (const kind of ['product', 'design'] as const) {
      const alarms = counts[kind].methods['alarm'] ?? 0;
      if (counts[kind].deleteAll < n)
        fail(
          `billing expiry ${kind}: ${counts[kind].deleteAll} of ${n} stored keys were deleted by their alarm within 90 s (${alarms} alarm runs)`,
        );
      console.log(
        `  ${`${kind} expiry`.padEnd(26)} ${alarms} alarm runs, ${counts[kind].deleteAll} deleteAll() for ${n} stored keys (${fmt((Date.now() - t0) / 1000, 1)} s)`,
      );
      rows.push(row('expiry (alarm)', kind, n, statuses[kind], counts[kind], false));
    }
  } finally {
    await stopTarget(bench, target);
  }
  return rows;
}
