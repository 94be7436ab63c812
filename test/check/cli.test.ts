/**
 * `idempotency-check` (issue #32) against what is not this proxy: the bare recording origin with no layer in front,
 * a small layer in plain Node (`layer.ts`) as it should be and with one bug each, and targets it must refuse to
 * check. Each run is the command as its own process; in origin mode the layer forwards through a relay to the test
 * origin the command serves. The proxy itself is checked in `test/e2e/check.test.ts`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../scripts/lib/processes.ts';
import { type RecordingOrigin, startRecordingOrigin } from '../../src/check/origin.ts';
import { type Bug, startLayer } from './layer.ts';
import { type CliRun, named, runCli, startRelay } from './run-cli.ts';

const CREDENTIALS = ['-H', 'Authorization: Bearer sk_test_first', '--as', 'Authorization: Bearer sk_test_second'];
const ORIGIN_ONLY = ['5xx_not_stored', '4xx_stored', 'broken_not_rerun', 'stream_replay'];

/** Checks `layer` (started with its upstream at a relay) in origin mode. */
async function checkLayer(bug: Bug | null): Promise<CliRun> {
  const relay = await startRelay();
  const layer = await startLayer(relay.url, bug);
  try {
    return await runCli([`${layer.url}/v1/charges`, ...CREDENTIALS, '--origin-port', '0', '--json'], { onOrigin: relay.target });
  } finally {
    await layer.close();
    await relay.close();
  }
}

/** The planned bound ("at most N POST requests") and what was sent ("(M writes and R reads sent"). */
function bounds(run: CliRun): { most: number; writes: number } {
  const most = /at most (\d+) POST requests/.exec(run.stderr);
  const sent = /\((\d+) writes and \d+ reads sent in [\d.]+ s\)/.exec(run.stdout + run.stderr);
  return { most: Number(most?.[1]), writes: Number(sent?.[1]) };
}

describe('idempotency-check against the bare recording origin (no layer in front)', () => {
  let origin: RecordingOrigin;
  beforeAll(async () => {
    origin = await startRecordingOrigin();
  });
  afterAll(() => origin?.close());

  it('fails replay, mismatch and concurrent (a table, exit 1), and sends only keyed writes, fewer than it announced', async () => {
    const run = await runCli([`${origin.url}/v1/charges`, ...CREDENTIALS]);
    expect(run.code, run.stderr).toBe(1);
    const rows = Object.fromEntries([...run.stdout.matchAll(/^(\w+) +(pass|FAIL|skip) +\S/gm)].map(([, name, result]) => [name, result]));
    expect(rows).toEqual({
      replay: 'FAIL',
      mismatch: 'FAIL',
      concurrent: 'FAIL',
      read_ignores_key: 'pass',
      key_too_long: 'FAIL',
      scope: 'FAIL',
      ...Object.fromEntries(ORIGIN_ONLY.map((name) => [name, 'skip'])),
      retry_advice: 'skip',
      expiry_advertised: 'skip',
    });
    expect(run.stdout).toMatch(/^concurrent +FAIL +20 executions \(told apart by their bytes\)/m);
    expect(run.stderr).toMatch(/Sends real writes: at most \d+ POST requests and 3 GET requests, within 120 s\./);
    const writes = origin.executions().filter((execution) => execution.method === 'POST');
    expect(writes.filter((execution) => execution.key === null)).toEqual([]);
    const { most, writes: sent } = bounds(run);
    expect(sent).toBe(writes.length);
    expect(sent).toBeLessThanOrEqual(most);
  });
});

describe('idempotency-check against a small layer in plain Node, in origin mode', () => {
  it('passes every check against the layer without a bug (exit 0, the JSON exactly as documented)', async () => {
    const run = await checkLayer(null);
    expect(run.code, run.stderr).toBe(0);
    expect(Object.keys(run.json!)).toEqual(['checks', 'passed', 'failed', 'skipped']);
    for (const check of run.json!.checks) expect(Object.keys(check)).toEqual(['name', 'status', 'detail']);
    expect(run.json!.checks.filter((check) => check.status !== 'pass')).toEqual([]);
    expect(run.json).toMatchObject({ passed: 12, failed: 0, skipped: 0 });
    const { most, writes } = bounds(run);
    expect(writes).toBeLessThanOrEqual(most);
  });

  // Each bug fails the check that names it and passes the others. A replay that runs again fails every check that
  // is a replay (the stored 4xx and the stored stream are replays too), and one that is not marked every check that
  // tells a replay from an execution by its mark.
  // Five at a time (vitest's maxConcurrency): each run is its own process, mostly waiting.
  it.concurrent.for([
    ['check-then-set', ['concurrent'], /executions \(counted by the test origin\)/],
    ['stores-5xx', ['5xx_not_stored'], /the 5xx was kept/],
    ['ignores-body', ['mismatch'], /the first answer, replayed for another body/],
    ['reruns-replay', ['replay', '4xx_stored', 'stream_replay'], /2 executions \(counted by the test origin\)/],
    // Every check that tells a replay from a new execution by its mark.
    ['unmarked', ['replay', 'mismatch', 'scope', '4xx_stored', 'stream_replay'], /not marked as a replay/],
    ['keys-reads', ['read_ignores_key'], /a GET with the write's key got 409 idempotency_key_reused/],
    ['long-keys', ['key_too_long'], /a 129-character key got 200 \(\d+ B\): the seed allows at most 128/],
    ['global-keys', ['scope'], /keys are not per credential/],
    ['forgets-broken', ['broken_not_rerun'], /the retry ran it again \(2 executions/],
    ['advises-retry', ['retry_advice'], /409 for another body \(409 idempotency_key_reused\): says true, but a retry never will/],
    ['no-age', ['expiry_advertised'], /the replay carries no Age/],
  ] as const)('a layer with the bug %s fails %j, and passes every other check', async ([bug, failing, why], { expect }) => {
    const run = await checkLayer(bug);
    expect(run.code, run.stderr).toBe(1);
    expect(named(run, 'fail')).toEqual(failing);
    expect(named(run, 'skip')).toEqual([]);
    expect(run.json!.checks.find((check) => check.name === failing[0])!.detail).toMatch(why);
  });
});

describe('idempotency-check against an API that holds every key it has seen as in progress', () => {
  it('retries a refusal with its key only, and only within the announced bound', async () => {
    const keys: (string | undefined)[] = [];
    const busy = createServer((req, res) => {
      req.resume();
      if (req.method !== 'POST') return void res.writeHead(404).end();
      const key = req.headers['idempotency-key'] as string | undefined;
      const seen = keys.includes(key);
      keys.push(key);
      if (!seen) return void res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: randomUUID() }));
      res.writeHead(409, { 'content-type': 'application/json', 'retry-after': '0' }).end('{"code":"in_progress"}');
    });
    try {
      const run = await runCli([`http://127.0.0.1:${await listen(busy)}/v1/charges`, '--json']);
      expect(run.code, run.stderr).toBe(1);
      const { most, writes } = bounds(run);
      expect(writes).toBeLessThanOrEqual(most);
      expect(keys.filter((key) => key === undefined)).toEqual([]);
      expect(keys.length).toBe(writes);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});

describe('idempotency-check against an API whose answers never differ (black-box)', () => {
  let constant: Server;
  let upstream: string;
  beforeAll(async () => {
    constant = createServer((req, res) => {
      req.resume();
      req.once('end', () => res.writeHead(201, { 'content-type': 'application/json' }).end('{"status":"accepted"}'));
    });
    upstream = `http://127.0.0.1:${await listen(constant)}`;
  });
  afterAll(() => new Promise((resolve) => constant?.close(resolve)));

  // Black-box, a layer that runs a write twice looks like one that runs it once: no check may pass on that. Only the
  // layer's own replay marks can still tell: its concurrent answers say how many of them ran.
  it.each([
    [null, 0, 'skip'],
    ['check-then-set', 1, 'fail'],
  ] as const)('behind the layer with bug %s, no check that cannot see executions passes', async (bug, code, concurrent) => {
    const layer = await startLayer(upstream, bug);
    try {
      const run = await runCli([`${layer.url}/v1/charges`, ...CREDENTIALS, '--json']);
      expect(run.code, run.stderr).toBe(code);
      const unseen =
        /^cannot see executions \(3 writes with different keys got 1 different answer\(s\), so answers do not tell executions apart\)/;
      const detail = concurrent === 'skip' ? unseen : /^\d+ of 20 identical requests ran, by the layer's own replay marks/;
      expect(run.json!.checks.find((check) => check.name === 'concurrent')).toMatchObject({
        status: concurrent,
        detail: expect.stringMatching(detail),
      });
      for (const name of ['replay', 'scope']) {
        expect(run.json!.checks.find((check) => check.name === name)).toMatchObject({
          status: 'skip',
          detail: expect.stringMatching(unseen),
        });
      }
      expect(named(run, 'pass')).toEqual(['mismatch', 'read_ignores_key', 'key_too_long', 'retry_advice', 'expiry_advertised']);
    } finally {
      await layer.close();
    }
  });
});

describe('idempotency-check refuses what it cannot check (exit 2, saying which)', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });
  const serve = async (status: number): Promise<string> => {
    const server = createServer((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end('{"error":"no"}'));
    servers.push(server);
    return `http://127.0.0.1:${await listen(server)}`;
  };

  it('a bad URL, a read method, a malformed header', async () => {
    for (const [args, message] of [
      [['not a url'], /"not a url" is not a URL/],
      [['ftp://example.com/x'], /only http and https URLs can be checked/],
      [['http://127.0.0.1:1/x', '-X', 'GET'], /-X GET is a read/],
      [['http://127.0.0.1:1/x', '-H', 'Authorization'], /expected 'Name: value'/],
      [[], /no <url> given/],
    ] as const) {
      const run = await runCli(args);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).toContain('Usage: idempotency-check <url>');
    }
  });

  it('an unreachable host, named with the error', async () => {
    const closed = createServer();
    const port = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    const run = await runCli([`http://127.0.0.1:${port}/v1/charges`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`idempotency-check: cannot reach 127.0.0.1:${port}: ECONNREFUSED`);
  });

  it('an endpoint that refuses the credential, one that is no write, one that refuses the body', async () => {
    for (const [status, message] of [
      [401, /refused the credential \(401 \(14 B\)\): pass it with -H/],
      [404, /answered 404 \(14 B\): not a write this URL takes/],
      [422, /answered 422 \(14 B\) to a fresh key: the checks need a write that succeeds \(pass a body it takes with -d\)/],
      [500, /answered 500 \(14 B\): it fails before any check/],
    ] as const) {
      const run = await runCli([`${await serve(status)}/v1/charges`]);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });

  it('a host that never answers: the time bound ends the run', async () => {
    const silent = createServer(() => {});
    servers.push(silent);
    const started = Date.now();
    const run = await runCli([`http://127.0.0.1:${await listen(silent)}/v1/charges`, '--max-time', '10']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/Sends real writes: at most \d+ POST requests and 3 GET requests, within 10 s\./);
    expect(run.stderr).toContain('idempotency-check: the time bound (--max-time) was reached');
    // Not a timed assertion of the command: only that it did end, well before the test's own timeout.
    expect(Date.now() - started).toBeLessThan(25_000);
    silent.closeAllConnections();
  });

  it('origin mode where nothing reaches the test origin', async () => {
    const origin = await startRecordingOrigin();
    try {
      const run = await runCli([`${origin.url}/v1/charges`, '--origin-port', '0']);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/but nothing reached the test origin on http:\/\/127\.0\.0\.1:\d+: start the layer under test/);
    } finally {
      await origin.close();
    }
  });
});
