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
import type { BeginResult } from '../record/api';
import type { IdempotencyRecord } from '../record/record';
import { captureResponse } from '../shared/capture';
import { sha256Hex } from '../shared/hash';
import { forwardableHeaders } from '../shared/headers';
import { describeKeyError, parseIdempotencyKey } from '../shared/key';
import { type Outcome, REPLAY_HEADER, type Settled, outcomeProblem, storedResponse } from '../shared/outcome';
import { PROBLEMS, type ProblemCode, problem } from '../shared/problem';
import { fingerprintRequest, recordName } from './fingerprint';
import { type RequestLog, consoleReporter } from './log';
import { type IdempotencyOptions, type IdempotencyProblem, resolveOptions } from './options';
import { ReplayCache } from './replay-cache';
import { type RetryOptions, callDurableObject } from './retry';

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

type Log = ((entry: Omit<RequestLog, 'method' | 'latency_ms'>) => void) & { readonly enabled: boolean };

const silent: Log = Object.assign(() => undefined, { enabled: false });

type Call = <R>(fn: (stub: DurableObjectStub<IdempotencyRecord>) => Promise<R>, retries?: RetryOptions) => Promise<R>;

/**
 * Makes writes that carry an `Idempotency-Key` run at most once per (scope, key), backed by the
 * `IdempotencyRecord` Durable Object.
 *
 * @param options - see {@link IdempotencyOptions}; validated once, here
 * @returns the middleware
 * @throws {@link OptionsError} (a `TypeError`) for options out of range or contradicting each other
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
  const { binding, methods, headerName, ttlMs, timeoutMs, leaseMs, maxBodyBytes, required, run, retry, reporter, onError, fingerprint } =
    resolveOptions(options);
  const scopeOf = options.scope ?? authorizationScope;
  const keyHeader = headerName.toLowerCase();
  const limits = { timeoutMs, leaseMs, ttlMs };
  const tooLarge = `The request body exceeds ${maxBodyBytes} bytes.`;
  // The one body-size check of a keyed request: a declared length is checked before anything is read,
  // an undeclared one while reading.
  const limit = bodyLimit({ maxSize: maxBodyBytes, onError: () => reject('request_too_large', tooLarge) });
  const replays = new ReplayCache();

  /** Sends a problem, unless `onError` replaces it. */
  async function answer(c: Context, spec: IdempotencyProblem, retryAfterSeconds?: number): Promise<Response> {
    return (await onError?.(spec, c)) ?? problem(spec.code, spec.detail, retryAfterSeconds);
  }

  /** The log of one request; a no-op (and `enabled: false`) when reporting is off. */
  function requestLog(c: Context<IdempotencyEnv>, started: number): Log {
    if (reporter === false) return silent;
    const to = reporter ?? consoleReporter(c.env['METRICS'] as AnalyticsEngineDataset | undefined);
    return Object.assign((entry: Parameters<Log>[0]) => to.report({ method: c.req.method, latency_ms: Date.now() - started, ...entry }), {
      enabled: true,
    });
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
      if (parsed === undefined && required)
        reject('idempotency_key_missing', `${c.req.method} requests must carry an ${headerName} header.`);
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
    const url = new URL(c.req.url);
    const [scopeHash, print] = await Promise.all([
      sha256Hex(scope),
      fingerprint ? fingerprint(ctx, body) : fingerprintRequest(c.req.method, url.pathname + url.search, body),
    ]);
    const name = recordName(scopeHash, key);
    // Hashes for the log line only; not computed when nothing is logged.
    const ids = log.enabled ? { key_hash: (await sha256Hex(name)).slice(0, 16), scope_hash: scopeHash.slice(0, 16) } : {};
    const namespace = c.env[binding] as DurableObjectNamespace<IdempotencyRecord> | undefined;
    if (namespace === undefined) return reject('configuration_invalid', `The Durable Object binding ${binding} is missing.`);
    const id = namespace.idFromName(name);
    const call: Call = (fn, retries = retry) =>
      callDurableObject(() => namespace.get(id), fn, retries).catch((cause: unknown) =>
        reject(
          'idempotency_unavailable',
          `The idempotency store could not be reached or failed. Retry later with the same ${headerName}.`,
          cause,
        ),
      );

    const waitStarted = Date.now();
    let outcome: Outcome;
    const cached = replays.get(name, waitStarted);
    if (cached !== undefined) {
      outcome = cached.fingerprint === print ? { kind: 'response', replayed: true, response: cached.response } : { kind: 'conflict' };
    } else if (run.mode === 'origin') {
      const headers = forwardableHeaders(c.req.raw.headers);
      for (const pair of headers) if (pair[0] === keyHeader) pair[1] = key;
      const origin = {
        method: c.req.method,
        url: run.target(ctx).href,
        headers,
        body: c.req.raw.body === null ? null : body,
        maxBodyBytes,
      };
      outcome = await call(async (stub) => (await stub.execute({ fingerprint: print, ...limits, origin })) as Outcome);
    } else {
      // Not retried: a begin() whose answer was lost may have acquired the key, and a retry would then
      // wait on an attempt nobody runs. The client retries instead (the key is then held until the lease ends).
      const begun = await call(async (stub) => (await stub.begin({ fingerprint: print, ...limits })) as BeginResult, { attempts: 1 });
      outcome = begun.kind === 'acquired' ? await runHandler(c, begun.attempt, next, call, ids.key_hash) : begun;
    }
    const originMs = Date.now() - waitStarted;
    if (outcome.kind === 'response' && outcome.expiresAt !== undefined) replays.set(name, print, outcome.response, outcome.expiresAt);

    const failure = outcomeProblem(outcome);
    if (failure !== undefined) {
      const status = PROBLEMS[failure.code].status;
      log({
        outcome: outcome.kind === 'conflict' ? 'conflict' : outcome.kind === 'in_progress' ? 'in_progress' : 'executed',
        status,
        code: failure.code,
        ...ids,
      });
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
    call: Call,
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
      console.error(
        JSON.stringify({
          event: 'complete_failed',
          key_hash: keyHash,
          error: String(error instanceof Rejection ? error.problem.cause : error),
        }),
      );
    }
    return settled.kind === 'response' ? { kind: 'response', replayed: false, response: settled.response } : settled;
  }
}
