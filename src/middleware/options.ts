/**
 * @module
 * The options of `idempotency()` as a user writes them, each with its default and range. They are checked and
 * resolved in `resolve.ts`.
 */
import type { Context } from 'hono';
import type { ProblemCode } from '../shared/problem';
import type { Reporter } from './log';
import type { RetryOptions } from '../record/stub';
import type { ScopeOption } from './scope';

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
   * is used. A keyed write without a scope (none of the headers; `null` or `undefined` from the function) gets
   * 401 `credential_missing` before anything runs (see `allowAnonymous`); a write without a key passes through.
   * A malformed credential header gets 400 `authorization_invalid`.
   * @default { headers: ['authorization'] }
   */
  readonly scope?: ScopeOption;
  /**
   * Whether a keyed write without a scope is made idempotent in one shared anonymous scope instead of being refused
   * with 401 `credential_missing`. Only for an API that really serves anonymous writes: every anonymous client then
   * shares one key space, so a client that guesses or reuses another's key gets that client's stored answer (or a
   * 409). Anonymous records are named apart from every credential's. The per-credential `rateLimit` does not count
   * them (there is no credential); `ipRateLimit` does.
   * @default false
   */
  readonly allowAnonymous?: boolean;
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
   * The binding of a Workers Analytics Engine dataset: when the Worker has it, the default reporter writes a data point
   * for every keyed request (blobs `[outcome, method, code]`, doubles `[status, latency_ms, origin_ms]`, index
   * `scope_hash`).
   * @default 'METRICS'
   */
  readonly metrics?: string;
  /**
   * Where the log line of each request the layer decides (executed, replayed, conflict, in progress, refused)
   * goes; `false` for none. The default writes JSON to the console and, when an Analytics Engine dataset is
   * bound as `METRICS`, a data point.
   */
  readonly reporter?: Reporter | false;
  /**
   * Whether requests passed on untouched (reads, writes without a key) are reported too. Off by
   * default: they are most requests, the runtime's own logs already record them, and a line each is cost.
   * @default false
   */
  readonly logPassThrough?: boolean;
  /**
   * Whether the default reporter writes a console line for replays too, from the object or the isolate's cache (their
   * `METRICS` data point is written regardless). Off by default: replays are the most frequent keyed answers, a console
   * line costs about as much as the rest of such an answer, and the decision they repeat was logged when it was made.
   * Conflicts are always logged, from the cache too: each is a new request under a used key.
   * @default false
   */
  readonly logRepeats?: boolean;
  /**
   * The shape of every error the layer answers with: `'problem'` (RFC 9457 `application/problem+json`, which also
   * carries `"error": { "type": "idempotency_error", "code", "message" }`, the member Stripe-, OpenAI- and
   * Stainless-style SDKs read) or `'error_object'` (`application/json` with only
   * `{ "error": { "type": "idempotency_error", "code", "message", "status" } }`).
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
