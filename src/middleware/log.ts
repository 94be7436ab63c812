/**
 * @module
 * One structured log line per request, and the same record as a Workers Analytics Engine data point
 * when a dataset is bound. Neither ever contains a key or a credential: only truncated hashes, keyed
 * (HMAC-SHA-256) when a log hash secret is set, so that nobody who reads the logs can test guesses of a
 * weak credential offline.
 */
import { hex, sha256Hex } from '../shared/hash';

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
  /** First 16 hex digits of the hash of the record's name (scope and key). */
  readonly key_hash?: string;
  /** First 16 hex digits of the hash of the scope. */
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

/** The hashes a log line carries for a record: of its name, and of its scope's hash. */
export type LogIds = (name: string, scopeHash: string) => Promise<{ key_hash: string; scope_hash: string }>;

/**
 * How log lines identify a record. Without a secret: SHA-256 of the record's name, and the scope's own
 * SHA-256. With one: HMAC-SHA-256 of both under the secret.
 *
 * @param secret - the log hash secret, or `undefined`
 */
export function logIds(secret: string | undefined): LogIds {
  if (secret === undefined)
    return async (name, scopeHash) => ({ key_hash: (await sha256Hex(name)).slice(0, 16), scope_hash: scopeHash.slice(0, 16) });
  let key: Promise<CryptoKey> | undefined;
  const hmac = async (text: string) => {
    key ??= crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return hex(await crypto.subtle.sign('HMAC', await key, new TextEncoder().encode(text))).slice(0, 16);
  };
  return async (name, scopeHash) => {
    const [key_hash, scope_hash] = await Promise.all([hmac(`record\n${name}`), hmac(`scope\n${scopeHash}`)]);
    return { key_hash, scope_hash };
  };
}
