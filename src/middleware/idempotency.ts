/**
 * @module
 * `idempotency()`: the Hono middleware behind both the proxy and in-app use. Its factory composes the steps a keyed
 * request takes, in this order:
 * 1. {@link keyOf}: the key (none: the request is passed on, or refused where keys are required);
 * 2. {@link scopeOf}: whose key it is (the credential, hashed) and the record that holds it; then the rate limits;
 * 3. `readBody`: the body, read once and bounded;
 * 4. the fingerprint, then {@link fromCache}: a hot key answered from what this isolate learned of its record;
 * 5. {@link ask}: the object decides, and the attempt runs where `run` says;
 * 6. {@link answer}: the outcome as the client's response (a problem through {@link refuse}), remembered and logged.
 *
 * Only step 5 differs between the modes:
 * - `{ mode: 'handler' }` (default): the app's own handler runs in the Worker, under a lease held by the object
 *   (`begin`, then the report on what it returned: `handler.ts`). If the Worker is cut off mid-handler (client
 *   disconnect past the `waitUntil` window, CPU limit), the object never hears back: the key is held until the lease
 *   ends and may then run again.
 * - `{ mode: 'origin', target }`: the object itself fetches `target` (`execute`), so the attempt survives client
 *   disconnects and slow origins. This is what the proxy uses.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import type { BeginResult, Outcome } from '../record/api';
import type { IdempotencyRecord } from '../record/record';
import { type RecordRef, Records, keyHashOf, recordName } from '../record/stub';
import { sha256Hex } from '../shared/bytes';
import { forwardableHeaders, forwardedHeader } from '../shared/headers';
import { describeKeyError, parseIdempotencyKey } from '../shared/key';
import { type ProblemSpec, Rejection, reject } from '../shared/problem';
import { isStored, logUnreachable, markAge, outcomeProblem, sendStored, storedResponse } from './answer';
import { readBody } from './body';
import { runHandler } from './handler';
import { type LoggedKey, RequestLogger } from './log';
import type { IdempotencyOptions } from './options';
import { limitRates } from './rate-limit';
import { reconcileRequest } from './reconcile';
import { isolateReplays as replays } from './replay-cache';
import { type ResolvedOptions, resolveOptions } from './resolve';
import { ANONYMOUS_KIND, ANONYMOUS_SCOPE_HASH, missingScopeDetail } from './scope';

/** Variables the middleware sets on the context. */
export interface IdempotencyVariables {
  /**
   * The normalised key of this request, once an `idempotency()` has taken it (handler mode). Set, it also tells
   * any later `idempotency()` on the same request to stay out of the way.
   */
  idempotencyKey?: string;
}

/**
 * The bindings the middleware reads, by their default names (the `binding` and `metrics` options may name others),
 * and the variable its objects read from the same env.
 */
export interface IdempotencyBindings {
  /** The `IdempotencyRecord` namespace (a `new_sqlite_classes` migration). */
  readonly IDEMPOTENCY?: DurableObjectNamespace<IdempotencyRecord>;
  /** A Workers Analytics Engine dataset: a data point per keyed request. */
  readonly METRICS?: AnalyticsEngineDataset;
  /** Encryption at rest (a secret): checked here before anything runs, read by the objects. */
  readonly IDEMPOTENCY_ENCRYPTION_KEYS?: string;
  readonly [name: string]: unknown;
}

/** The Hono env of {@link idempotency}. */
export interface IdempotencyEnv {
  Bindings: IdempotencyBindings;
  Variables: IdempotencyVariables;
}

/** What the steps of one configuration share, built once by the factory. */
interface Layer {
  readonly options: ResolvedOptions;
  readonly records: Records;
  readonly log: RequestLogger;
  /** The key header's name, lower case. */
  readonly keyHeader: string;
}

/** A keyed request on its way: its key, its record, and what its log lines say of it. */
interface Keyed extends LoggedKey {
  readonly key: string;
  /** The record's name. */
  readonly name: string;
}

type IdempotencyContext = Context<IdempotencyEnv>;

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

/**
 * {@link idempotency} for options already resolved (the proxy resolves its variables once, in its configuration).
 *
 * @param options - what `resolveOptions` returned
 */
export function createIdempotency(options: ResolvedOptions): MiddlewareHandler<IdempotencyEnv> {
  const layer: Layer = {
    options,
    records: new Records(options),
    log: new RequestLogger(options),
    keyHeader: options.headerName.toLowerCase(),
  };
  return createMiddleware<IdempotencyEnv>(async function idempotency(c, next) {
    // One idempotency() per request: the first one registered that takes it (its handler runs inside our `next`).
    // A second would find the first one's attempt in flight under the same name and answer for it.
    if (c.var.idempotencyKey !== undefined) return next();
    const started = Date.now();
    if (untouched(options, c.req.method, c.req.raw.headers)) return passOn(layer, c, next, started);
    let keyed: Keyed | undefined;
    try {
      // In origin mode the key and the scope are read from exactly the headers the origin will get: a header the
      // request's Connection names is not forwarded, so it can neither key nor scope the request.
      const header = options.run.mode === 'origin' ? forwardedHeader(c.req.raw.headers) : (name: string) => c.req.header(name);
      const key = keyOf(layer, c, header);
      if (key === undefined) return passOn(layer, c, next, started);
      const { credential, ...scoped } = await scopeOf(layer, c, header, key, started);
      keyed = scoped;
      // Before any object is created: past a limit, nothing is stored and the origin is not called.
      await limitRates(c.env, options, { scope: credential, ip: c.req.header('cf-connecting-ip') }, keyed.scopeHash);
      // For the app's handler (handler mode): in origin mode nothing runs after this middleware.
      if (options.run.mode === 'handler') c.set('idempotencyKey', key);
      const read = await readBody(c.req.raw, options.maxBodyBytes);
      if (read === 'too_large') reject('request_too_large', `The request body exceeds ${options.maxBodyBytes} bytes.`);
      if (read === 'broken') reject('request_body_invalid', 'The request body ended before its declared length or could not be read.');
      // Rebuilt from the bytes for the handler, which reads the body again.
      if (options.run.mode === 'handler' && c.req.raw.body !== null) c.req.raw = new Request(c.req.raw, { body: read.bytes });
      // Assigned, not just returned: after the handler ran, Hono ignores a middleware's return value.
      c.res = await outliving(c, attempt(layer, c, keyed, read.bytes, next));
      return c.res;
    } catch (error) {
      if (!(error instanceof Rejection)) throw error;
      const { code } = error.problem;
      const entry = { outcome: 'rejected', status: options.answers.status(code), code } as const;
      if (keyed === undefined) layer.log.line(c.env, c.req.method, started, entry);
      else await layer.log.keyed(c.env, c.req.method, keyed, entry);
      return problemAnswer(layer, c, error.problem);
    }
  });
}

/**
 * Whether a request is one the middleware passes on untouched, decided from its method and headers alone: the
 * method is not one it protects, or the request carries no key where keys are optional.
 */
export function untouched(options: ResolvedOptions, method: string, headers: Headers): boolean {
  return !options.methods.has(method) || (!options.required && !headers.has(options.headerName));
}

/** Passes a request on untouched (its log line only with `logPassThrough`). */
async function passOn(layer: Layer, c: IdempotencyContext, next: () => Promise<void>, started: number): Promise<void> {
  await next();
  if (layer.options.logPassThrough) layer.log.line(c.env, c.req.method, started, { outcome: 'passthrough', status: c.res.status });
}

/**
 * The request's key, normalised; `undefined` when it has none and keys are optional.
 *
 * @throws a rejection: `idempotency_key_missing` where keys are required, `idempotency_key_invalid`
 */
function keyOf({ options, keyHeader }: Layer, c: IdempotencyContext, header: (name: string) => string | undefined): string | undefined {
  const raw = header(keyHeader);
  if (raw === undefined) {
    if (options.required) reject('idempotency_key_missing', `${c.req.method} requests must carry an ${options.headerName} header.`);
    return undefined;
  }
  const parsed = parseIdempotencyKey(raw);
  if (!parsed.ok) return reject('idempotency_key_invalid', describeKeyError(parsed.error));
  return parsed.key;
}

/**
 * Whose key it is: the request's credential (never kept: only its hash names the record), and the record of the key
 * under it. A key without a credential would be shared by every client: refused, unless anonymous keys are allowed.
 *
 * @throws a rejection: `credential_missing`, or `authorization_invalid` for a malformed credential header
 */
async function scopeOf(
  { options }: Layer,
  c: IdempotencyContext,
  header: (name: string) => string | undefined,
  key: string,
  started: number,
): Promise<Keyed & { readonly credential: string | undefined }> {
  const { scope, namespace } = options;
  const credential = scope.read(c, header);
  if (credential === undefined && !options.allowAnonymous) reject('credential_missing', missingScopeDetail(scope.kind, options.headerName));
  const scopeHash = credential === undefined ? ANONYMOUS_SCOPE_HASH : await sha256Hex(credential);
  const host = options.hostScoped ? new URL(c.req.url).host : undefined;
  const name = recordName(namespace, credential === undefined ? ANONYMOUS_KIND : scope.kind, scopeHash, key, host);
  return { key, name, keyHash: undefined, scopeHash, started, credential };
}

/** Steps 4 to 6 for a request whose body has been read: the fingerprint, the cache, the object, the answer. */
async function attempt(layer: Layer, c: IdempotencyContext, keyed: Keyed, body: ArrayBuffer, next: () => Promise<void>): Promise<Response> {
  const url = new URL(c.req.url);
  const fingerprint = await layer.options.fingerprint(c, url, body);
  const waited = Date.now();
  const cached = await fromCache(layer, c, keyed, fingerprint, waited);
  if (cached !== undefined) return cached;
  const ref = layer.records.locate(c.env, keyed.name);
  const located = Object.assign(keyed, { keyHash: keyHashOf(ref.id) });
  const outcome = await ask(layer, c, located, ref, { fingerprint, method: c.req.method, path: url.pathname }, body, next);
  return answer(layer, c, located, outcome, fingerprint, waited);
}

/**
 * A hot key's answer from what this isolate learned of its stored record (prepared once): a conflict, or a replay.
 *
 * @returns the answer, or `undefined` when the object must be asked
 */
async function fromCache(
  layer: Layer,
  c: IdempotencyContext,
  keyed: Keyed,
  fingerprint: string,
  now: number,
): Promise<Response | undefined> {
  const cached = replays.get(keyed.name, now);
  if (cached === undefined) return undefined;
  keyed.keyHash = cached.keyHash;
  if (cached.fingerprint !== fingerprint) return refuse(layer, c, keyed, { kind: 'conflict' }, true);
  if (cached.response === undefined || cached.init === undefined) return undefined;
  await layer.log.keyed(c.env, c.req.method, keyed, { outcome: 'replayed', status: cached.response.status, origin_ms: 0, cached: true });
  const replay = sendStored(cached.response, cached.init);
  // Its age at the time of sending, never the age it had when it was cached.
  if (cached.createdAt !== undefined) markAge(replay.headers, cached.createdAt, Date.now());
  return layer.options.answers.own(replay, c.req.raw);
}

/**
 * Asks the record's object: in origin mode it decides and calls the origin itself (`execute`); in handler mode it
 * decides (`begin`), and the app's handler runs here when this request acquired the key.
 */
async function ask(
  { options, records, keyHeader }: Layer,
  c: IdempotencyContext,
  keyed: Keyed,
  ref: RecordRef,
  request: { readonly fingerprint: string; readonly method: string; readonly path: string },
  body: ArrayBuffer,
  next: () => Promise<void>,
): Promise<Outcome> {
  const { run, timeoutMs, leaseMs, ttlMs, onUnknown, reconcileUrl, maxBodyBytes } = options;
  const spec = { ...request, timeoutMs, leaseMs, ttlMs, onUnknown };
  if (run.mode === 'handler') {
    // Not retried: a begin() whose answer was lost may have acquired the key, and a retry would then wait on an
    // attempt nobody runs. The client retries instead (the key is then held until the lease ends).
    const begun = await records.call(ref, async (stub) => (await stub.begin(spec)) as BeginResult, { attempts: 1, baseDelayMs: 0 });
    return begun.kind === 'acquired' ? runHandler(records, options, c, ref, begun, next) : begun;
  }
  const headers = forwardableHeaders(c.req.raw.headers);
  for (const pair of headers) if (pair[0] === keyHeader) pair[1] = keyed.key;
  const target = run.target(c);
  const url = typeof target === 'string' ? target : target.href;
  const origin = { method: c.req.method, url, headers, body: c.req.raw.body === null ? null : body, maxBodyBytes };
  const asking =
    reconcileUrl === undefined ? {} : { reconcile: reconcileRequest(reconcileUrl, url, keyed.key, keyHeader, headers, options.scope.kind) };
  const outcome = await records.call(ref, async (stub) => (await stub.execute({ ...spec, origin, ...asking })) as Outcome);
  if (outcome.kind === 'origin_unreachable') logUnreachable(url);
  return outcome;
}

/**
 * The client's response to what the object answered. What was read back from storage (a stored record's answer, or
 * the fingerprint a conflict revealed) is remembered in this isolate: it stays so until it expires or is purged.
 */
async function answer(
  layer: Layer,
  c: IdempotencyContext,
  keyed: Keyed & { readonly keyHash: string },
  outcome: Outcome,
  fingerprint: string,
  waited: number,
): Promise<Response> {
  const { keyHash } = keyed;
  if (outcome.kind === 'conflict' && outcome.stored !== undefined) replays.set(keyed.name, { ...outcome.stored, keyHash }, Date.now());
  if (outcome.kind !== 'response') return refuse(layer, c, keyed, outcome);
  const { expiresAt, response: stored, createdAt } = outcome;
  if (expiresAt !== undefined && isStored(stored))
    replays.set(keyed.name, { fingerprint, response: stored, keyHash, expiresAt, createdAt }, Date.now());
  // A replay is the layer's own answer; the first one is the origin's, whose CORS policy stands.
  const { answers } = layer.options;
  const response = outcome.replayed
    ? answers.own(storedResponse(outcome), c.req.raw)
    : answers.exposeTo(storedResponse(outcome), c.req.raw);
  const entry = { outcome: outcome.replayed ? 'replayed' : 'executed', status: response.status, origin_ms: Date.now() - waited } as const;
  await layer.log.keyed(c.env, c.req.method, keyed, entry);
  return response;
}

/** The problem answer of an outcome without a response, logged (`cached`: answered from the isolate's cache). */
async function refuse(
  layer: Layer,
  c: IdempotencyContext,
  keyed: Keyed,
  outcome: Exclude<Outcome, { kind: 'response' }>,
  cached = false,
): Promise<Response> {
  const failure = outcomeProblem(outcome)!;
  const kind = outcome.kind === 'conflict' || outcome.kind === 'in_progress' ? outcome.kind : 'executed';
  const status = layer.options.answers.status(failure.code);
  await layer.log.keyed(c.env, c.req.method, keyed, { outcome: kind, status, code: failure.code, ...(cached ? { cached } : {}) });
  return problemAnswer(layer, c, failure);
}

/** Sends a problem, unless `onError` replaces it. */
async function problemAnswer({ options }: Layer, c: IdempotencyContext, spec: ProblemSpec): Promise<Response> {
  const { code, detail, cause } = spec;
  const problem = { code, status: options.answers.status(code), detail, ...(cause === undefined ? {} : { cause }) };
  return (await options.onError?.(problem, c)) ?? options.answers.problem(spec, c.req.raw);
}

/**
 * `work`, kept going by the request's `waitUntil` when it has one: a client that goes away must not cut the attempt's
 * log line (its outcome) short. The attempt itself runs in the object either way.
 */
function outliving<T>(c: IdempotencyContext, work: Promise<T>): Promise<T> {
  try {
    c.executionCtx.waitUntil(work.catch(() => {}));
  } catch {
    // No execution context (`app.request` without one): nothing outlives the request anyway.
  }
  return work;
}
