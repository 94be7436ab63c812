/**
 * @module
 * The history of a fault-schedule run: every request and its answer, every purge, every SIGKILL and restart, every
 * origin execution and reconciliation, with times on one machine's clock (`Date.now()`, ms since the epoch; the
 * runtime's own clock is the same wall clock). Written as JSON lines, one event a line, in the order events end.
 */
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import type { Execution, Reconciliation } from '../../src/check/origin.ts';

/** What a route does once an attempt ended without an answer (`IDEMPOTENCY_ROUTES` `on_unknown`). */
export type Policy = 'retry' | 'hold' | 'reconcile';

/** One route of the run's `IDEMPOTENCY_ROUTES`, as the checker needs it. */
export interface RouteSpec {
  readonly name: string;
  /** Every path of the route starts with this. */
  readonly prefix: string;
  readonly policy: Policy;
  readonly ttlMs: number;
  readonly timeoutMs: number;
}

/** The first line: what ran. */
export interface RunEvent {
  readonly type: 'run';
  readonly seed: number;
  readonly mutant: string | null;
  readonly started: number;
  readonly leaseMs: number;
  readonly maxBodyBytes: number;
  readonly routes: readonly RouteSpec[];
  /** Every problem code the contract lists, with its status (the reused key's as configured). */
  readonly problems: Readonly<Record<string, number>>;
  /** The command that replays this run's schedule. */
  readonly command: string;
}

/** How a client read an answer's body: all of it, aborted by the client on purpose, broken off, or not at all. */
export type Read = 'whole' | 'aborted' | 'broken' | 'none';

/** One keyed write and what came back. */
export interface RequestEvent {
  readonly type: 'request';
  /** `r<n>`; sent to the origin in `x-origin-tag`. */
  readonly id: string;
  /** 1, 2, 3, ... in the order the requests were sent. */
  readonly n: number;
  readonly client: number;
  /** `write`; `oversize`: a body over `MAX_BODY_BYTES`. */
  readonly op: 'write' | 'oversize';
  /** The credential's label; `scope` is the hex SHA-256 of the whole `Authorization` value. */
  readonly credential: string;
  readonly scope: string;
  readonly key: string;
  readonly path: string;
  readonly route: string;
  readonly variant: number;
  readonly bodySha256: string;
  readonly behaviour: string;
  /** 0 for a first send, k for the k-th resend of the same request. */
  readonly resend: number;
  /** What the client planned: abort after reading this many body bytes, or give up after this many ms. */
  readonly abortAfterBytes: number | null;
  readonly giveUpMs: number | null;
  readonly sent: number;
  /** When the status line and headers arrived, or `null`. */
  readonly headersAt: number | null;
  readonly ended: number;
  readonly status: number | null;
  /** `Idempotent-Replay: true`. */
  readonly replay: boolean;
  /** `Idempotency-Expires`, as sent. */
  readonly expires: string | null;
  readonly execution: string | null;
  readonly reconciliation: string | null;
  readonly contentType: string | null;
  /** The problem's `code`, when the answer is a problem read whole. */
  readonly code: string | null;
  readonly read: Read;
  readonly bytes: number;
  /** SHA-256 of the body bytes read. */
  readonly sha256: string;
  readonly error: string | null;
}

/** An operator's purge (`DELETE {prefix}/admin/keys/{key}` with the scope's hash). */
export interface PurgeEvent {
  readonly type: 'purge';
  readonly id: string;
  readonly client: number;
  readonly credential: string;
  readonly scope: string;
  readonly key: string;
  readonly sent: number;
  readonly ended: number;
  readonly status: number | null;
  readonly code: string | null;
  readonly contentType: string | null;
  readonly error: string | null;
}

/** A SIGKILL of the runtime's process group, and its restart on the same storage. */
export interface KillEvent {
  readonly type: 'kill';
  readonly id: string;
  /** When SIGKILL was sent, when no process of the group was left, when the new runtime listened. */
  readonly time: number;
  readonly dead: number;
  readonly restarted: number;
  readonly port: number;
  /** Requests sent before it. */
  readonly afterRequests: number;
}

export type ExecutionEvent = Execution & { readonly type: 'execution' };
export type ReconciliationEvent = Reconciliation & { readonly type: 'reconciliation' };

/** The last line: when the run stopped sending. */
export interface EndEvent {
  readonly type: 'end';
  readonly ended: number;
}

export type HistoryEvent = RunEvent | RequestEvent | PurgeEvent | KillEvent | ExecutionEvent | ReconciliationEvent | EndEvent;

/** Appends events to a JSON lines file. */
export class HistoryWriter {
  readonly #out: WriteStream;
  readonly file: string;
  readonly events: HistoryEvent[] = [];

  constructor(file: string) {
    this.file = file;
    this.#out = createWriteStream(file, { flags: 'w' });
  }

  write(event: HistoryEvent): void {
    this.events.push(event);
    this.#out.write(`${JSON.stringify(event)}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => this.#out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
}

/** Reads a history file back. */
export function readHistory(file: string): HistoryEvent[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as HistoryEvent);
}
