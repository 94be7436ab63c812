/**
 * @module
 * Resolving the options of `idempotency()`: their defaults, ranges and cross-checks, in one place. The middleware
 * factory resolves its options here, and so does the proxy (which only maps its wrangler variables to options), so
 * both follow the same rules and name the same mistakes.
 *
 * Defaults adapt to what was set: a default never contradicts a value the user chose. Only values the user set that
 * truly contradict each other are refused, naming every option involved.
 */
import type { Context } from 'hono';
import { HTTP_TOKEN } from '../shared/headers';
import { MAX_ATTEMPT_MS, MAX_BODY_BYTES_LIMIT, MAX_TTL_SECONDS } from '../shared/limits';
import { Answers, corsOrigins } from './answer';
import { type Fingerprinter, fingerprinter } from './fingerprint';
import { reconcileTemplateError } from './reconcile';
import type { Reporter } from './log';
import { JURISDICTIONS, LOCATION_HINTS, type RetryOptions } from '../record/stub';
import type { ResolvedRateLimit } from './rate-limit';
import { type Scope, resolveScope } from './scope';

import type { IdempotencyMode, IdempotencyOptions, OptionName } from './options';

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
  readonly allowAnonymous: boolean;
  readonly namespace: string;
  readonly hostScoped: boolean;
  /** The fingerprint of a request, given its parsed URL and body bytes. */
  readonly fingerprint: (c: Context, url: URL, body: ArrayBuffer) => Promise<string>;
  readonly jurisdiction: DurableObjectJurisdiction | undefined;
  readonly locationHint: DurableObjectLocationHint | undefined;
  readonly rateLimit: ResolvedRateLimit | undefined;
  readonly ipRateLimit: ResolvedRateLimit | undefined;
  readonly logHashSecret: string | undefined;
  readonly onError: IdempotencyOptions['onError'];
  readonly run: IdempotencyMode;
  readonly retry: Required<RetryOptions>;
  /** `undefined`: the default console reporter. */
  readonly reporter: Reporter | false | undefined;
  /** The binding name of the metrics dataset. */
  readonly metrics: string;
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
  // It carries the client's credential: it must reach the origin itself.
  const error = reconcileTemplateError(reconcileUrl);
  if (error !== undefined)
    throw new OptionsError(['reconcileUrl', 'onUnknown'], `{reconcileUrl} ${error}, when {onUnknown} is reconcile`, reconcileUrl);
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
  const metrics = options.metrics ?? 'METRICS';
  if (!NAME.test(metrics)) throw new OptionsError(['metrics'], '{metrics} must be a binding name', metrics);
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
    allowAnonymous: options.allowAnonymous ?? false,
    namespace,
    hostScoped: options.hostScoped ?? false,
    fingerprint: fingerprintOf(options),
    jurisdiction: oneOf('jurisdiction', options.jurisdiction, JURISDICTIONS),
    locationHint: oneOf('locationHint', options.locationHint, LOCATION_HINTS),
    rateLimit,
    ipRateLimit,
    logHashSecret: options.logHashSecret,
    onError: options.onError,
    run: options.run ?? { mode: 'handler' },
    retry: { attempts: whole('retry', retry?.attempts, 3, 1, 10), baseDelayMs: whole('retry', retry?.baseDelayMs, 50, 0, 60_000) },
    reporter: options.reporter,
    metrics,
    logPassThrough: options.logPassThrough ?? false,
    logRepeats: options.logRepeats ?? false,
    answers: new Answers({ format: errorFormat, conflictStatus }, cors),
  };
}
