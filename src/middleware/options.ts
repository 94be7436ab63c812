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
import type { Reporter } from './log';
import type { RetryOptions } from './retry';
import type { ProblemCode } from '../shared/problem';

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
  readonly maxBodyBytes: number;
  readonly required: boolean;
  readonly scope: IdempotencyOptions['scope'];
  readonly fingerprint: IdempotencyOptions['fingerprint'];
  readonly onError: IdempotencyOptions['onError'];
  readonly run: IdempotencyMode;
  readonly retry: RetryOptions;
  /** `undefined`: the default console reporter. */
  readonly reporter: Reporter | false | undefined;
}

/**
 * The largest `maxBodyBytes`. Request bodies travel to the Durable Object as one RPC argument and stored
 * responses come back as one RPC value, and workerd caps a serialized RPC message at 32 MiB; 24 MiB
 * leaves room for headers and framing.
 */
export const MAX_BODY_BYTES_LIMIT = 24 * 1024 * 1024;
/** The longest TTL: 30 days. */
export const MAX_TTL_SECONDS = 30 * 86_400;
/** The longest wait and lease: 15 minutes, the longest a Durable Object keeps an outgoing call alive. */
export const MAX_ATTEMPT_MS = 15 * 60_000;

const DEFAULT_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

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
  for (const method of methods) if (!TOKEN.test(method)) throw new OptionsError(['methods'], '{methods} must be HTTP method names', method);
  const headerName = options.headerName ?? 'Idempotency-Key';
  if (!TOKEN.test(headerName)) throw new OptionsError(['headerName'], '{headerName} must be a header name', headerName);
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
  const retry = options.retry === false ? { attempts: 1 } : (options.retry ?? {});
  whole('retry', retry.attempts, 1, 1, 10);
  whole('retry', retry.baseDelayMs, 0, 0, 60_000);
  return {
    binding: options.binding ?? 'IDEMPOTENCY',
    methods,
    headerName,
    ttlMs: ttlSeconds * 1000,
    timeoutMs,
    leaseMs,
    maxBodyBytes: whole('maxBodyBytes', options.maxBodyBytes, 10 * 1024 * 1024, 1, MAX_BODY_BYTES_LIMIT),
    required: options.required ?? false,
    scope: options.scope,
    fingerprint: options.fingerprint,
    onError: options.onError,
    run: options.run ?? { mode: 'handler' },
    retry,
    reporter: options.reporter,
  };
}
