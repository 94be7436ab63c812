/**
 * @module
 * `--profile`: one run per scenario with the V8 sampling profiler attached to the Worker's isolate (the
 * Worker and its Durable Objects) through the runtime's inspector: workerd's own
 * (`--inspector-addr=127.0.0.1:0`, opened only in this mode) or wrangler dev's inspector proxy. With `--baseline-ref`,
 * each product scenario is profiled on the baseline build too, right after this build's (`name@baseline`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertStable, fmt, stamp } from '../lib/env.ts';
import { type CpuProfile, inspect, type ProfileSummary, summarizeProfile } from '../lib/inspector.ts';
import { check, load } from '../lib/load.ts';
import { type Bench, stopTarget } from '../lib/measure.ts';
import { PROFILE_DEFAULT, prime, scenario, scenarioNames } from '../lib/scenarios.ts';
import type { Target } from '../lib/targets.ts';
import { BENCH } from '../lib/workers.ts';
import { runsOf, startSlot } from './scenarios.ts';

export type ProfileResult = Record<string, ProfileSummary & { completed: number; rps: number; file: string }>;

export async function runProfile(bench: Bench, started: Date): Promise<ProfileResult> {
  const { settings, origin } = bench;
  const names = scenarioNames(settings.only ?? PROFILE_DEFAULT);
  for (const name of names) if (scenario(name).slot === 'origin') throw new Error(`cannot profile ${name}: it runs no Worker`);
  const dir = join(BENCH, 'results');
  mkdirSync(dir, { recursive: true });
  console.log('\nprofile: one run per scenario, V8 sampling profiler attached');
  const targets = new Map<string, Target>();
  const out: ProfileResult = {};
  const primed = new Map<string, string>();
  for (const { id: name, s, place } of runsOf(names, bench.baseline !== undefined)) {
    if (s.slot === 'origin') continue;
    let target = targets.get(place);
    if (target === undefined) targets.set(place, (target = await startSlot(bench, s.slot, `${place}-profile`, true, s.baseline)));
    if (s.key === 'fixed' && !primed.has(place)) primed.set(place, await prime(target.url, s, origin.count, () => origin.settle()));
    if (target.inspectorUrl === undefined) throw new Error(`${target.label}: no inspector`);
    const prefix = `profile-${name}-`;
    if (settings.warmupS > 0) await load(target.url, s, settings, { keyPrefix: `${prefix}w-`, durationS: settings.warmupS });
    const session = await inspect(target.inspectorUrl);
    let profile: CpuProfile;
    let run;
    let before: number;
    let after: number;
    try {
      await session.send('Profiler.enable');
      await session.send('Profiler.setSamplingInterval', { interval: 250 });
      before = await origin.settle();
      await session.send('Profiler.start');
      run = await load(target.url, s, settings, {
        keyPrefix: `${prefix}m-`,
        durationS: settings.durationS,
        expectedBody: s.key === 'fixed' && s.expect === 201 ? primed.get(place) : undefined,
      });
      after = await origin.settle();
      ({ profile } = await session.send<{ profile: CpuProfile }>('Profiler.stop'));
    } finally {
      session.close();
    }
    assertStable(bench.digest, bench.live, `${name} (profile)`);
    await check(`${name} (profile)`, s, run, before, after, origin, `${prefix}m-`, settings.connections);
    const file = join(dir, `${stamp(started)}-${name}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    const completed = run.result.requests.total;
    const summary = summarizeProfile(profile, completed);
    out[name] = { completed, rps: completed / run.result.duration, file, ...summary };
    console.log(
      `\n  ${name}: ${completed} requests, ${fmt(out[name].rps)} req/s under the profiler; JS-visible busy time ${fmt(summary.busyUsPerReq)} µs/req -> ${file}`,
    );
    for (const t of summary.top.slice(0, 15))
      console.log(`    ${fmt(t.usPerReq, 1).padStart(7)} µs/req ${fmt(t.share * 100, 1).padStart(5)}%  ${t.fn}`);
  }
  for (const target of targets.values()) await stopTarget(bench, target);
  return out;
}
