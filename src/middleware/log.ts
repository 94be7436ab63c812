/**
 * @module
 * One structured log line per request the layer decides (and, if asked, per request it passes on), and the
 * same record as a Workers Analytics Engine data point when a dataset is bound. Neither ever contains a key or
 * a credential: only truncated hashes, keyed (HMAC-SHA-256) when a log hash secret is set, so that nobody who
 * reads the logs can test guesses of a weak credential offline.
 */
import { hex } from '../shared/bytes';

/** What happened to a request. */
export type RequestOutcome = 'executed' | 'replayed' | 'conflict' | 'in_progress' | 'passthrough' | 'rejected' | 'purged';

/** The fields of a log line (`event: "idempotency"`). */
export interface RequestLog {
  readonly outcome: RequestOutcome;
  readonly method: string;
  readonly status: number;
  /** The problem code, when the layer produced the answer itself. */
  readonly code?: string;
  /** Time the request spent in this layer, ms. */
  readonly latency_ms: number;
  /** Time spent waiting for the origin (or the handler), for `executed` and for joined waits. */
  readonly origin_ms?: number;
  /** First 16 hex digits of the record's Durable Object id (a keyed hash of its name). */
  readonly key_hash?: string;
  /** First 16 hex digits of the scope's SHA-256, or of its HMAC under the log hash secret. */
  readonly scope_hash?: string;
  /** Answered from the isolate's cache, without the object (a replay, or a conflict with a stored record). */
  readonly cached?: boolean;
}

/** Where log lines and data points go. */
export interface Reporter {
  report(entry: RequestLog): void;
}

/**
 * Whether an entry repeats an answer already given: a replay, from the object or the isolate's cache. A conflict is
 * never one, even from the cache: each is a client sending another request under a used key, a decision `LOG_REQUESTS`
 * promises to log.
 */
export const isRepeat = (entry: Pick<RequestLog, 'outcome'>): boolean => entry.outcome === 'replayed';

/**
 * A reporter writing one JSON line per request (indexed by Workers Logs), except for repeats ({@link isRepeat})
 * unless `repeats` is set, and, if `dataset` is given, a data point for every request: blobs `[outcome, method,
 * code]`, doubles `[status, latency_ms, origin_ms]`, index `scope_hash`.
 */
export function consoleReporter(dataset?: AnalyticsEngineDataset, { repeats = false } = {}): Reporter {
  return {
    report(entry) {
      if (repeats || !isRepeat(entry)) console.log(JSON.stringify({ event: 'idempotency', ...entry }));
      dataset?.writeDataPoint({
        blobs: [entry.outcome, entry.method, entry.code ?? ''],
        doubles: [entry.status, entry.latency_ms, entry.origin_ms ?? 0],
        indexes: [entry.scope_hash ?? ''],
      });
    },
  };
}

/**
 * The `scope_hash` of log lines: the first 16 hex digits of the scope's SHA-256, or, with `secret`, of an
 * HMAC-SHA-256 of it. The plain SHA-256 of a weak credential (a `Basic` password) could be guessed offline; the
 * HMAC cannot. (`key_hash` needs no such care: it is the record's Durable Object id, which the platform derives
 * from the record's name with a secret of the namespace, and which the dashboard shows for the object.)
 *
 * @param secret - the log hash secret, or `undefined`
 */
export function logScopeHash(secret: string | undefined): (scopeHash: string) => Promise<string> {
  if (secret === undefined) return async (scopeHash) => scopeHash.slice(0, 16);
  let key: Promise<CryptoKey> | undefined;
  return async (scopeHash) => {
    key ??= crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return hex(await crypto.subtle.sign('HMAC', await key, new TextEncoder().encode(scopeHash))).slice(0, 16);
  };
}

/** What the log lines of a keyed request say of it: when it started, its record's hash (once known), its scope's. */
export interface LoggedKey {
  readonly started: number;
  /** The first 16 hex digits of the record's Durable Object id, once the request knows it. */
  keyHash: string | undefined;
  /** The hex SHA-256 of the scope (logged as {@link logScopeHash} says). */
  readonly scopeHash: string;
}

/** A log line's fields that its writer fills in itself. */
type Entry = Omit<RequestLog, 'method' | 'latency_ms'>;

/** The log of one configuration of the middleware: where its lines and data points go, decided once. */
export class RequestLogger {
  readonly #reporter: Reporter | false | undefined;
  readonly #metrics: string;
  readonly #repeats: boolean;
  /** The default reporter without a metrics dataset, built once. */
  readonly #consoleOnly: Reporter;
  readonly #scopeHash: (scopeHash: string) => Promise<string>;

  /**
   * @param options - `reporter` (`undefined`: the default console reporter; `false`: none), the metrics binding's name,
   *   whether repeats are logged, the log hash secret
   */
  constructor(options: {
    readonly reporter: Reporter | false | undefined;
    readonly metrics: string;
    readonly logRepeats: boolean;
    readonly logHashSecret: string | undefined;
  }) {
    this.#reporter = options.reporter;
    this.#metrics = options.metrics;
    this.#repeats = options.logRepeats;
    this.#consoleOnly = consoleReporter(undefined, { repeats: options.logRepeats });
    this.#scopeHash = logScopeHash(options.logHashSecret);
  }

  /** Writes the log line of a request that started at `started` (nothing when reporting is off). */
  line(env: Record<string, unknown>, method: string, started: number, entry: Entry): void {
    if (this.#reporter === false) return;
    const metrics = env[this.#metrics] as AnalyticsEngineDataset | undefined;
    const reporter = this.#reporter ?? (metrics === undefined ? this.#consoleOnly : consoleReporter(metrics, { repeats: this.#repeats }));
    reporter.report({ method, latency_ms: Date.now() - started, ...entry });
  }

  /** Writes the log line of a keyed request, with the hashes that identify its record and scope. */
  async keyed(env: Record<string, unknown>, method: string, key: LoggedKey, entry: Entry): Promise<void> {
    if (this.#reporter === false) return;
    // The default reporter would write nothing for it: no line (a replay) and no data point (no metrics dataset).
    if (this.#reporter === undefined && isRepeat(entry) && !this.#repeats && env[this.#metrics] === undefined) return;
    const scope_hash = await this.#scopeHash(key.scopeHash);
    this.line(env, method, key.started, { ...entry, ...(key.keyHash === undefined ? {} : { key_hash: key.keyHash }), scope_hash });
  }
}
