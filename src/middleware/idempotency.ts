/**
 * @module
 * `idempotency()`: the Hono middleware behind both the proxy and in-app use.
 *
 * Parsing the key, scoping it, fingerprinting the request, the Durable Object's state machine, the
 * stored record and the errors are the same in both modes; only where the attempt runs differs:
 * - `{ mode: 'handler' }` (default): the app's own handler runs in the Worker, under a lease held by
 *   the object (`begin` / `complete`). If the Worker is cut off mid-handler (client disconnect past the
 *   `waitUntil` window, CPU limit), the object never hears back: the key is held until the lease ends
 *   and may then run again.
 * - `{ mode: 'origin', target }`: the object itself fetches `target` (`execute`), so the attempt
 *   survives client disconnects and slow origins. This is what the proxy uses.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createMiddleware } from 'hono/factory';
import { MAX_BODY_BYTES_LIMIT } from '../core/config';
import { captureResponse } from '../core/capture';
import { fingerprintRequest, recordName, sha256Hex } from '../core/fingerprint';
import { forwardableHeaders } from '../core/headers';
import { describeKeyError, parseIdempotencyKey } from '../core/key';
import { type Reporter, type RequestLog, consoleReporter } from '../core/log';
import { type Outcome, REPLAY_HEADER, type Settled, outcomeProblem, storedResponse } from '../core/outcome';
import { PROBLEMS, type ProblemCode, problem } from '../core/problem';
import type { BeginResult, IdempotencyRecord } from '../core/record';
import { ReplayCache } from '../core/replay-cache';
import { type RetryOptions, callDurableObject } from '../core/retry';

/** Where an attempt runs. */
export type IdempotencyMode =
  /** The app's next handler runs in the Worker under the object's lease. */
  | { readonly mode: 'handler' }
  /** The object fetches `target(c)` itself, forwarding the request's headers and body. */
  | { readonly mode: 'origin'; readonly target: (c: Context) => URL };

/** An error the middleware answers with, before `onError` may replace it. */
export interface IdempotencyProblem {
  readonly code: ProblemCode;
  readonly status: number;
  readonly detail: string;
  /** Internal reason (never sent to the client). */
  readonly cause?: unknown;
}

/** Options of {@link idempotency}. */
export interface IdempotencyOptions {
  /**
   * Name of the env binding of the `IdempotencyRecord` Durable Object namespace.
   * @default 'IDEMPOTENCY'
   */
  readonly binding?: string;
  /**
   * Methods made idempotent; other methods pass through.
   * @default ['POST', 'PUT', 'PATCH', 'DELETE']
   */
  readonly methods?: readonly string[];
  /**
   * The request header carrying the key.
   * @default 'Idempotency-Key'
   */
  readonly headerName?: string;
  /**
   * How long a key is remembered, from its first request, in seconds.
   * @default 86400
   */
  readonly ttlSeconds?: number;
  /**
   * How long a request waits for the attempt (origin mode: then 504 for the first request; duplicates:
   * then 409 `idempotency_key_in_progress`), in ms.
   * @default 30000
   */
  readonly timeoutMs?: number;
  /**
   * How long an attempt may run before it is abandoned and the key freed, in ms. At least `timeoutMs`,
   * below the TTL.
   * @default max(120000, timeoutMs)
   */
  readonly leaseMs?: number;
  /**
   * Largest request body accepted and largest response stored, in bytes (at most 24 MiB).
   * @default 10485760
   */
  readonly maxBodyBytes?: number;
  /**
   * Whether requests with an idempotent method must carry a key (else 400 `idempotency_key_missing`).
   * @default false
   */
  readonly required?: boolean;
  /**
   * The scope a key belongs to. Only its SHA-256 is used. `null`/`undefined`: the request passes
   * through unprotected.
   * @default the whole `Authorization` header (malformed values get 400 `authorization_invalid`)
   */
  readonly scope?: (c: Context) => string | null | undefined;
  /**
   * The request fingerprint a key is bound to.
   * @default SHA-256 of method, path, query and body bytes
   */
  readonly fingerprint?: (c: Context, body: ArrayBuffer) => string | Promise<string>;
  /** Called with every problem before it is sent; may return a replacement response. */
  readonly onError?: (problem: IdempotencyProblem, c: Context) => Response | undefined | Promise<Response | undefined>;
  /**
   * Where attempts run.
   * @default { mode: 'handler' }
   */
  readonly run?: IdempotencyMode;
  /**
   * Retries of Durable Object calls the platform marks retryable (never when overloaded); `false` turns
   * them off.
   * @default { attempts: 3, baseDelayMs: 50 }
   */
  readonly retry?: RetryOptions | false;
  /**
   * Where the per-request log line goes; `false` for none. The default writes JSON to the console and,
   * when an Analytics Engine dataset is bound as `METRICS`, a data point.
   */
  readonly reporter?: Reporter | false;
}

/** Variables the middleware sets on the context. */
export interface IdempotencyVariables {
  /** The normalised key of this request, when it carried a valid one. */
  idempotencyKey?: string;
}

/** The Hono env of {@link idempotency}. */
export interface IdempotencyEnv {
  Bindings: Record<string, unknown>;
  Variables: IdempotencyVariables;
}

const DEFAULT_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];
const WELL_FORMED_CREDENTIALS = /^[\t\x20-\x7e]*[\x21-\x7e][\t\x20-\x7e]*$/;

class Rejection extends Error {
  constructor(readonly problem: IdempotencyProblem) {
    super(problem.detail);
  }
}

const reject = (code: ProblemCode, detail: string, cause?: unknown): never => {
  throw new Rejection({ code, status: PROBLEMS[code].status, detail, cause });
};

/** The default scope: the whole `Authorization` value; none means pass through. */
function authorizationScope(c: Context): string | undefined {
  const authorization = c.req.header('authorization');
  if (authorization === undefined) return undefined;
  if (!WELL_FORMED_CREDENTIALS.test(authorization)) {
    reject('authorization_invalid', 'The Authorization header is empty or contains control characters or non-ASCII bytes.');
  }
  return authorization;
}

function positiveInteger(name: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new TypeError(`idempotency(): ${name} must be a whole number from 1 to ${max}, got ${value}`);
  }
  return value;
}

/**
 * Makes writes that carry an `Idempotency-Key` run at most once per (scope, key), backed by the
 * `IdempotencyRecord` Durable Object.
 *
 * @param options - see {@link IdempotencyOptions}; validated once, here
 * @returns the middleware
 * @throws TypeError for impossible options (lease shorter than the wait, body limit over 24 MiB, ...)
 * @example
 * ```ts
 * import { Hono } from 'hono';
 * import { idempotency, IdempotencyRecord } from 'idempotency-proxy';
 *
 * export { IdempotencyRecord }; // bound as IDEMPOTENCY in wrangler.toml (new_sqlite_classes)
 * const app = new Hono<{ Bindings: Env }>();
 * app.use('/api/*', idempotency());
 * app.post('/api/charges', async (c) => c.json(await createCharge(await c.req.json()), 201));
 * export default app;
 * ```
 */
export function idempotency(options: IdempotencyOptions = {}): MiddlewareHandler<IdempotencyEnv> {
  const binding = options.binding ?? 'IDEMPOTENCY';
  const methods = new Set((options.methods ?? DEFAULT_METHODS).map((m) => m.toUpperCase()));
  if (methods.size === 0) throw new TypeError('idempotency(): methods must not be empty');
  const headerName = options.headerName ?? 'Idempotency-Key';
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(headerName)) throw new TypeError(`idempotency(): headerName ${JSON.stringify(headerName)} is not a header name`);
  const ttlMs = positiveInteger('ttlSeconds', options.ttlSeconds ?? 86_400, 30 * 86_400) * 1000;
  const timeoutMs = positiveInteger('timeoutMs', options.timeoutMs ?? 30_000, 15 * 60_000);
  const leaseMs = positiveInteger('leaseMs', options.leaseMs ?? Math.max(120_000, timeoutMs), 15 * 60_000);
  if (leaseMs < timeoutMs) throw new TypeError(`idempotency(): leaseMs (${leaseMs}) must be at least timeoutMs (${timeoutMs})`);
  if (leaseMs >= ttlMs) throw new TypeError(`idempotency(): leaseMs (${leaseMs}) must be shorter than the TTL (${ttlMs} ms)`);
  const maxBodyBytes = positiveInteger('maxBodyBytes', options.maxBodyBytes ?? 10 * 1024 * 1024, MAX_BODY_BYTES_LIMIT);
  const required = options.required ?? false;
  const scopeOf = options.scope ?? authorizationScope;
  const run: IdempotencyMode = options.run ?? { mode: 'handler' };
  const retry = options.retry === false ? { attempts: 1 } : options.retry;
  const limits = { timeoutMs, leaseMs, ttlMs };
  const tooLarge = `The request body exceeds ${maxBodyBytes} bytes.`;
  const limit = bodyLimit({ maxSize: maxBodyBytes, onError: () => reject('request_too_large', tooLarge) });
  const replays = new ReplayCache();

  /** Sends a problem, unless `onError` replaces it. */
  async function answer(c: Context, spec: IdempotencyProblem, retryAfterSeconds?: number): Promise<Response> {
    return (await options.onError?.(spec, c)) ?? problem(spec.code, spec.detail, retryAfterSeconds);
  }

  /** The log of one request; a no-op (and `enabled: false`) when reporting is off. */
  function requestLog(c: Context<IdempotencyEnv>, started: number): Log {
    if (options.reporter === false) return silent;
    const reporter = options.reporter ?? consoleReporter(c.env['METRICS'] as AnalyticsEngineDataset | undefined);
    return Object.assign((entry: Parameters<Log>[0]) => reporter.report({ method: c.req.method, latency_ms: Date.now() - started, ...entry }), { enabled: true });
  }

  return createMiddleware<IdempotencyEnv>(async function idempotency(c, next) {
    const log = requestLog(c, Date.now());
    const ctx = c as unknown as Context;
    if (!methods.has(c.req.method)) {
      await next();
      if (log.enabled) log({ outcome: 'passthrough', status: c.res.status });
      return;
    }
    try {
      const rawKey = c.req.header(headerName);
      const parsed = rawKey === undefined ? undefined : parseIdempotencyKey(rawKey);
      if (parsed === undefined && required) reject('idempotency_key_missing', `${c.req.method} requests must carry an ${headerName} header.`);
      if (parsed?.ok === false) reject('idempotency_key_invalid', describeKeyError(parsed.error));
      const scope = parsed === undefined ? undefined : scopeOf(ctx);
      if (parsed === undefined || scope === null || scope === undefined) {
        await next();
        if (log.enabled) log({ outcome: 'passthrough', status: c.res.status });
        return;
      }
      const key = (parsed as { key: string }).key;
      c.set('idempotencyKey', key);
      const limited = await limit(ctx, async () => {
        // Assigned, not just returned: after the handler ran, Hono ignores a middleware's return value.
        c.res = await attempt(c, key, scope, next, log);
      });
      return limited ?? c.res;
    } catch (error) {
      if (!(error instanceof Rejection)) throw error;
      log({ outcome: 'rejected', status: error.problem.status, code: error.problem.code });
      return answer(ctx, error.problem, error.problem.code === 'idempotency_unavailable' ? 1 : undefined);
    }
  });

  /** Runs a keyed request: the object decides, the attempt runs where `run` says; returns the answer. */
  async function attempt(c: Context<IdempotencyEnv>, key: string, scope: string, next: () => Promise<void>, log: Log): Promise<Response> {
    const ctx = c as unknown as Context;
    let body: ArrayBuffer;
    try {
      body = await c.req.arrayBuffer();
    } catch (cause) {
      return reject('request_body_invalid', 'The request body ended before its declared length or could not be read.', cause);
    }
    if (body.byteLength > maxBodyBytes) reject('request_too_large', tooLarge);
    const url = new URL(c.req.url);
    const [scopeHash, fingerprint] = await Promise.all([
      sha256Hex(scope),
      options.fingerprint ? options.fingerprint(ctx, body) : fingerprintRequest(c.req.method, url.pathname + url.search, body),
    ]);
    const name = recordName(scopeHash, key);
    // Hashes for the log line only; not computed when nothing is logged.
    const ids = log.enabled ? { key_hash: (await sha256Hex(name)).slice(0, 16), scope_hash: scopeHash.slice(0, 16) } : {};
    const namespace = c.env[binding] as DurableObjectNamespace<IdempotencyRecord> | undefined;
    if (namespace === undefined) return reject('configuration_invalid', `The Durable Object binding ${binding} is missing.`);
    const id = namespace.idFromName(name);
    const call = <R>(fn: (stub: DurableObjectStub<IdempotencyRecord>) => Promise<R>, retries = retry): Promise<R> =>
      callDurableObject(() => namespace.get(id), fn, retries).catch((cause: unknown) =>
        reject('idempotency_unavailable', `The idempotency store could not be reached or failed. Retry later with the same ${headerName}.`, cause),
      );

    const waitStarted = Date.now();
    let outcome: Outcome;
    const cached = replays.get(name, waitStarted);
    if (cached !== undefined) {
      outcome = cached.fingerprint === fingerprint ? { kind: 'response', replayed: true, response: cached.response } : { kind: 'conflict' };
    } else if (run.mode === 'origin') {
      const headers = forwardableHeaders(c.req.raw.headers);
      for (const pair of headers) if (pair[0] === headerName.toLowerCase()) pair[1] = key;
      const origin = { method: c.req.method, url: run.target(ctx).href, headers, body: c.req.raw.body === null ? null : body, maxBodyBytes };
      outcome = await call(async (stub) => (await stub.execute({ fingerprint, ...limits, origin })) as Outcome);
    } else {
      // Not retried: a begin() whose answer was lost may have acquired the key, and a retry would then
      // wait on an attempt nobody runs. The client retries instead (the key is then held until the lease ends).
      const begun = await call(async (stub) => (await stub.begin({ fingerprint, ...limits })) as BeginResult, { attempts: 1 });
      outcome = begun.kind === 'acquired' ? await runHandler(c, begun.attempt, next, call, ids.key_hash) : begun;
    }
    const originMs = Date.now() - waitStarted;
    if (outcome.kind === 'response' && outcome.expiresAt !== undefined) replays.set(name, fingerprint, outcome.response, outcome.expiresAt);

    const failure = outcomeProblem(outcome);
    if (failure !== undefined) {
      const status = PROBLEMS[failure.code].status;
      log({ outcome: outcome.kind === 'conflict' ? 'conflict' : outcome.kind === 'in_progress' ? 'in_progress' : 'executed', status, code: failure.code, ...ids });
      return answer(ctx, { ...failure, status }, failure.retryAfterSeconds);
    }
    const response = storedResponse(outcome as Extract<Outcome, { kind: 'response' }>);
    log({ outcome: response.headers.has(REPLAY_HEADER) ? 'replayed' : 'executed', status: response.status, origin_ms: originMs, ...ids });
    return response;
  }

  /** Handler mode, for the request that acquired the key: runs the handler and reports its answer. */
  async function runHandler(
    c: Context<IdempotencyEnv>,
    attemptId: string,
    next: () => Promise<void>,
    call: <R>(fn: (stub: DurableObjectStub<IdempotencyRecord>) => Promise<R>, retries?: RetryOptions) => Promise<R>,
    keyHash: string | undefined,
  ): Promise<Outcome> {
    await next();
    let settled: Settled;
    try {
      // The handler's bytes are served as they are, so its content-encoding is kept.
      settled = await captureResponse(c.res, maxBodyBytes, false);
    } catch {
      settled = { kind: 'origin_unreachable' };
    }
    try {
      await call((stub) => stub.complete(attemptId, settled));
    } catch (error) {
      // Not recorded: the key stays held until the lease ends. The client still gets the answer.
      console.error(JSON.stringify({ event: 'complete_failed', key_hash: keyHash, error: String(error instanceof Rejection ? error.problem.cause : error) }));
    }
    return settled.kind === 'response' ? { kind: 'response', replayed: false, response: settled.response } : settled;
  }
}

type Log = ((entry: Omit<RequestLog, 'method' | 'latency_ms'>) => void) & { readonly enabled: boolean };

const silent: Log = Object.assign(() => undefined, { enabled: false });
