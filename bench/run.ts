/**
 * @module
 * `npm run bench` (`node bench/run.ts`): what the idempotency layer costs, as ratios to baselines measured
 * in the same run on the same machine.
 *
 * Starts the benchmark origin (`bench/origin.ts`) and each Worker from its own wrangler config: the bare
 * pass-through "floor" (`bench/floor/`), the simplest per-key Durable Object design, the "design floor"
 * (`bench/design-floor/`), and the product (`./wrangler.toml`), by default each on the bare `workerd`
 * (`--runtime wrangler-dev` for `wrangler dev`). Then, per mode (`--help`):
 * - scenarios (`modes/scenarios.ts`), billing counts (`modes/billing.ts`, through `bench/metered/`), then the
 *   stream scenario (`modes/stream.ts`);
 * - `--scale` (`modes/scale.ts`), `--profile` (`modes/profile.ts`), `--billing` (billing only), `--stall` (`modes/stall.ts`).
 * With `--baseline-ref`, the product as built from that commit (`lib/workers.ts`) runs next to this one's.
 * Prints a Markdown report (`lib/report.ts`) and writes it with every number to `bench/results/<time>.json`.
 *
 * Every child runs in its own process group and is stopped by that group id, on success, error, SIGINT
 * or SIGTERM; a reaper process does it even if this process is killed outright (`scripts/lib/cleanup.ts`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBilling } from './modes/billing.ts';
import { runProfile } from './modes/profile.ts';
import { runScale } from './modes/scale.ts';
import { runScenarios } from './modes/scenarios.ts';
import { runStall } from './modes/stall.ts';
import { runStream, STREAM } from './modes/stream.ts';
import { type Cleanup, installCleanup } from '../scripts/lib/cleanup.ts';
import { parseSettings, type Settings, UsageError } from './lib/cli.ts';
import { gitDescribe, machine, sourceDigest, stamp, versions } from './lib/env.ts';
import { failures } from './lib/load.ts';
import type { Bench } from './lib/measure.ts';
import { startOrigin } from './lib/origin.ts';
import { markdown, type Report } from './lib/report.ts';
import { createRunner } from './lib/targets.ts';
import { BENCH, buildProductAt } from './lib/workers.ts';
import { placement } from './lib/placement.ts';

async function main(settings: Settings, cleanup: Cleanup): Promise<number> {
  const started = new Date();
  const digest = sourceDigest();
  const git = gitDescribe();
  console.log(
    `idempotency-proxy benchmark (${settings.mode}, runtime ${settings.runtime}); product at ${git.head.slice(0, 12)}${git.productSourceDirty ? ' with uncommitted changes in src/ or wrangler.toml' : ''}`,
  );
  const place = placement(settings.pin && settings.runtime === 'workerd');
  console.log(`placement: ${place.description}`);
  const origin = await startOrigin(settings.originDelayMs, cleanup, place.helpers);
  console.log(`origin: ${origin.url} (pid ${origin.pid}, delay ${settings.originDelayMs} ms)`);
  const bench: Bench = {
    settings,
    origin,
    cleanup,
    digest,
    runner: createRunner(settings.runtime, origin.url, cleanup, settings.wranglerEnv, place.runtime),
    live: new Set(),
    started: [],
  };
  const report: Report = {
    startedAt: started.toISOString(),
    settings,
    machine: { ...machine(), placement: place.description },
    versions: versions(),
    product: { ...git, sourceDigest: digest },
    targets: bench.started,
  };
  console.log(
    `machine: ${report.machine.nproc} × ${report.machine.cpuModel}; node ${report.versions.node}, wrangler ${report.versions.wrangler}, workerd ${report.versions.workerd}`,
  );
  if (settings.baselineRef !== undefined) {
    const { commit, built } = await buildProductAt(settings.baselineRef, cleanup);
    bench.runner.provide('baseline', built);
    report.product.baseline = bench.baseline = { ref: settings.baselineRef, commit };
    console.log(`baseline: the product at ${commit.slice(0, 12)} (--baseline-ref ${settings.baselineRef}), built`);
  }

  if (settings.mode === 'scale') report.scale = await runScale(bench);
  else if (settings.mode === 'profile') report.profile = await runProfile(bench, started);
  else if (settings.mode === 'stall') report.stall = await runStall(bench);
  else {
    const { only } = settings;
    if (settings.mode === 'scenarios' && only?.every((name) => name === STREAM) !== true) report.scenarios = await runScenarios(bench);
    if (settings.billingRequests > 0) report.billing = await runBilling(bench);
    // After the billing counts, so its slower machine state cannot delay their requests (the expiry pass's alarms
    // used to fire before its counters were reset then; it now waits 15 s).
    if (settings.mode === 'scenarios' && (only === undefined || only.includes(STREAM))) report.stream = await runStream(bench);
  }
  report.failures = failures;
  report.finishedAt = new Date().toISOString();

  const md = markdown(report);
  console.log(`\n${md}\n`);
  if (settings.json) {
    const dir = join(BENCH, 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${stamp(started)}${settings.mode === 'scenarios' ? '' : `-${settings.mode}`}.json`);
    writeFileSync(file, `${JSON.stringify({ ...report, markdown: md }, null, 2)}\n`);
    console.log(`results: ${file}`);
  }
  if (failures.length > 0) {
    console.error(`\n${failures.length} correctness check(s) FAILED:\n- ${failures.join('\n- ')}`);
    return 1;
  }
  console.log('all correctness checks passed');
  return 0;
}

let settings: Settings | undefined;
try {
  settings = parseSettings(process.argv.slice(2));
} catch (error) {
  console.error(error instanceof UsageError || error instanceof TypeError ? error.message : error);
  process.exit(2);
}
if (settings === undefined) process.exit(0);
if (Number(process.versions.node.split('.')[0]) < 22) {
  console.error(`Node ${process.version}: wrangler needs Node >= 22. Run through \`npm run bench\` (Node 22 from node_modules/.bin).`);
  process.exit(2);
}
const cleanup = installCleanup();
let code = 1;
try {
  code = await main(settings, cleanup);
} catch (error) {
  if (!cleanup.interrupted())
    console.error(`\nbenchmark aborted: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  code = 1;
} finally {
  await cleanup.run();
}
process.exit(code);
