/**
 * @module
 * What the checker knows of a history: its events indexed by (scope, key) and by the execution or reconciliation an
 * answer carries, and the time bounds it can prove from them. Every bound is sound: it holds for every interleaving
 * the observed times allow, so a check built on it never accuses a correct proxy.
 *
 * The clock: every time is `Date.now()` on one machine. A client takes `sent` before its request leaves and `ended`
 * after the last byte it read; the origin takes `started` when a request's head arrives. The runtime stamps a record
 * (`created`, `expires_at = created + ttl`, `lease_until = created + lease`) from its own `Date.now()`, which is
 * frozen at the I/O that delivered the call, so `request.sent <= created <= execution.started`. {@link SLACK_MS}
 * covers the clocks' millisecond granularity, nothing else.
 */
import type {
  ExecutionEvent,
  HistoryEvent,
  KillEvent,
  PurgeEvent,
  ReconciliationEvent,
  RequestEvent,
  RouteSpec,
  RunEvent,
} from './history.ts';

export const SLACK_MS = 10;

/** An answer's source: the execution, or the reconciliation, whose answer it carries. */
export type Source = { readonly execution: ExecutionEvent } | { readonly reconciliation: ReconciliationEvent };

/** Everything that happened to one (scope, key). */
export interface Pair {
  readonly scope: string;
  readonly key: string;
  readonly requests: RequestEvent[];
  /** In the order they started. */
  readonly executions: ExecutionEvent[];
  readonly purges: PurgeEvent[];
  readonly reconciliations: ReconciliationEvent[];
}

const pairKey = (scope: string | null, key: string | null): string => `${scope ?? '-'} ${key ?? '-'}`;
/** A request's identity as the proxy fingerprints it: path and body (the method is always POST). */
export const fingerprintOf = (r: { path: string; bodySha256: string }): string => `${r.path} ${r.bodySha256}`;

/** Seconds-precision HTTP date of `Idempotency-Expires` as ms (the record's `expires_at` is in [ms, ms + 1000)). */
const expiresMs = (header: string | null): number | undefined => {
  const ms = header === null ? Number.NaN : Date.parse(header);
  return Number.isNaN(ms) ? undefined : ms;
};

export class Model {
  readonly run: RunEvent;
  readonly requests: RequestEvent[] = [];
  readonly requestById = new Map<string, RequestEvent>();
  readonly executions = new Map<string, ExecutionEvent>();
  readonly reconciliations = new Map<string, ReconciliationEvent>();
  readonly kills: KillEvent[] = [];
  readonly purges: PurgeEvent[] = [];
  readonly pairs = new Map<string, Pair>();
  /** The requests whose answer carries each source id (an execution's or a reconciliation's). */
  readonly answersOf = new Map<string, RequestEvent[]>();
  readonly #taggedExecutions = new Map<string, ExecutionEvent[]>();

  constructor(events: readonly HistoryEvent[]) {
    const run = events.find((e): e is RunEvent => e.type === 'run');
    if (run === undefined) throw new Error('the history has no run event');
    this.run = run;
    for (const event of events) {
      if (event.type === 'request') {
        this.requests.push(event);
        this.requestById.set(event.id, event);
        this.pairOf(event.scope, event.key).requests.push(event);
        const source = event.reconciliation ?? event.execution;
        if (source !== null) this.#push(this.answersOf, source, event);
      } else if (event.type === 'execution') {
        this.executions.set(event.id, event);
        this.pairOf(event.credential, event.key).executions.push(event);
        if (event.tag !== null) this.#push(this.#taggedExecutions, event.tag, event);
      } else if (event.type === 'reconciliation') {
        this.reconciliations.set(event.id, event);
        this.pairOf(event.credential, event.key).reconciliations.push(event);
      } else if (event.type === 'purge') {
        this.purges.push(event);
        this.pairOf(event.scope, event.key).purges.push(event);
      } else if (event.type === 'kill') this.kills.push(event);
    }
    this.requests.sort((a, b) => a.n - b.n);
    this.kills.sort((a, b) => a.time - b.time);
    for (const pair of this.pairs.values()) {
      pair.requests.sort((a, b) => a.sent - b.sent);
      pair.executions.sort((a, b) => a.started - b.started || a.seq - b.seq);
    }
  }

  #push<T>(map: Map<string, T[]>, id: string, value: T): void {
    const list = map.get(id);
    if (list === undefined) map.set(id, [value]);
    else list.push(value);
  }

  pairOf(scope: string | null, key: string | null): Pair {
    const id = pairKey(scope, key);
    let pair = this.pairs.get(id);
    if (pair === undefined) {
      pair = { scope: scope ?? '-', key: key ?? '-', requests: [], executions: [], purges: [], reconciliations: [] };
      this.pairs.set(id, pair);
    }
    return pair;
  }

  /** The route a path belongs to (every path of the run is under one). */
  route(path: string): RouteSpec {
    const route = this.run.routes.find((r) => path.startsWith(r.prefix));
    if (route === undefined) throw new Error(`no route for ${path}`);
    return route;
  }

  /** The executions the origin ran for request `id` (it tags them with the request's id). */
  executionsOf(id: string): readonly ExecutionEvent[] {
    return this.#taggedExecutions.get(id) ?? [];
  }

  /** The source of an answer, or `undefined` for the proxy's own answer (or an id the origin never produced). */
  sourceOf(r: RequestEvent): Source | undefined {
    if (r.reconciliation !== null) {
      const reconciliation = this.reconciliations.get(r.reconciliation);
      return reconciliation === undefined ? undefined : { reconciliation };
    }
    const execution = r.execution === null ? undefined : this.executions.get(r.execution);
    return execution === undefined ? undefined : { execution };
  }

  /** When the record holding a source existed for sure (an execution's start, a reconciliation's answer). */
  sourceTime(s: Source): number {
    return 'execution' in s ? s.execution.started : s.reconciliation.time;
  }

  sourceId(s: Source): string {
    return 'execution' in s ? s.execution.id : s.reconciliation.id;
  }

  /**
   * By when the attempt of a source had certainly finished, and a result's answer was stored: the earliest time a client
   * read an answer carrying it whole (a first answer or a joined one closes only once the attempt has ended and its
   * record is written, contract: "the stream's end reaches the client only once it is stored"). Infinity when no client did.
   */
  finishedBy(id: string, withExpires = false): number {
    let by = Number.POSITIVE_INFINITY;
    for (const r of this.answersOf.get(id) ?? [])
      if (r.read === 'whole' && (!withExpires || r.expires !== null)) by = Math.min(by, r.ended);
    return by;
  }

  /** Whether any client received the status line of an execution's answer (the proxy then had it too). */
  headSeen(id: string): boolean {
    return (this.answersOf.get(id) ?? []).length > 0;
  }

  /** The `Idempotency-Expires` values (ms) of the answers that carried a source. */
  expiresSeen(id: string): number[] {
    return (this.answersOf.get(id) ?? []).map((r) => expiresMs(r.expires)).filter((ms): ms is number => ms !== undefined);
  }

  /** The purges of a pair that deleted a record (204). */
  purgesDone(pair: Pair): PurgeEvent[] {
    return pair.purges.filter((p) => p.status === 204);
  }

  /**
   * A purge of `pair` that may have deleted a record between `after` and `before`: one answered 204, or one that got no
   * answer (its connection broke, in a SIGKILL: it may have run before).
   */
  purgedBetween(pair: Pair, after: number, before: number): PurgeEvent | undefined {
    return pair.purges.find((p) => (p.status === 204 || p.status === null) && p.ended > after - SLACK_MS && p.sent < before + SLACK_MS);
  }

  /**
   * The earliest a record that existed at `time` can have been created: after the last purge answered 204 before
   * `time` (it deleted everything), else the run's start.
   */
  existedSince(pair: Pair, time: number): number {
    let since = this.run.started;
    for (const p of this.purgesDone(pair)) if (p.ended < time) since = Math.max(since, p.sent);
    return since;
  }

  /**
   * A lower bound of when the record an execution ran under was created. A fresh record was created by the request that
   * ran it (`created >= sent`). A record taken over keeps the times of the one it replaced: under `retry`, a dead
   * attempt's after a SIGKILL (the first record of such a chain was created by an attempt alive at the chain's first
   * kill, so at most a lease before it); under `reconcile`, an unknown one whose reconciliation said "never ran" (then
   * only the last purge bounds it).
   */
  createdAtLeast(e: ExecutionEvent): number {
    const pair = this.pairOf(e.credential, e.key);
    const since = this.existedSince(pair, e.started);
    const policy = this.route(e.path).policy;
    const by = e.tag === null ? undefined : this.requestById.get(e.tag);
    const never =
      policy === 'reconcile' && pair.reconciliations.some((q) => q.status === 404 && q.time > since - SLACK_MS && q.time < e.started);
    if (never || by === undefined) return since;
    const kill = policy === 'retry' ? this.kills.find((k) => k.time > since - SLACK_MS && k.time < e.started) : undefined;
    return Math.max(since, kill === undefined ? by.sent : Math.min(by.sent, kill.time - this.run.leaseMs - SLACK_MS));
  }

  /** A lower bound of the expiry of the record an execution ran under. */
  expiresAtLeast(e: ExecutionEvent): number {
    return Math.max(this.createdAtLeast(e) + this.route(e.path).ttlMs, ...this.expiresSeen(e.id));
  }

  /** An upper bound of the expiry of the record holding a source (it existed at the source's time). */
  expiresAtMost(s: Source): number {
    const id = this.sourceId(s);
    const path = 'execution' in s ? s.execution.path : this.answersOf.get(id)?.[0]?.path;
    const ttl = path === undefined ? Number.POSITIVE_INFINITY : this.route(path).ttlMs;
    return Math.min(this.sourceTime(s) + ttl, ...this.expiresSeen(id).map((ms) => ms + 1000));
  }
}

/** A time as seconds since the run started. */
export const rel = (model: { run: { started: number } }, time: number): string =>
  Number.isFinite(time) ? `+${((time - model.run.started) / 1000).toFixed(3)}s` : 'never';
