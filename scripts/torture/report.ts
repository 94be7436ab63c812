/**
 * @module
 * What a fault-schedule run prints: its summary (requests, executions, faults of each kind, invariants checked,
 * violations), and for each violation the seed, the slice of the history that shows it (the events of its scope and
 * key between the first event involved and the violation) and the command that replays the schedule.
 */
import { type CheckResult, INVARIANTS, type Invariant, rel, type Violation } from './checker.ts';
import type { HistoryEvent, RequestEvent, RunEvent } from './history.ts';
import { Model } from './model.ts';
import { ALARM_SLACK_MS, type AlarmReport } from './storage.ts';

export interface Summary {
  readonly seed: number;
  readonly mutant: string | null;
  readonly requests: number;
  readonly answered: number;
  readonly replays: number;
  readonly executions: number;
  readonly reconciliations: number;
  readonly faults: {
    readonly kills: number;
    /** Requests the client aborted mid-body, or gave up on before the answer ended. */
    readonly disconnects: number;
    readonly purges: number;
    /** Executions whose connection the origin reset, before the status line or mid-body. */
    readonly resets: number;
  };
  /** Keys that ran again because their record had expired (the short-TTL route). */
  readonly expiries: number;
  readonly checks: number;
  readonly violations: number;
  /** How many requests had been sent when the first violation showed; `null` without one. */
  readonly caughtAfter: number | null;
}

export function summarize(events: readonly HistoryEvent[], result: CheckResult): Summary {
  const model = new Model(events);
  const requests = model.requests;
  const executions = [...model.executions.values()];
  const first = result.violations[0];
  return {
    seed: model.run.seed,
    mutant: model.run.mutant,
    requests: requests.length,
    answered: requests.filter((r) => r.status !== null).length,
    replays: requests.filter((r) => r.replay).length,
    executions: executions.length,
    reconciliations: model.reconciliations.size,
    faults: {
      kills: model.kills.length,
      disconnects: requests.filter((r) => r.read === 'aborted' || (r.read === 'none' && r.error === 'gave up')).length,
      purges: model.purges.length,
      resets: executions.filter((e) => e.outcome === 'reset-before-status' || e.outcome === 'reset-mid-body').length,
    },
    expiries: result.periods.expiry,
    checks: Object.values(result.checked).reduce((a, b) => a + b, 0),
    violations: result.violations.length,
    caughtAfter: first === undefined ? null : requests.filter((r) => r.sent <= first.time).length,
  };
}

const count = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');

const byInvariant = (result: CheckResult): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const v of result.violations) counts[v.invariant] = (counts[v.invariant] ?? 0) + 1;
  return counts;
};

/** The summary as lines of text. */
export function summaryLines(summary: Summary, result: CheckResult, seconds: number, file: string): string[] {
  const { faults } = summary;
  const injected = faults.kills + faults.disconnects + faults.purges + faults.resets;
  return [
    `seed ${summary.seed}${summary.mutant === null ? '' : `, planted bug ${summary.mutant}`}: ${seconds.toFixed(1)} s`,
    `requests ${summary.requests} (answered ${summary.answered}, replays ${summary.replays}); origin executions ${summary.executions}, reconciliations ${summary.reconciliations}`,
    `faults ${injected}: SIGKILL+restart ${faults.kills}, client disconnects ${faults.disconnects}, admin purges ${faults.purges}, origin resets ${faults.resets}; keys expired and run again ${summary.expiries}`,
    `what freed a key before it ran again: ${count(result.periods) || 'nothing (no key ran twice)'}`,
    `invariants checked ${summary.checks}: ${count(result.checked)}`,
    `violations ${summary.violations}${summary.violations === 0 ? '' : ` (${count(byInvariant(result))})`}${summary.caughtAfter === null ? '' : `, the first after ${summary.caughtAfter} requests`}`,
    `history ${file}`,
  ];
}

function describe(model: Model, event: HistoryEvent): [time: number, line: string] | undefined {
  const short = (id: string | null) => (id === null ? '-' : id.slice(0, 8));
  switch (event.type) {
    case 'request': {
      const answer =
        event.status === null
          ? `no answer (${event.error})`
          : `${event.status}${event.code === null ? '' : ` ${event.code}`}${event.replay ? ' replay' : ''}${event.execution === null ? '' : ` of ${short(event.execution)}`}${event.reconciliation === null ? '' : ` (reconciliation ${short(event.reconciliation)})`}`;
      const read =
        event.read === 'whole'
          ? `read whole, ${event.bytes} B`
          : `${event.read} after ${event.bytes} B${event.error === null ? '' : ` (${event.error})`}`;
      return [
        event.sent,
        `${event.id} client ${event.client} POST ${event.path} body ${event.variant} [${event.behaviour}] → ${answer}, ${read}, ended ${rel(model, event.ended)}`,
      ];
    }
    case 'execution':
      return [
        event.started,
        `execution ${short(event.id)} for ${event.tag} [${event.behaviour}]: ${event.status}, ${event.outcome}${event.ended === null ? '' : ` at ${rel(model, event.ended)}`}`,
      ];
    case 'reconciliation':
      return [
        event.time,
        `reconciliation ${short(event.id)}: ${event.status}${event.execution === null ? ' never ran' : ` ran as ${short(event.execution)}`}`,
      ];
    case 'purge':
      return [
        event.sent,
        `${event.id} client ${event.client} admin purge → ${event.status ?? event.error}${event.code === null ? '' : ` ${event.code}`} at ${rel(model, event.ended)}`,
      ];
    case 'kill':
      return [
        event.time,
        `${event.id} SIGKILL of the runtime; dead ${rel(model, event.dead)}, restarted ${rel(model, event.restarted)} on port ${event.port}`,
      ];
    default:
      return undefined;
  }
}

const startOf = (e: HistoryEvent): number =>
  e.type === 'request' || e.type === 'purge'
    ? e.sent
    : e.type === 'execution'
      ? e.started
      : e.type === 'reconciliation' || e.type === 'kill'
        ? e.time
        : 0;
const endOf = (e: HistoryEvent): number =>
  e.type === 'request' || e.type === 'purge' ? e.ended : e.type === 'execution' ? (e.ended ?? e.started) : startOf(e);

/** A violation, with the slice of its scope's and key's history that shows it and the command that replays the schedule. */
export function violationLines(events: readonly HistoryEvent[], v: Violation): string[] {
  const model = new Model(events);
  const run = events.find((e): e is RunEvent => e.type === 'run')!;
  const pair = model.pairOf(v.scope, v.key);
  const pairEvents: HistoryEvent[] = [...pair.requests, ...pair.executions, ...pair.purges, ...pair.reconciliations];
  const involved = pairEvents.filter((e) => 'id' in e && v.events.includes(e.id));
  const from = Math.min(v.time, ...involved.map(startOf));
  const slice = [
    ...pairEvents.filter((e) => endOf(e) >= from && startOf(e) <= v.time),
    ...model.kills.filter((k) => k.time >= from - run.leaseMs && k.time <= v.time),
  ]
    .map((e) => describe(model, e))
    .filter((line) => line !== undefined)
    .sort((a, b) => a[0] - b[0]);
  const credential = pair.requests[0]?.credential ?? '?';
  const route = pair.requests[0] === undefined ? undefined : model.route(pair.requests[0].path);
  const caught = model.requests.filter((r: RequestEvent) => r.sent <= v.time).length;
  return [
    `VIOLATION ${v.invariant} (${INVARIANTS[v.invariant]})`,
    `  seed ${run.seed}, at ${rel(model, v.time)}, after ${caught} requests: ${v.message}`,
    `  scope ${v.scope.slice(0, 8)} (credential ${credential}), key ${v.key}${route === undefined ? '' : `, route ${route.name} (on_unknown ${route.policy}, TTL ${route.ttlMs / 1000} s)`}`,
    `  its history from ${rel(model, from)} to ${rel(model, v.time)}:`,
    ...slice.map(([time, line]) => `    ${rel(model, time).padStart(9)}  ${line}`),
    `  replay the schedule: ${run.command}`,
  ];
}

export const invariantNames = Object.keys(INVARIANTS) as Invariant[];

/** What the expiry alarm did once the workload had ended, as a line. */
export const alarmLine = ({ objects, due, left }: AlarmReport): string =>
  `expiry alarm: of ${objects} objects, ${due} held a record expiring when the workload ended; ${left} of those were still stored ${ALARM_SLACK_MS / 1000} s after their expiry`;
