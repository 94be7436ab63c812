/**
 * @module
 * `idempotency()`: the Hono middleware behind both the proxy and in-app use.
 *
 * Parsing the key, scoping it, fingerprinting the request, the Durable Object's state machine, the
 * stored record and the errors are the same in both modes; only where the attempt runs differs:
 * - `{ mode: 'handler' }` (default): the app's own handler runs in the Worker, under a lease held by
 *   the object (`begin`, then the report on what it returned: `handler.ts`). If the Worker is cut off mid-handler (client disconnect past the
 *   `waitUntil` window, CPU limit), the object never hears back: the key is held until the lease ends
 *   and may then run again.
 * - `{ mode: 'origin', target }`: the object itself fetches `target` (`execute`), so the attempt
 *   survives client disconnects and slow origins. This is what the proxy uses.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createMiddleware } from 'hono/factory';
import type { BeginResult, Outcome } from '../record/api';
import { sha256Hex } from '../shared/hash';
import { forwardableHeaders, forwardedHeader } from '../shared/headers';
import { describeKeyError, parseIdempotencyKey } from '../shared/key';
import { isStored, logUnreachable, markAge, outcomeProblem, sendStored, storedResponse } from './answer';
import { type ProblemSpec, Rejection, reject } from '../shared/problem';
import { type RequestLog, consoleReporter, isRepeat, logScopeHash } from './log';
import type { IdempotencyOptions } from './options';
import { type ResolvedOptions, resolveOptions, untouched } from './resolve';
import { limitRates } from './rate-limit';
import { runHandler } from './handler';
import { Records, keyHashOf, recordName } from '../record/stub';
import { isolateReplays as replays } from './replay-cache';
import { reconcileRequest } from './reconcile';
import { ANONYMOUS_KIND, ANONYMOUS_SCOPE_HASH, missingScopeDetail } from './scope';

/** Variables the middleware sets on the context. */
export interface IdempotencyVariables {
  /**
   * The normalised key of this request, once an `idempotency()` has taken it (handler mode). Set, it also tells
   * any later `idempotency()` on the same request to stay out of the way.
   */
  idempotencyKey?: string;
}

/** The Hono env of {@link idempotency}. */
export interface IdempotencyEnv {
  Bindings: Record<string, unknown>;
  Variables: IdempotencyVariables;
}

const rejectBody = (cause: unknown): never =>
  reject('request_body_invalid', 'The request body ended before its declared length or could not be read.', { cause });

/**
 * `work`, kept going by the request's `waitUntil` when it has one: a client that goes away must not cut the attempt's
 * log line (its outcome) short. The attempt itself runs in the object either way.
 */
function outliving<T>(c: Context<IdempotencyEnv>, work: Promise<T>): Promise<T> {
  try {
    c.executionCtx.waitUntil(work.catch(() => {}));
  } catch {
    // No execution context (`app.request` without one): nothing outlives the request anyway.
  }
  return work;
}

/** A keyed request on its way. */
interface Keyed {
  readonly key: string;
  /** The record's name. */
  readonly name: string;
  /** The log lines' `key_hash`: the start of the record's object id, once known. */
  keyHash: string | undefined;
  readonly scopeHash: string;
  readonly started: number;
}

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
  return createIdempotency(resolveOptions(options));
}

/** {@link idempotency} for options already resolved (the proxy resolves its variables once, in `readConfig`). */
export function createIdempotency(resolved: ResolvedOptions): MiddlewareHandler<IdempotencyEnv> {
  const {
    headerName,
    ttlMs,
    timeoutMs,
    leaseMs,
    onUnknown,
    reconcileUrl,
    maxBodyBytes,
    required,
    run,
    reporter,
    logPassThrough,
    logRepeats,
    onError,
    scope,
    namespace,
    answers,
  } = resolved;
  const keyHeader = headerName.toLowerCase();
  const rateLimited = resolved.rateLimit !== undefined || resolved.ipRateLimit !== undefined;
  const limits = { timeoutMs, leaseMs, ttlMs, onUnknown };
  const records = new Records(resolved);
  const scopeHashOf = logScopeHash(resolved.logHashSecret);
  /** The default reporter without a `METRICS` dataset, built once. */
  const consoleOnly = consoleReporter(undefined, { repeats: logRepeats });
  const tooLarge = `The request body exceeds ${maxBodyBytes} bytes.`;
  // The one body-size check of a keyed request: a declared length is checked before anything is read,
  // an undeclared one while reading.
  const limit = bodyLimit({ maxSize: maxBodyBytes, onError: () => reject('request_too_large', tooLarge) });

  /** Writes the log line of a request (no-op when reporting is off). */
  function report(c: Context<IdempotencyEnv>, started: number, entry: Omit<RequestLog, 'method' | 'latency_ms'>): void {
    if (reporter === false) return;
    const metrics = c.env['METRICS'] as AnalyticsEngineDataset | undefined;
    (reporter ?? (metrics === undefined ? consoleOnly : consoleReporter(metrics, { repeats: logRepeats }))).report({
      method: c.req.method,
      latency_ms: Date.now() - started,
      ...entry,
    });
  }

  /** The log line of a keyed request: its outcome, and the hashes that identify its record and scope. */
  async function reportKeyed(c: Context<IdempotencyEnv>, keyed: Keyed, entry: Omit<RequestLog, 'method' | 'latency_ms'>): Promise<void> {
    if (reporter === false) return;
    // The default reporter would write nothing for it: no line (a replay) and no data point (no METRICS).
    if (reporter === undefined && isRepeat(entry) && !logRepeats && c.env['METRICS'] === undefined) return;
    const scope_hash = await scopeHashOf(keyed.scopeHash);
    report(c, keyed.started, {
      ...entry,
      ...(keyed.keyHash === undefined ? {} : { key_hash: keyed.keyHash }),
      scope_hash,
    });
  }

  /** Passes a request on untouched. */
  async function passOn(c: Context<IdempotencyEnv>, next: () => Promise<void>, started: number): Promise<void> {
    await next();
    if (logPassThrough) report(c, started, { outcome: 'passthrough', status: c.res.status });
  }

  /** Sends a problem, unless `onError` replaces it. */
  async function answer(c: Context, spec: ProblemSpec): Promise<Response> {
    const { code, detail, cause } = spec;
    const replaced = await onError?.({ code, status: answers.status(code), detail, ...(cause === undefined ? {} : { cause }) }, c);
    return replaced ?? answers.problem(spec, c.req.raw);
  }

  return createMiddleware<IdempotencyEnv>(async function idempotency(c, next) {
    // One idempotency() per request: the first one registered that takes it (its handler runs inside our `next`).
    // A second would find the first one's attempt in flight under the same name and answer for it.
    if (c.var.idempotencyKey !== undefined) return next();
    const started = Date.now();
    if (untouched(resolved, c.req.method, c.req.raw.headers)) return passOn(c, next, started);
    const ctx = c as unknown as Context;
    let keyed: Keyed | undefined;
    try {
      // In origin mode the key and the scope are read from exactly the headers the origin will get: a
      // header the request's Connection names is not forwarded, so it can neither key nor scope the request.
      const header = run.mode === 'origin' ? forwardedHeader(c.req.raw.headers) : (name: string) => c.req.header(name);
      const raw = header(keyHeader);
      if (raw === undefined) {
        if (required) reject('idempotency_key_missing', `${c.req.method} requests must carry an ${headerName} header.`);
        return passOn(c, next, started);
      }
      const parsed = parseIdempotencyKey(raw);
      if (!parsed.ok) return reject('idempotency_key_invalid', describeKeyError(parsed.error));
      const credential = scope.read(ctx, header);
      // A key without a scope would be shared by every client: refused, unless anonymous keys are allowed.
      if (credential === undefined && !resolved.allowAnonymous) reject('credential_missing', missingScopeDetail(scope.kind, headerName));
      const scopeHash = credential === undefined ? ANONYMOUS_SCOPE_HASH : await sha256Hex(credential);
      const host = resolved.hostScoped ? new URL(c.req.url).host : undefined;
      keyed = {
        key: parsed.key,
        name: recordName(namespace, credential === undefined ? ANONYMOUS_KIND : scope.kind, scopeHash, parsed.key, host),
        keyHash: undefined,
        scopeHash,
        started,
      };
      // Before any object is created: past a limit, nothing is stored and the origin is not called.
      if (rateLimited)
        await limitRates(c.env, resolved, { scope: credential, ip: c.req.raw.headers.get('cf-connecting-ip') ?? undefined }, scopeHash);
      // For the app's handler (handler mode): in origin mode nothing runs after this middleware.
      if (run.mode === 'handler') c.set('idempotencyKey', parsed.key);
      const current = keyed;
      // bodyLimit reads a body of undeclared length itself: a stream that fails while it reads is the client's
      // broken request, not a failure of this layer.
      let reading = true;
      const limited = await limit(ctx, async () => {
        reading = false;
        // Assigned, not just returned: after the handler ran, Hono ignores a middleware's return value.
        c.res = await outliving(c, attempt(c, current, next));
      }).catch((cause: unknown) => (reading && !(cause instanceof Rejection) ? rejectBody(cause) : Promise.reject(cause)));
      return limited ?? c.res;
    } catch (error) {
      if (!(error instanceof Rejection)) throw error;
      const entry = { outcome: 'rejected' as const, status: answers.status(error.problem.code), code: error.problem.code };
      if (keyed === undefined) report(c, started, entry);
      else await reportKeyed(c, keyed, entry);
      return answer(ctx, error.problem);
    }
  });

  /** Runs a keyed request: the object decides, the attempt runs where `run` says; returns the answer. */
  async function attempt(c: Context<IdempotencyEnv>, keyed: Keyed, next: () => Promise<void>): Promise<Response> {
    const ctx = c as unknown as Context;
    let body: ArrayBuffer;
    try {
      // In handler mode through Hono's body cache, so the handler can read the body again.
      body = await (run.mode === 'origin' ? c.req.raw.arrayBuffer() : c.req.arrayBuffer());
    } catch (cause) {
      return rejectBody(cause);
    }
    const url = new URL(c.req.url);
    const fingerprint = await resolved.fingerprint(ctx, url, body);
    const { name, key } = keyed;
    const waited = Date.now();

    // A hot key: what this isolate learned of the stored record answers, prepared once.
    const cached = replays.get(name, waited);
    if (cached !== undefined) {
      keyed.keyHash = cached.keyHash;
      if (cached.fingerprint !== fingerprint) return refuse(c, keyed, { kind: 'conflict' }, true);
      if (cached.response !== undefined && cached.init !== undefined) {
        await reportKeyed(c, keyed, { outcome: 'replayed', status: cached.response.status, origin_ms: 0, cached: true });
        const replay = sendStored(cached.response, cached.init);
        // Its age at the time of sending, never the age it had when it was cached.
        if (cached.createdAt !== undefined) markAge(replay.headers, cached.createdAt, Date.now());
        return answers.own(replay, c.req.raw);
      }
    }

    const ref = records.locate(c.env, name);
    keyed.keyHash = keyHashOf(ref.id);
    const spec = { fingerprint, ...limits, method: c.req.method, path: url.pathname };
    let outcome: Outcome;
    if (run.mode === 'origin') {
      const headers = forwardableHeaders(c.req.raw.headers);
      for (const pair of headers) if (pair[0] === keyHeader) pair[1] = key;
      const target = run.target(ctx);
      const url = typeof target === 'string' ? target : target.href;
      const origin = { method: c.req.method, url, headers, body: c.req.raw.body === null ? null : body, maxBodyBytes };
      const asking =
        reconcileUrl === undefined ? {} : { reconcile: reconcileRequest(reconcileUrl, url, key, keyHeader, headers, scope.kind) };
      outcome = await records.call(ref, async (stub) => (await stub.execute({ ...spec, origin, ...asking })) as Outcome);
      if (outcome.kind === 'origin_unreachable') logUnreachable(url);
    } else {
      // Not retried: a begin() whose answer was lost may have acquired the key, and a retry would then
      // wait on an attempt nobody runs. The client retries instead (the key is then held until the lease ends).
      const begun = await records.call(ref, async (stub) => (await stub.begin(spec)) as BeginResult, { attempts: 1, baseDelayMs: 0 });
      outcome = begun.kind === 'acquired' ? await runHandler(records, { maxBodyBytes, leaseMs }, c, ref, begun, next) : begun;
    }
    if (outcome.kind === 'conflict' && outcome.stored !== undefined)
      replays.set(name, { ...outcome.stored, keyHash: keyed.keyHash }, Date.now());
    if (outcome.kind !== 'response') return refuse(c, keyed, outcome);
    // Read back from storage (not just produced): it stays exactly this until it expires or is purged.
    const { expiresAt, response: stored, createdAt } = outcome;
    if (expiresAt !== undefined && isStored(stored))
      replays.set(name, { fingerprint, response: stored, keyHash: keyed.keyHash, expiresAt, createdAt }, Date.now());
    // A replay is the layer's own answer; the first one is the origin's, whose CORS policy stands.
    const response = outcome.replayed
      ? answers.own(storedResponse(outcome), c.req.raw)
      : answers.exposeTo(storedResponse(outcome), c.req.raw);
    await reportKeyed(c, keyed, {
      outcome: outcome.replayed ? 'replayed' : 'executed',
      status: response.status,
      origin_ms: Date.now() - waited,
    });
    return response;
  }

  /** The problem answer of an outcome without a response, logged. */
  async function refuse(
    c: Context<IdempotencyEnv>,
    keyed: Keyed,
    outcome: Exclude<Outcome, { kind: 'response' }>,
    cached = false,
  ): Promise<Response> {
    const failure = outcomeProblem(outcome)!;
    const kind = outcome.kind === 'conflict' || outcome.kind === 'in_progress' ? outcome.kind : 'executed';
    await reportKeyed(c, keyed, {
      outcome: kind,
      status: answers.status(failure.code),
      code: failure.code,
      ...(cached ? { cached } : {}),
    });
    return answer(c as unknown as Context, failure);
  }
}
