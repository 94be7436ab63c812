/**
 * @module
 * The options of `idempotency()`: their defaults, ranges and cross-checks, in one place. The middleware
 * factory resolves its options here, and so does the proxy (which only maps its wrangler variables to
 * options), so both follow the same rules and name the same mistakes.
 *
 * Defaults adapt to what was set: a default never contradicts a value the user chose. Only values the
 * user set that truly contradict each other are refused, naming every option involved.
 */
import type { Context } from 'hono';
import { HTTP_TOKEN } from '../shared/headers';
import { MAX_ATTEMPT_MS, MAX_BODY_BYTES_LIMIT, MAX_TTL_SECONDS } from '../shared/limits';
import { Answers, corsOrigins } from '../shared/answers';
import type { ProblemCode } from '../shared/problem';
import { type Fingerprinter, fingerprinter } from './fingerprint';
import type { Reporter } from './log';
import { JURISDICTIONS, LOCATION_HINTS } from './records';
import type { ResolvedRateLimit } from './rate-limit';
import type { RetryOptions } from './retry';
import { type Scope, type ScopeOption, resolveScope } from './scope';

/** Where an attempt runs. */
export type IdempotencyMode =
  /** The app's next handler runs in the Worker under the object's lease. */
  | { readonly mode: 'handler' }
  /** The object fetches `target(c)` itself, forwarding the request's headers and body. */
  | { readonly mode: 'origin'; readonly target: (c: Context) => URL | string };

/** An error the middleware answers with, before `onError` may replace it. */
export interface IdempotencyProblem {
  readonly code: ProblemCode;
  readonly status: number;
  readonly detail: string;
  /** Internal reason (never sent to the client). */
  readonly cause?: unknown;
}

/** Options of `idempotency()`. */
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
   * How long a key is remembered, from its first request, in seconds (1 s to 30 days). An attempt still
   * running when the TTL ends keeps its key until its lease ends.
   * @default 86400
   */
  readonly ttlSeconds?: number;
  /**
   * How long a request waits for the attempt (origin mode: then 504 for the first request; duplicates:
   * then 409 `idempotency_key_in_progress`), in ms (at most 15 minutes).
   * @default 30000, or `leaseMs` when that is set lower
   */
  readonly timeoutMs?: number;
  /**
   * How long an attempt may run before it is abandoned and the key freed, in ms (at least `timeoutMs`,
   * at most 15 minutes).
   * @default max(120000, timeoutMs)
   */
  readonly leaseMs?: number;
  /**
   * What happens when the outcome of an attempt is unknown: its object was reset (a crash, a deploy) before the
   * answer was recorded, and its lease has ended. `retry` runs the next identical request again, with the same
   * key forwarded so the origin can deduplicate; `hold` answers `409 idempotency_outcome_unknown` until an
   * operator purges the key or it expires, so the request never runs twice; `reconcile` (origin mode only, with
   * `reconcileUrl`) asks the origin first: a 2xx answer of the reconcile URL is stored as the key's answer, a
   * 404 lets the request run, anything else answers 503 `idempotency_unavailable` and the next retry asks again.
   * @default 'retry'
   */
  readonly onUnknown?: 'retry' | 'hold' | 'reconcile';
  /**
   * With `onUnknown: 'reconcile'`: the path (and query) on the origin's host that says whether a request ran,
   * `{key}` replaced by the percent-encoded key (`/v1/charges?idempotency_key={key}`). It is fetched with `GET`,
   * the request's scope headers and its `Idempotency-Key`. Refused with any other `onUnknown`.
   */
  readonly reconcileUrl?: string;
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
   * The scope a key belongs to: the credential headers that identify the caller (`{ headers: ['x-api-key'] }`,
   * `{ headers: ['cookie:session'] }` for one cookie), or a function (`(c) => c.var.userId`). Only its SHA-256
   * is used. A request without a scope passes through unprotected; a malformed credential header gets 400
   * `authorization_invalid`.
   * @default { headers: ['authorization'] }
   */
  readonly scope?: ScopeOption;
  /**
   * Who uses the records, so that apps sharing one Durable Object namespace (bound by `script_name`) never
   * share a record: give each app its own. The proxy uses `proxy`. 1 to 64 visible ASCII characters.
   * @default 'app'
   */
  readonly namespace?: string;
  /**
   * The request fingerprint a key is bound to, always over method, path and query, and the body:
   * - `'bytes'`: the exact body bytes;
   * - `'json'`: the body as RFC 8785 canonical JSON (key order and white space do not matter), without the
   *   members named by `ignoreFields`; a body that is not JSON, is over 1 MiB or nests deeper than 64 falls
   *   back to its exact bytes (so key order and white space matter for it);
   * - a function of the request and its body bytes.
   * @default 'bytes'
   */
  readonly fingerprint?: 'bytes' | 'json' | ((c: Context, body: ArrayBuffer) => string | Promise<string>);
  /**
   * With `fingerprint: 'json'`: RFC 6901 JSON Pointers of members that do not count (`['/client_timestamp']`).
   * @default []
   */
  readonly ignoreFields?: readonly string[];
  /**
   * Creates every record object in this jurisdiction, so stored fingerprints and responses never leave it.
   * Changing it later makes stored keys run again (the same name is another object elsewhere).
   */
  readonly jurisdiction?: DurableObjectJurisdiction;
  /** Places new record objects near this region (they call the origin in proxy mode). */
  readonly locationHint?: DurableObjectLocationHint;
  /**
   * A per-scope limit on keyed writes, with a Workers rate-limiting binding (`[[ratelimits]]`): past it, a
   * keyed write gets 429 `rate_limited` with `Retry-After`, before any object is created. The scope is counted
   * with its white space collapsed and its scheme in lower case (`Bearer T` and `bearer  T` share a bucket).
   */
  readonly rateLimit?: { readonly binding: string; /** @default 60 */ readonly retryAfterSeconds?: number };
  /**
   * A per-client-address limit (the `CF-Connecting-IP` header Cloudflare's edge sets) with another rate-limiting
   * binding, on keyed writes and key lookups: it also bounds a client that sends a new random credential every
   * time. A request without the header (over a service binding, in local tests) is not counted.
   */
  readonly ipRateLimit?: { readonly binding: string; /** @default 60 */ readonly retryAfterSeconds?: number };
  /**
   * Whether the request's host (`api.example.com`, with a port if it has one) is part of each key's record and
   * of its fingerprint: for an app (or the proxy with `ORIGIN_URL = "request"`) that serves several hostnames,
   * where the same key and body on another host is another request. Turning it on or off renames every record
   * (stored keys are then not found).
   * @default false
   */
  readonly hostScoped?: boolean;
  /**
   * A secret that turns the hashes in log lines and data points into HMACs, so that nobody who reads the logs
   * can test guesses of a credential offline. Set it (a wrangler secret) when credentials may be weak.
   */
  readonly logHashSecret?: string;
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
   * Where the log line of each request the layer decides (executed, replayed, conflict, in progress, refused)
   * goes; `false` for none. The default writes JSON to the console and, when an Analytics Engine dataset is
   * bound as `METRICS`, a data point.
   */
  readonly reporter?: Reporter | false;
  /**
   * Whether requests passed on untouched (reads, writes without a key or scope) are reported too. Off by
   * default: they are most requests, the runtime's own logs already record them, and a line each is cost.
   * @default false
   */
  readonly logPassThrough?: boolean;
  /**
   * Whether the default reporter writes a console line for answers that repeat one already given too: replays,
   * and conflicts answered from the isolate's cache (their `METRICS` data point is written regardless). Off by
   * default: repeats are the most frequent keyed answers, a console line costs about as much as the rest of such an
   * answer, and the decision they repeat was logged when it was made.
   * @default false
   */
  readonly logRepeats?: boolean;
  /**
   * The shape of every error the layer answers with: `'problem'` (RFC 9457 `application/problem+json`) or
   * `'error_object'` (`application/json`, `{ "error": { "type": "idempotency_error", "code", "message", "status" } }`,
   * what Stripe-, OpenAI- and Stainless-style SDKs read).
   * @default 'problem'
   */
  readonly errorFormat?: 'problem' | 'error_object';
  /**
   * The status of `idempotency_key_reused`: 409, or 422 as the IETF idempotency-key draft has it.
   * @default 409
   */
  readonly conflictStatus?: 409 | 422;
  /**
   * Page origins (`['https://app.example.com']`) or `'*'` whose pages may read the answers the layer produces
   * itself (problems, replays): those get `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`.
   * Preflights are not answered: the app (or origin) must allow the `Idempotency-Key` request header itself.
   * @default none (no CORS headers)
   */
  readonly cors?: '*' | readonly string[];
}

/** The name of an option. */
export type OptionName = keyof IdempotencyOptions;

/** {@link IdempotencyOptions} with every default applied and every value checked. */
export interface ResolvedOptions {
  readonly binding: string;
  readonly methods: ReadonlySet<string>;
  readonly headerName: string;
  readonly ttlMs: number;
  readonly timeoutMs: number;
  readonly leaseMs: number;
  readonly onUnknown: 'retry' | 'hold' | 'reconcile';
  readonly reconcileUrl: string | undefined;
  readonly maxBodyBytes: number;
  readonly required: boolean;
  readonly scope: Scope;
  readonly namespace: string;
  readonly hostScoped: boolean;
  /** The fingerprint of a request, given its parsed URL and body bytes. */
  readonly fingerprint: (c: Context, url: URL, body: ArrayBuffer) => Promise<string>;
  readonly jurisdiction: DurableObjectJurisdiction | undefined;
  /** How answers name the jurisdiction setting: `jurisdiction` here, its variable where the proxy resolves. */
  readonly jurisdictionName: string;
  readonly locationHint: DurableObjectLocationHint | undefined;
  readonly rateLimit: ResolvedRateLimit | undefined;
  readonly ipRateLimit: ResolvedRateLimit | undefined;
  readonly logHashSecret: string | undefined;
  readonly onError: IdempotencyOptions['onError'];
  readonly run: IdempotencyMode;
  readonly retry: Required<RetryOptions>;
  /** `undefined`: the default console reporter. */
  readonly reporter: Reporter | false | undefined;
  readonly logPassThrough: boolean;
  readonly logRepeats: boolean;
  /** How the layer's own answers are written: problem format, conflict status, CORS. */
  readonly answers: Answers;
}

const DEFAULT_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];
const NAME = /^[\x21-\x7e]{1,64}$/;

/**
 * Options that cannot work, as a `TypeError`. `rule` names options as `{option}`; {@link describe} fills
 * the names in (as options, or as the wrangler variables they came from) and never shows a value, so a
 * message built from it is safe to send to a client.
 */
export class OptionsError extends TypeError {
  /**
   * @param options - every option involved, the offending one first
   * @param rule - what is wrong, with `{option}` placeholders
   * @param received - the offending value (only in the exception's own message, for the developer)
   */
  constructor(
    readonly options: readonly OptionName[],
    readonly rule: string,
    readonly received?: unknown,
  ) {
    super(`idempotency(): ${fill(rule, String)}${received === undefined ? '' : `, got ${JSON.stringify(received) ?? String(received)}`}`);
    this.name = 'OptionsError';
  }

  /** The rule with each option named by `name`, without the value. */
  describe(name: (option: OptionName) => string): string {
    return fill(this.rule, (option) => name(option as OptionName));
  }
}

const fill = (rule: string, name: (option: string) => string): string => rule.replace(/\{(\w+)\}/g, (_, option: string) => name(option));

function whole(option: OptionName, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max)
    throw new OptionsError([option], `{${option}} must be a whole number from ${min} to ${max}`, value);
  return value;
}

function oneOf<T extends string>(option: OptionName, value: T | undefined, allowed: readonly T[]): T | undefined {
  if (value !== undefined && !allowed.includes(value))
    throw new OptionsError([option], `{${option}} must be one of ${allowed.join(', ')}`, value);
  return value;
}

function unknownPolicy(options: IdempotencyOptions): Pick<ResolvedOptions, 'onUnknown' | 'reconcileUrl'> {
  const onUnknown = oneOf('onUnknown', options.onUnknown, ['retry', 'hold', 'reconcile']) ?? 'retry';
  const { reconcileUrl } = options;
  if (reconcileUrl !== undefined && onUnknown !== 'reconcile')
    throw new OptionsError(['reconcileUrl', 'onUnknown'], '{reconcileUrl} is only used when {onUnknown} is reconcile', reconcileUrl);
  if (onUnknown !== 'reconcile') return { onUnknown, reconcileUrl: undefined };
  // The object calls the reconcile URL itself, so only origin mode can reconcile: a handler has no origin to ask.
  if (options.run?.mode !== 'origin') throw new OptionsError(['onUnknown', 'run'], '{onUnknown} reconcile needs the origin {run} mode');
  if (
    typeof reconcileUrl !== 'string' ||
    !/^\/[^\s]*$/.test(reconcileUrl) ||
    reconcileUrl.startsWith('//') ||
    !reconcileUrl.includes('{key}')
  )
    throw new OptionsError(
      ['reconcileUrl', 'onUnknown'],
      '{reconcileUrl} must be a path starting with "/" that holds the key placeholder, when {onUnknown} is reconcile',
      reconcileUrl,
    );
  return { onUnknown, reconcileUrl };
}

function limitOf(option: 'rateLimit' | 'ipRateLimit', limit: IdempotencyOptions['rateLimit']): ResolvedRateLimit | undefined {
  if (limit === undefined) return undefined;
  if (!NAME.test(limit.binding)) throw new OptionsError([option], `{${option}} must name a binding`, limit.binding);
  return { binding: limit.binding, retryAfterSeconds: whole(option, limit.retryAfterSeconds, 60, 1, 3600) };
}

function fingerprintOf(options: IdempotencyOptions): ResolvedOptions['fingerprint'] {
  const { fingerprint = 'bytes', ignoreFields = [] } = options;
  if (typeof fingerprint === 'function') {
    if (ignoreFields.length > 0)
      throw new OptionsError(['ignoreFields', 'fingerprint'], '{ignoreFields} is only used with the json {fingerprint}', ignoreFields);
    return async (c, _url, body) => fingerprint(c, body);
  }
  const mode = oneOf('fingerprint', fingerprint, ['bytes', 'json']) ?? 'bytes';
  const compute: Fingerprinter | string = fingerprinter(mode, ignoreFields);
  if (typeof compute === 'string')
    throw new OptionsError(
      ['ignoreFields', 'fingerprint'],
      `{ignoreFields} ${compute.replace('json', 'json {fingerprint}')}`,
      ignoreFields,
    );
  // A path always starts with "/", so "host/path" can never be mistaken for another host's path.
  if (options.hostScoped === true) return (c, url, body) => compute(c.req.method, url.host + url.pathname + url.search, body);
  return (c, url, body) => compute(c.req.method, url.pathname + url.search, body);
}

/**
 * Applies the defaults and checks every value.
 *
 * @param options - what the user set
 * @returns the options to run with
 * @throws {@link OptionsError} for a value out of range or values that contradict each other
 * @example
 * ```ts
 * resolveOptions({ ttlSeconds: 3 }); // leaseMs 120000: an attempt outlives the TTL until its lease ends
 * resolveOptions({ leaseMs: 1000 }); // timeoutMs adapts to 1000
 * resolveOptions({ leaseMs: 1000, timeoutMs: 5000 }); // throws: "{leaseMs} must be at least {timeoutMs}"
 * ```
 */
export function resolveOptions(options: IdempotencyOptions): ResolvedOptions {
  const methods = new Set((options.methods ?? DEFAULT_METHODS).map((method) => method.toUpperCase()));
  if (methods.size === 0) throw new OptionsError(['methods'], '{methods} must name at least one method', options.methods);
  for (const method of methods)
    if (!HTTP_TOKEN.test(method)) throw new OptionsError(['methods'], '{methods} must be HTTP method names', method);
  const headerName = options.headerName ?? 'Idempotency-Key';
  if (!HTTP_TOKEN.test(headerName)) throw new OptionsError(['headerName'], '{headerName} must be a header name', headerName);
  const binding = options.binding ?? 'IDEMPOTENCY';
  if (!NAME.test(binding)) throw new OptionsError(['binding'], '{binding} must be a binding name', binding);
  const ttlSeconds = whole('ttlSeconds', options.ttlSeconds, 86_400, 1, MAX_TTL_SECONDS);
  const leaseSet = whole('leaseMs', options.leaseMs, 0, 1, MAX_ATTEMPT_MS);
  const timeoutMs = whole(
    'timeoutMs',
    options.timeoutMs,
    options.leaseMs === undefined ? 30_000 : Math.min(30_000, leaseSet),
    1,
    MAX_ATTEMPT_MS,
  );
  const leaseMs = options.leaseMs === undefined ? Math.max(120_000, timeoutMs) : leaseSet;
  // The lease bounds the attempt a waiting client is waiting for: it cannot end before the wait does.
  if (leaseMs < timeoutMs) throw new OptionsError(['leaseMs', 'timeoutMs'], '{leaseMs} must be at least {timeoutMs}', leaseMs);
  const scope = resolveScope(options.scope);
  if (typeof scope === 'string') throw new OptionsError(['scope'], `{scope} ${scope}`, options.scope);
  const namespace = options.namespace ?? 'app';
  if (!NAME.test(namespace)) throw new OptionsError(['namespace'], '{namespace} must be 1 to 64 visible ASCII characters', namespace);
  const retry = options.retry === false ? { attempts: 1, baseDelayMs: 0 } : options.retry;
  const rateLimit = limitOf('rateLimit', options.rateLimit);
  const ipRateLimit = limitOf('ipRateLimit', options.ipRateLimit);
  if (rateLimit !== undefined && ipRateLimit !== undefined && rateLimit.binding === ipRateLimit.binding)
    throw new OptionsError(['ipRateLimit', 'rateLimit'], '{ipRateLimit} must be another binding than {rateLimit}', ipRateLimit.binding);
  if (options.logHashSecret !== undefined && options.logHashSecret.length < 16) {
    throw new OptionsError(['logHashSecret'], '{logHashSecret} must be at least 16 characters long');
  }
  const errorFormat = oneOf('errorFormat', options.errorFormat, ['problem', 'error_object']) ?? 'problem';
  const conflictStatus = options.conflictStatus ?? 409;
  if (conflictStatus !== 409 && conflictStatus !== 422)
    throw new OptionsError(['conflictStatus'], '{conflictStatus} must be 409 or 422', conflictStatus);
  const cors = options.cors === undefined ? undefined : corsOrigins(options.cors);
  if (options.cors !== undefined && cors === undefined)
    throw new OptionsError(['cors'], '{cors} must be "*" or a list of origins such as https://app.example.com', options.cors);
  return {
    binding,
    methods,
    headerName,
    ttlMs: ttlSeconds * 1000,
    timeoutMs,
    leaseMs,
    ...unknownPolicy(options),
    maxBodyBytes: whole('maxBodyBytes', options.maxBodyBytes, 10 * 1024 * 1024, 1, MAX_BODY_BYTES_LIMIT),
    required: options.required ?? false,
    scope,
    namespace,
    hostScoped: options.hostScoped ?? false,
    fingerprint: fingerprintOf(options),
    jurisdiction: oneOf('jurisdiction', options.jurisdiction, JURISDICTIONS),
    jurisdictionName: 'jurisdiction',
    locationHint: oneOf('locationHint', options.locationHint, LOCATION_HINTS),
    rateLimit,
    ipRateLimit,
    logHashSecret: options.logHashSecret,
    onError: options.onError,
    run: options.run ?? { mode: 'handler' },
    retry: { attempts: whole('retry', retry?.attempts, 3, 1, 10), baseDelayMs: whole('retry', retry?.baseDelayMs, 50, 0, 60_000) },
    reporter: options.reporter,
    logPassThrough: options.logPassThrough ?? false,
    logRepeats: options.logRepeats ?? false,
    answers: new Answers({ format: errorFormat, conflictStatus }, cors),
  };
}

/**
 * Whether a request is one the middleware passes on untouched, decided from its method and headers alone: the
 * method is not one it protects, or the request carries no key where keys are optional. (It passes on more
 * requests than this, such as a keyed write without a credential; those it must look at first.)
 */
export function untouched(options: ResolvedOptions, method: string, headers: Headers): boolean {
  return !options.methods.has(method) || (!options.required && !headers.has(options.headerName));
}
