/**
 * `idempotency-check` (issue #32) against this proxy under `wrangler dev`, in both modes, as its own process: every
 * check passes. Black-box, the proxy stands in front of a recording origin this file serves (each execution answers
 * with its own id, so executions can be told apart by the bytes); in origin mode, in front of a relay to the test
 * origin the command serves itself. The command against other layers: `test/check/cli.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RecordingOrigin, startRecordingOrigin } from '../../src/check/origin.ts';
import { named, type Relay, runCli, startRelay } from '../check/run-cli.ts';
import { newStateDir, removeDir, type RunningProxy, startProxy } from './harness';

const ARGS = ['-H', 'Authorization: Bearer sk_test_first', '--as', 'Authorization: Bearer sk_test_second', '--json'];
const ORIGIN_ONLY = ['5xx_not_stored', '4xx_stored', 'broken_not_rerun', 'stream_replay'];

let origin: RecordingOrigin;
let relay: Relay;
const proxies: RunningProxy[] = [];
const stateDirs: string[] = [];
let blackBox: RunningProxy;
let originMode: RunningProxy;

beforeAll(async () => {
  origin = await startRecordingOrigin();
  relay = await startRelay();
  const start = (originUrl: string) => {
    const stateDir = newStateDir();
    stateDirs.push(stateDir);
    return startProxy({ originUrl, stateDir }).then((proxy) => (proxies.push(proxy), proxy));
  };
  [blackBox, originMode] = await Promise.all([start(origin.url), start(relay.url)]);
});

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  await relay?.close();
  await origin?.close();
  for (const dir of stateDirs) removeDir(dir);
});

describe('idempotency-check against the proxy', () => {
  it('black-box: every check that needs no test origin passes; those that need one are skipped, saying so', async () => {
    const run = await runCli([`${blackBox.url}/v1/charges`, ...ARGS]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(named(run, 'fail')).toEqual([]);
    expect(named(run, 'skip')).toEqual(ORIGIN_ONLY);
    for (const check of run.json!.checks.filter((c) => c.status === 'skip')) expect(check.detail).toMatch(/^origin mode only/);
    expect(run.json!.checks.find((check) => check.name === 'concurrent')!.detail).toMatch(/^1 execution \(told apart by their bytes\)/);
  });

  it('origin mode: every check passes, executions counted by the test origin', async () => {
    const run = await runCli([`${originMode.url}/v1/charges`, ...ARGS, '--origin-port', '0'], { onOrigin: relay.target });
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.json!.checks.filter((check) => check.status !== 'pass')).toEqual([]);
    expect(run.json).toMatchObject({ passed: 12, failed: 0, skipped: 0 });
    expect(run.json!.checks.find((check) => check.name === 'broken_not_rerun')!.detail).toMatch(/the retry got 502 origin_response_lost/);
  });
});
