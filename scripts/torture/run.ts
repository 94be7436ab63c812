/**
 * @module
 * One fault-schedule run: builds the proxy (or a copy with a planted bug), serves it on bare workerd in front of the
 * recording origin, runs the seeded workload with its faults, writes the history as JSON lines, and checks it.
 *
 * What the seed fixes: every client's sequence of requests (key, credential, body, origin behaviour, whether it reads
 * the answer whole, resends it or purges first, and its pauses), and the fault schedule (a SIGKILL after the Nth
 * request, at a drawn delay). What it cannot fix: how the operating system interleaves the clients, the runtime and
 * the origin. A seed replays the schedule, not the exact interleaving.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRecordingOrigin } from '../../src/check/origin.ts';
import { installCleanup } from '../lib/cleanup.ts';
import { sleep } from '../lib/processes.ts';
import { buildWorker, readWorkerConfigAt, ROOT } from '../lib/workers.ts';
import { check, type CheckResult } from './checker.ts';
import { sendPurge, sendRequest } from './client.ts';
import { type HistoryEvent, HistoryWriter, type KillEvent } from './history.ts';
import { mutantNamed, plantedCopy } from './mutants.ts';
import { Random } from './random.ts';
import { type AlarmReport, watchAlarms } from './storage.ts';
import { startSystem } from './system.ts';
import {
  type Credential,
  drawBehaviour,
  drawPlan,
  drawStory,
  type Key,
  keySpace,
  LEASE_MS,
  MAX_BODY_BYTES,
  oversizeBody,
  proxyVars,
  ROUTES,
  sha256,
} from './workload.ts';

export interface RunOptions {
  readonly seed: number;
  /** Stop sending after this many requests (purges not counted). @default 2000 unless `minutes` is set */
  readonly requests?: number;
  /** Stop sending after this long. */
  readonly minutes?: number;
  /** @default 8 */
  readonly clients?: number;
  /** @default 12 */
  readonly keys?: number;
  /** Mean number of requests between SIGKILLs of the runtime; 0 for none. @default 250 */
  readonly killEvery?: number;
  /** The planted bug to run against (a name from `mutants.ts`). */
  readonly mutant?: string;
  /** Where the history goes. @default a new file in the system temp dir */
  readonly historyFile?: string;
  /** Whether SIGINT/SIGTERM stop the run and clean up (the CLI), or the caller handles signals (a test). */
  readonly signals?: boolean;
  /** Progress lines, every few seconds. */
  readonly progress?: (line: string) => void;
}

export interface RunResult {
  readonly options: RunOptions;
  readonly file: string;
  readonly events: readonly HistoryEvent[];
  readonly check: CheckResult;
  readonly seconds: number;
  /** Whether the expiry alarm deleted the records that expired once the workload had ended. */
  readonly alarms: AlarmReport;
  /** The runtime's last output (for a failure report). */
  readonly output: string;
}

/** The command that replays a run's schedule. */
export function replayCommand(o: RunOptions): string {
  const parts = [`npm run torture -- --seed ${o.seed}`];
  if (o.requests !== undefined) parts.push(`--requests ${o.requests}`);
  if (o.minutes !== undefined) parts.push(`--minutes ${o.minutes}`);
  if (o.clients !== undefined) parts.push(`--clients ${o.clients}`);
  if (o.keys !== undefined) parts.push(`--keys ${o.keys}`);
  if (o.killEvery !== undefined) parts.push(`--kill-every ${o.killEvery}`);
  if (o.mutant !== undefined) parts.push(`--mutant ${o.mutant}`);
  return parts.join(' ');
}

/**
 * Every problem code of the source under test with its status (`src/shared/problem.ts`, `PROBLEMS`), and
 * `credential_missing` (401), which issue #28 adds.
 */
export function problemTable(problemSource: string, conflictStatus = 409): Record<string, number> {
  const start = problemSource.indexOf('export const PROBLEMS');
  const block = problemSource.slice(start, problemSource.indexOf('} as const', start));
  const table: Record<string, number> = { credential_missing: 401 };
  for (const [, code, status] of block.matchAll(/^\s+(\w+):\s*\{\s*status:\s*(\d+)/gm)) table[code!] = Number(status);
  if (Object.keys(table).length < 10) throw new Error('could not read the problem codes of src/shared/problem.ts');
  table['idempotency_key_reused'] = conflictStatus;
  return table;
}

export async function runTorture(options: RunOptions): Promise<RunResult> {
  const { seed, clients = 8, keys: keyCount = 12, killEvery = 250, signals = false, progress } = options;
  const requests = options.requests ?? (options.minutes === undefined ? 2000 : undefined);
  const cleanup = installCleanup(signals);
  const began = Date.now();
  const file = options.historyFile ?? join(tmpdir(), `idem-torture-seed${seed}-${began}.jsonl`);
  const writer = new HistoryWriter(file);
  try {
    const mutant = options.mutant === undefined ? undefined : mutantNamed(options.mutant);
    const configPath = mutant === undefined ? join(ROOT, 'wrangler.toml') : plantedCopy(mutant, cleanup);
    const built = await buildWorker(readWorkerConfigAt(configPath, mutant === undefined ? 'proxy' : `mutant-${mutant.name}`), cleanup);
    const problems = problemTable(readFileSync(join(configPath, '..', 'src/shared/problem.ts'), 'utf8'));
    const origin = await startRecordingOrigin({
      onRecord: (record) =>
        writer.write(
          'execution' in record ? { type: 'execution', ...record.execution } : { type: 'reconciliation', ...record.reconciliation },
        ),
    });
    const storageDir = mkdtempSync(join(tmpdir(), 'idem-torture-storage-'));
    cleanup.addDir(storageDir);
    const system = await startSystem(built, storageDir, proxyVars(origin.url), cleanup);

    const root = new Random(seed);
    const keys = keySpace(root.stream('keys'), keyCount);
    const faults = root.stream('faults');
    const started = Date.now();
    writer.write({
      type: 'run',
      seed,
      mutant: mutant?.name ?? null,
      started,
      leaseMs: LEASE_MS,
      maxBodyBytes: MAX_BODY_BYTES,
      routes: ROUTES,
      problems,
      command: replayCommand(options),
    });

    const deadline = options.minutes === undefined ? Number.POSITIVE_INFINITY : started + options.minutes * 60_000;
    let sent = 0;
    let purges = 0;
    const kills: Promise<KillEvent>[] = [];
    let killing: Promise<unknown> = Promise.resolve();
    let nextKill = killEvery > 0 ? faults.int(Math.ceil(killEvery / 2), Math.ceil((killEvery * 3) / 2)) : Number.POSITIVE_INFINITY;
    const left = () => (requests === undefined || sent < requests) && Date.now() < deadline;
    /** The next request's number, or `undefined` when the budget is spent; schedules the SIGKILL that follows it. */
    const take = (): number | undefined => {
      if (!left()) return undefined;
      const n = ++sent;
      if (n === nextKill) {
        const delay = faults.int(0, 1000);
        nextKill += faults.int(Math.ceil(killEvery / 2), Math.ceil((killEvery * 3) / 2));
        const id = `k${kills.length + 1}`;
        // One at a time: a kill drawn while the runtime restarts waits for it.
        const kill = killing.then(() => sleep(delay)).then(() => system.kill(id, n));
        killing = kill.catch(() => {});
        kills.push(kill.then((event) => (writer.write(event), event)));
      }
      return n;
    };

    async function send(
      client: number,
      random: Random,
      credential: Credential,
      key: Key,
      variant: number,
      resend: number,
    ): Promise<boolean> {
      const behaviour = drawBehaviour(random, key.route);
      const plan = drawPlan(random);
      const n = take();
      if (n === undefined) return false;
      const body = key.bodies[variant]!;
      await system.ready();
      const out = { client, op: 'write' as const, credential, key, variant, body, bodySha256: sha256(body), behaviour, resend, plan };
      writer.write(await sendRequest(system.url(), n, out));
      return true;
    }

    async function runClient(client: number): Promise<void> {
      const random = root.stream(`client-${client}`);
      let last: { credential: Credential; key: Key; variant: number } | undefined;
      while (left()) {
        const story = drawStory(random, keys);
        if (story.kind === 'purge') {
          if (last !== undefined && left()) {
            await system.ready();
            writer.write(await sendPurge(system.url(), `p${++purges}`, client, last.credential, last.key.key));
            if (!(await send(client, random, last.credential, last.key, last.variant, 1))) break;
          }
        } else if (story.kind === 'oversize') {
          const body = oversizeBody(random);
          const n = take();
          if (n === undefined) break;
          await system.ready();
          const plan = { abortAfterBytes: null, giveUpMs: null };
          const out = {
            client,
            op: 'oversize' as const,
            credential: story.credential,
            key: story.key,
            variant: -1,
            body,
            bodySha256: sha256(body),
            behaviour: 'fast',
            resend: 0,
            plan,
          };
          writer.write(await sendRequest(system.url(), n, out));
        } else {
          last = story;
          for (let resend = 0; resend <= story.resends; resend++) {
            if (resend > 0) await sleep(random.int(0, 400));
            if (!(await send(client, random, story.credential, story.key, story.variant, resend))) break;
          }
        }
        await sleep(random.int(0, 150));
      }
    }

    const ticker =
      progress === undefined
        ? undefined
        : setInterval(
            () =>
              progress(
                `  ${sent} requests, ${purges} purges, ${kills.length} kills, ${origin.executions().length} executions, ${Math.round((Date.now() - started) / 1000)} s`,
              ),
            10_000,
          );
    try {
      await Promise.all(Array.from({ length: clients }, (_, i) => runClient(i)));
      await Promise.all(kills);
    } finally {
      if (ticker !== undefined) clearInterval(ticker);
    }
    // Attempts still running end within their lease; then nothing is left to record.
    await origin.settled(LEASE_MS + 5000);
    const alarms = await watchAlarms(storageDir);
    const output = system.output();
    await system.stop();
    await origin.close();
    await sleep(100);
    for (const execution of origin.executions()) if (execution.outcome === 'running') writer.write({ type: 'execution', ...execution });
    writer.write({ type: 'end', ended: Date.now() });
    return { options, file, events: writer.events, check: check(writer.events), seconds: (Date.now() - began) / 1000, alarms, output };
  } finally {
    await writer.close();
    await cleanup.run();
  }
}
