/**
 * @module
 * `npm run torture`: a seeded fault-schedule run of the real proxy (built, on bare workerd, SIGKILLed and restarted
 * on its storage) in front of a recording origin, and a check of its history. See `--help`.
 */
import { parseArgs } from 'node:util';
import { check, INVARIANTS } from './checker.ts';
import { readHistory } from './history.ts';
import { MUTANTS } from './mutants.ts';
import { alarmLine, summarize, summaryLines, violationLines } from './report.ts';
import { type RunOptions, runTorture } from './run.ts';

const HELP = `npm run torture -- [options]

Runs the proxy as users run it (its wrangler deploy --dry-run bundle on the bare workerd runtime, with SQLite Durable
Objects on local disk) in front of a recording origin (src/check/origin.ts), under a workload and a fault schedule
drawn from one seed, writes the history as JSON lines and checks it against docs/contract.md.

  --seed N            the seed (default: drawn, and printed)
  --requests N        stop after N requests (default 2000 when --minutes is not given)
  --minutes M         stop after M minutes (with --requests: whichever comes first)
  --clients N         concurrent clients (default 8)
  --keys N            keys, each shared by the 3 credentials (default 12)
  --kill-every N      mean requests between SIGKILLs of the runtime; 0 for none (default 250)
  --mutant NAME       run against a copy of the source with this planted bug (the worktree is not touched)
  --list-mutants      list the planted bugs
  --history FILE      where the history goes (default: a new file in the system temp dir)
  --check FILE        check an existing history file instead of running
  --help

The workload: 8 clients send keyed POSTs over 12 keys (3 credentials share every key string; 2-3 bodies per key) to
four routes (on_unknown retry, hold, reconcile against the origin's truthful reconcile URL, and a 2 s TTL); each send
asks the origin for a behaviour (fast, slow, a status, a reset before the status line or mid-body, an SSE stream, an
answer over MAX_BODY_BYTES); clients resend, abort mid-body, give up, purge keys (admin API) and send bodies over the
limit; the runtime is SIGKILLed and restarted on the same storage. ORIGIN_TIMEOUT_MS 1000, ORIGIN_LEASE_MS 3000,
MAX_BODY_BYTES 65536.

Invariants checked:
${Object.entries(INVARIANTS)
  .map(([name, text]) => `  ${name.padEnd(15)}${text}`)
  .join('\n')}

Exit status: 0 when no invariant was violated, 1 when one was (for --mutant: the planted bug was caught), 2 on a
usage error. A seed fixes the schedule (every client's requests, behaviours, pauses, and the faults), not how the
operating system interleaves the processes.`;

function fail(message: string): never {
  console.error(`torture: ${message} (--help for usage)`);
  process.exit(2);
}

function whole(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) fail(`--${name} must be a whole number of at least ${min}`);
  return n;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        seed: { type: 'string' },
        requests: { type: 'string' },
        minutes: { type: 'string' },
        clients: { type: 'string' },
        keys: { type: 'string' },
        'kill-every': { type: 'string' },
        mutant: { type: 'string' },
        'list-mutants': { type: 'boolean' },
        history: { type: 'string' },
        check: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }).values;
  } catch (error) {
    fail((error as Error).message);
  }
  if (parsed.help) {
    console.log(HELP);
    return 0;
  }
  if (parsed['list-mutants']) {
    for (const m of MUTANTS) console.log(`${m.name.padEnd(24)}${m.summary} (${m.file}; expected to be caught by ${m.caughtBy})`);
    return 0;
  }
  if (parsed.check !== undefined) {
    const events = readHistory(parsed.check);
    const result = check(events);
    for (const v of result.violations.slice(0, 5)) console.log(violationLines(events, v).join('\n'));
    const end = events.findLast((e) => e.type === 'end');
    const run = events.find((e) => e.type === 'run');
    const seconds = end !== undefined && run !== undefined ? (end.ended - run.started) / 1000 : 0;
    console.log(summaryLines(summarize(events, result), result, seconds, parsed.check).join('\n'));
    return result.violations.length === 0 ? 0 : 1;
  }
  const minutes = parsed.minutes === undefined ? undefined : Number(parsed.minutes);
  if (minutes !== undefined && !(minutes > 0)) fail('--minutes must be a positive number');
  if (parsed.mutant !== undefined && !MUTANTS.some((m) => m.name === parsed.mutant)) fail(`no planted bug named ${parsed.mutant}`);
  const options: RunOptions = {
    seed: whole('seed', parsed.seed, 0) ?? Math.floor(Math.random() * 2 ** 32),
    ...(parsed.requests === undefined ? {} : { requests: whole('requests', parsed.requests, 1)! }),
    ...(minutes === undefined ? {} : { minutes }),
    ...(parsed.clients === undefined ? {} : { clients: whole('clients', parsed.clients, 1)! }),
    ...(parsed.keys === undefined ? {} : { keys: whole('keys', parsed.keys, 1)! }),
    ...(parsed['kill-every'] === undefined ? {} : { killEvery: whole('kill-every', parsed['kill-every'], 0)! }),
    ...(parsed.mutant === undefined ? {} : { mutant: parsed.mutant }),
    ...(parsed.history === undefined ? {} : { historyFile: parsed.history }),
    signals: true,
    progress: (line) => console.log(line),
  };
  if ((options.seed ?? 0) > 0xffffffff) fail('--seed must be below 2^32');
  console.log(`torture: seed ${options.seed}${options.mutant === undefined ? '' : `, planted bug ${options.mutant}`}`);
  const result = await runTorture(options);
  for (const v of result.check.violations.slice(0, 5)) console.log(violationLines(result.events, v).join('\n'));
  if (result.check.violations.length > 5) console.log(`... and ${result.check.violations.length - 5} more violations`);
  console.log(summaryLines(summarize(result.events, result.check), result.check, result.seconds, result.file).join('\n'));
  console.log(alarmLine(result.alarms));
  return result.check.violations.length === 0 && result.alarms.left === 0 ? 0 : 1;
}

process.exitCode = await main();
