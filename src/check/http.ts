/**
 * @module
 * The requests of `idempotency-check`, within its bounds: every request goes to the one URL the user named, counted
 * against the announced number of writes and reads and cut at the run's deadline. A write is only ever retried with
 * its key, and only when the answer asks for it, as `idempotentFetch` would.
 */
import { problemCodeOf, serverDelayMs, shouldRetry } from '../client/advice.ts';
import type { Header, Options } from './args.ts';
import { BEHAVIOUR_HEADER, TAG_HEADER } from './origin.ts';

/** One answer, read to its end (or to where it broke off). */
export interface Answer {
  /** 0 when no status line arrived. */
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
  /** Why the answer is not whole: the request failed before a status line, or the body broke off. */
  readonly error: string | null;
  /** The system error code of a failed request (`ECONNREFUSED`, ...), when there is one. */
  readonly code: string | null;
  /** The answers that asked for a retry and were retried with the same key before this one. */
  readonly retried: readonly Answer[];
}

/** One request a check sends. */
export interface Request {
  /** @default the -X method */
  readonly method?: string;
  /** The Idempotency-Key; none for a read. */
  readonly key?: string;
  /** @default the -d body (none for a read) */
  readonly body?: Buffer;
  /** Sent as the second identity (--as). */
  readonly second?: boolean;
  /** Origin mode: the recording origin's behaviour for this execution. */
  readonly behaviour?: string;
  /** Retry an answer that asks for it (with the same key). @default true for a keyed write */
  readonly retry?: boolean;
  /** Identical to a request that may still be running: a `409` says it is, and is retried even without a delay. */
  readonly inProgress?: boolean;
}

/** Thrown when the run's request or time bound is reached: the check in progress stops. */
export class Bound extends Error {}

const TIME_BOUND = 'the time bound (--max-time) was reached';

/** The bounds of a run: the most writes and reads it sends, and its deadline. */
export interface Limits {
  readonly writes: number;
  readonly reads: number;
  /** Retries (writes too, counted in `writes`) of refusals that asked for one. */
  readonly retries: number;
  /** ms since the epoch. */
  readonly deadline: number;
}

/** Sends a run's requests within its bounds, and judges what comes back. */
export interface Session {
  /** Sends one request (and its retries) for the check whose tag is given. */
  send(tag: string, request: Request): Promise<Answer>;
  readonly sent: { writes: number; reads: number; retries: number };
}

/** The longest one request may take, within the deadline. */
const REQUEST_TIMEOUT_MS = 60_000;
const READ_METHODS = new Set(['GET', 'HEAD']);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The error code of a failed fetch (undici puts the system error in `cause`). */
function errorOf(error: unknown): { error: string; code: string | null } {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : null;
  const name = (error as Error).name;
  if (name === 'TimeoutError' || name === 'AbortError') return { error: 'no answer in time', code: null };
  return { error: code ?? (typeof cause?.message === 'string' ? cause.message : (error as Error).message), code };
}

/**
 * Whether an answer asks for a retry of the same request: what `idempotentFetch` retries, and the IETF draft's
 * `409` for a request still in progress (not refused for good; with `Retry-After`, or to a request known to be
 * identical to one that may still run).
 */
export function asksForRetry(answer: Answer, inProgress = false): boolean {
  if (answer.status === 0 || answer.error !== null) return false;
  const code = problemCodeOf(answer.body.toString('utf8'));
  if (shouldRetry(answer.status, answer.headers, code)) return true;
  const advice = answer.headers.get('x-should-retry') ?? answer.headers.get('stripe-should-retry');
  const conflict = answer.status === 409 && code !== 'idempotency_key_reused' && advice === null;
  return conflict && (inProgress || answer.headers.has('retry-after'));
}

/** A session for `options` within `limits`; in origin mode the answers' execution ids are read too. */
export function createSession(options: Options, limits: Limits, originMode: boolean): Session {
  const sent = { writes: 0, reads: 0, retries: 0 };

  const headersOf = (request: Request, method: string, tag: string): Headers => {
    const headers = new Headers();
    const base: readonly Header[] = request.second === true && options.second !== null ? options.second : options.headers;
    for (const [name, value] of base) headers.append(name, value);
    if (!READ_METHODS.has(method) && !headers.has('content-type')) headers.set('content-type', 'application/json');
    if (request.key !== undefined) headers.set('idempotency-key', request.key);
    if (originMode) {
      headers.set(TAG_HEADER, tag);
      if (request.behaviour !== undefined) headers.set(BEHAVIOUR_HEADER, request.behaviour);
    }
    return headers;
  };

  async function once(tag: string, request: Request, method: string, retried: readonly Answer[]): Promise<Answer> {
    const read = READ_METHODS.has(method);
    if (read ? sent.reads >= limits.reads : sent.writes >= limits.writes) {
      throw new Bound(`the bound of ${read ? `${limits.reads} reads` : `${limits.writes} writes`} was reached`);
    }
    const left = limits.deadline - Date.now();
    if (left <= 0) throw new Bound(TIME_BOUND);
    if (read) sent.reads++;
    else sent.writes++;
    const signal = AbortSignal.timeout(Math.min(left, REQUEST_TIMEOUT_MS));
    let res: Response;
    try {
      res = await fetch(options.url, {
        method,
        headers: headersOf(request, method, tag),
        body: read ? null : new Uint8Array(request.body ?? options.body),
        redirect: 'manual',
        signal,
      });
    } catch (error) {
      if (Date.now() >= limits.deadline) throw new Bound(TIME_BOUND);
      return { status: 0, headers: new Headers(), body: Buffer.alloc(0), ...errorOf(error), retried };
    }
    const chunks: Buffer[] = [];
    let broken: { error: string; code: string | null } | null = null;
    if (res.body !== null) {
      const reader = res.body.getReader();
      try {
        for (let part = await reader.read(); !part.done; part = await reader.read()) chunks.push(Buffer.from(part.value));
      } catch (error) {
        broken = errorOf(error);
      }
    }
    const body = Buffer.concat(chunks);
    return { status: res.status, headers: res.headers, body, error: broken?.error ?? null, code: broken?.code ?? null, retried };
  }

  return {
    sent,
    async send(tag, request) {
      const method = request.method ?? options.method;
      const retry = request.retry ?? (request.key !== undefined && !READ_METHODS.has(method));
      const retried: Answer[] = [];
      for (;;) {
        const answer = await once(tag, request, method, [...retried]);
        if (!retry || !asksForRetry(answer, request.inProgress) || sent.retries >= limits.retries || retried.length >= 5) return answer;
        sent.retries++;
        retried.push(answer);
        const wait = serverDelayMs(answer.headers, Date.now()) ?? 250;
        await sleep(Math.min(Math.max(wait, 100), 2000));
      }
    },
  };
}

/** Whether two answers are the same: whole, with the same status and the same body bytes. */
export const same = (a: Answer, b: Answer): boolean =>
  a.error === null && b.error === null && a.status === b.status && a.body.equals(b.body);

/** The header that marks `answer` as a replay (`Idempotent-Replay: true`, or a common other spelling), or `null`. */
export function replayMark(answer: Answer): string | null {
  let mark: string | null = null;
  answer.headers.forEach((value, name) => {
    if (mark === null && /^(x-)?idempoten(t|cy)-replay(ed)?$/.test(name) && value.trim().toLowerCase() === 'true') {
      mark = name.replace(/(^|-)([a-z])/g, (_: string, dash: string, letter: string) => dash + letter.toUpperCase());
    }
  });
  return mark;
}

/** An answer in a few words: `201 (87 B)`, `409 idempotency_key_reused`, `200, broken off after 45 B (terminated)`. */
export function show(answer: Answer): string {
  if (answer.status === 0) return `no answer (${answer.error ?? 'failed'})`;
  const code = answer.status >= 400 ? problemCodeOf(answer.body.toString('utf8')) : undefined;
  const what = code === undefined ? `${answer.status} (${answer.body.length} B)` : `${answer.status} ${code}`;
  return answer.error === null ? what : `${answer.status}, broken off after ${answer.body.length} B (${answer.error})`;
}

/** How `answer` differs from `other`: `200 (147 B) with other bytes than the first`, or both shown. */
export function differs(answer: Answer, other: Answer): string {
  const bytes = answer.status === other.status && answer.error === null && other.error === null;
  return bytes ? `${show(answer)} with other bytes than the first answer` : `${show(answer)}, the first answer ${show(other)}`;
}
