/**
 * @module
 * One structured log line per request, and the same record as a Workers Analytics Engine data point
 * when a dataset is bound. Neither ever contains a key or a credential: only truncated SHA-256 hashes.
 */

/** What happened to a request. */
export type RequestOutcome = 'executed' | 'replayed' | 'conflict' | 'in_progress' | 'passthrough' | 'rejected';

/** The fields of a log line (`event: "idempotency"`). */
export interface RequestLog {
  readonly outcome: RequestOutcome;
  readonly method: string;
  readonly status: number;
  /** The problem code, when the proxy produced the answer itself. */
  readonly code?: string;
  /** Time the request spent in this layer, ms. */
  readonly latency_ms: number;
  /** Time spent waiting for the origin (or the handler), for `executed` and for joined waits. */
  readonly origin_ms?: number;
  /** First 16 hex digits of SHA-256(credential hash + key). */
  readonly key_hash?: string;
  /** First 16 hex digits of the credential's (or custom scope's) SHA-256. */
  readonly scope_hash?: string;
}

/** Where log lines and data points go. */
export interface Reporter {
  report(entry: RequestLog): void;
}

/**
 * A reporter writing one JSON line per request to the console (indexed by Workers Logs) and, if
 * `dataset` is given, a data point: blobs `[outcome, method, code]`, doubles `[status, latency_ms,
 * origin_ms]`, index `scope_hash`.
 */
export function consoleReporter(dataset?: AnalyticsEngineDataset): Reporter {
  return {
    report(entry) {
      console.log(JSON.stringify({ event: 'idempotency', ...entry }));
      dataset?.writeDataPoint({
        blobs: [entry.outcome, entry.method, entry.code ?? ''],
        doubles: [entry.status, entry.latency_ms, entry.origin_ms ?? 0],
        indexes: [entry.scope_hash ?? ''],
      });
    },
  };
}
