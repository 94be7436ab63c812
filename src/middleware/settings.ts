/**
 * @module
 * Every setting of the layer, declared once: the `idempotency()` option it is, the proxy's variable (or secret, or
 * binding) it comes from, the `IDEMPOTENCY_ROUTES` field that sets it per route, how a variable's or a field's value is
 * read, its default and one line of documentation. The proxy reads its variables and route fields through this table,
 * errors name a setting through it, and docs/configuration.md is generated from it (`npm run docs:config`; a test fails
 * when the file is stale).
 *
 * The rules each value must follow (ranges, cross-checks, adaptive defaults) are the options' own, in `resolve.ts`.
 * This module imports nothing at run time, so Node tooling can read it as it is.
 */
import type { IdempotencyOptions, OptionName } from './options';

/** Why a variable's or a route field's value cannot be read, said after its name (`must be a whole number`). */
export class SettingError extends Error {
  constructor(readonly rule: string) {
    super(rule);
    this.name = 'SettingError';
  }
}

/** Reads the value of a variable or a route field (never unset: unset values are skipped before). */
export type Read = (raw: unknown) => unknown;

/** Where a proxy setting comes from: a wrangler variable, a secret, or a binding whose presence turns it on. */
export type Source = 'var' | 'secret' | 'binding';

/** One setting. */
export interface Setting {
  /** The `idempotency()` option it is, if any. */
  readonly option?: OptionName;
  /** The proxy's name for it, if the proxy has it, and where that comes from. */
  readonly variable?: string;
  readonly source?: Source;
  /** The `IDEMPOTENCY_ROUTES` field that sets it per route, if any. */
  readonly field?: string;
  /** Reads a variable's or a route field's value into the option's value (the proxy reads some itself: none here). */
  readonly read?: Read;
  /** The default, as the reference states it. */
  readonly default: string;
  /** One line: what it does. */
  readonly doc: string;
}

/** A whole number, as a number or a decimal string (`"1e3"`, `"0x10"` or `"5 s"` are mistakes). */
const whole: Read = (raw) => {
  const value = typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new SettingError('must be a whole number');
  return value;
};

/** `true` or `false`, as a boolean or a string (`"1"` and `"0"` too). */
const flag: Read = (raw) => {
  if (typeof raw === 'boolean') return raw;
  const text = String(raw).trim().toLowerCase();
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  throw new SettingError('must be "true" or "false"');
};

/** A string, trimmed. */
const text: Read = (raw) => {
  if (typeof raw !== 'string') throw new SettingError('must be a string');
  return raw.trim();
};

/** A comma-separated list. */
const list = (raw: unknown): string[] => (text(raw) as string).split(',').map((entry) => entry.trim());

/** An array of strings (a route field). */
const strings: Read = (raw) => {
  if (!Array.isArray(raw) || !raw.every((item) => typeof item === 'string')) throw new SettingError('must be an array of strings');
  return raw;
};

/** A binding that turns a limit on when it is declared: the option names it. */
const bindingNamed =
  (name: string): Read =>
  () =>
    ({ binding: name }) satisfies IdempotencyOptions['rateLimit'];

/** Every setting: where the proxy sends requests, then the options of `idempotency()`, then the proxy's other own settings. */
export const SETTINGS = [
  {
    variable: 'ORIGIN_URL',
    source: 'var',
    default: '(required)',
    doc: 'the API: a base URL (`https://api.example.com/v1`: the path and query are appended), or `request` to forward each request to its own URL',
  },
  {
    variable: 'ORIGIN_HOSTS',
    source: 'var',
    default: '(required with `request`)',
    doc: 'with `ORIGIN_URL = "request"`: the hosts forwarded to, each pinning scheme, host and port (`api.example.com` is https on 443; `host:port`, `http://host[:port]`); any other gets `421 host_not_allowed`',
  },
  {
    option: 'ttlSeconds',
    variable: 'IDEMPOTENCY_TTL_SECONDS',
    source: 'var',
    field: 'ttl_seconds',
    read: whole,
    default: '`86400`',
    doc: 'how long a key is remembered, from its first request (1 s to 30 days)',
  },
  {
    option: 'timeoutMs',
    variable: 'ORIGIN_TIMEOUT_MS',
    source: 'var',
    field: 'timeout_ms',
    read: whole,
    default: '`30000` (the lease, when that is set lower)',
    doc: 'how long a request waits for the answer to begin (its status line and headers): then `504 origin_timeout` for the first, `409 idempotency_key_in_progress` for a duplicate; the attempt goes on',
  },
  {
    option: 'leaseMs',
    variable: 'ORIGIN_LEASE_MS',
    source: 'var',
    field: 'lease_ms',
    read: whole,
    default: 'max(`120000`, the timeout)',
    doc: 'how long an attempt may run, its whole answer included, before it is abandoned; also how long a key stays held after a crash mid-flight (at most 15 minutes)',
  },
  {
    option: 'onUnknown',
    variable: 'IDEMPOTENCY_ON_UNKNOWN',
    source: 'var',
    field: 'on_unknown',
    read: text,
    default: '`retry`',
    doc: 'when nobody knows whether an attempt ran (it died with its object, or its origin call ended without a status line): `retry` runs the next identical request again, `hold` answers `409 idempotency_outcome_unknown` until a purge or the expiry, `reconcile` asks the origin at the reconcile URL first',
  },
  {
    option: 'reconcileUrl',
    variable: 'IDEMPOTENCY_RECONCILE_URL',
    source: 'var',
    field: 'reconcile_url',
    read: text,
    default: 'none',
    doc: "with `reconcile` (only then): a path and query on the origin's own host, `{key}` replaced by the percent-encoded key; a 2xx answer is stored as the key's answer, `404` runs the request, anything else holds the key (`503`). A route that sets its policy does not inherit it",
  },
  {
    option: 'maxBodyBytes',
    variable: 'MAX_BODY_BYTES',
    source: 'var',
    field: 'max_body_bytes',
    read: whole,
    default: '`10485760`',
    doc: 'largest request body accepted (`413 request_too_large`) and largest answer stored (`502 response_too_large` after the first client got it), at most 24 MiB',
  },
  {
    option: 'required',
    variable: 'REQUIRE_IDEMPOTENCY_KEY',
    source: 'var',
    read: flag,
    default: '`false`',
    doc: 'writes without a key get `400 idempotency_key_missing` (a route says so with `mode`)',
  },
  {
    option: 'allowAnonymous',
    variable: 'IDEMPOTENCY_ALLOW_ANONYMOUS',
    source: 'var',
    field: 'allow_anonymous',
    read: flag,
    default: '`false`',
    doc: 'a keyed write without a credential is kept in one shared anonymous scope instead of getting `401 credential_missing`: every anonymous client then shares one key space',
  },
  {
    option: 'scope',
    variable: 'IDEMPOTENCY_SCOPE_HEADERS',
    source: 'var',
    read: (raw) => ({ headers: list(raw) }),
    default: '`authorization`',
    doc: 'the headers whose values scope keys (comma-separated), or `cookie:<name>` for one cookie; the option also takes a function',
  },
  {
    option: 'namespace',
    default: '`app` (the proxy: `proxy`)',
    doc: 'who uses the records: apps sharing one namespace binding never share a record',
  },
  {
    option: 'methods',
    field: 'methods',
    read: strings,
    default: '`POST`, `PUT`, `PATCH`, `DELETE`',
    doc: 'the methods made idempotent; other methods pass through (a route: the methods it matches)',
  },
  {
    option: 'headerName',
    default: '`Idempotency-Key`',
    doc: 'the request header carrying the key',
  },
  {
    option: 'fingerprint',
    field: 'fingerprint',
    read: text,
    default: '`bytes`',
    doc: 'what identifies a request besides method, path and query: `bytes` (the exact body), `json` (RFC 8785 canonical JSON of a body of at most 1 MiB nesting at most 64 deep, else its bytes); the option also takes a function',
  },
  {
    option: 'ignoreFields',
    field: 'ignore_fields',
    read: strings,
    default: 'none',
    doc: 'with `json`: RFC 6901 pointers of members left out of the fingerprint (`/client_timestamp`)',
  },
  {
    option: 'jurisdiction',
    variable: 'IDEMPOTENCY_JURISDICTION',
    source: 'var',
    read: text,
    default: 'none',
    doc: '`eu`, `fedramp`, `fedramp-high` or `us`: every record object is created there; set once, before the first request',
  },
  {
    option: 'locationHint',
    variable: 'IDEMPOTENCY_LOCATION_HINT',
    source: 'var',
    read: text,
    default: 'none',
    doc: 'where new record objects are placed (`wnam`, `enam`, `weur`, `apac`, ...): near the origin, since they call it',
  },
  {
    option: 'rateLimit',
    variable: 'IDEMPOTENCY_RATE_LIMITER',
    source: 'binding',
    read: bindingNamed('IDEMPOTENCY_RATE_LIMITER'),
    default: 'none',
    doc: 'a `[[ratelimits]]` binding: keyed writes and key lookups past its limit per credential get `429 rate_limited`, before any object is created',
  },
  {
    option: 'ipRateLimit',
    variable: 'IDEMPOTENCY_IP_RATE_LIMITER',
    source: 'binding',
    read: bindingNamed('IDEMPOTENCY_IP_RATE_LIMITER'),
    default: 'none',
    doc: 'another `[[ratelimits]]` binding: the same per client address (`CF-Connecting-IP`, IPv6 by /64), admin token guesses included',
  },
  {
    option: 'hostScoped',
    default: '`false` (the proxy: `true` with `ORIGIN_URL = "request"`)',
    doc: "the request's host is part of each key's record and fingerprint: for an app that serves several hostnames",
  },
  {
    option: 'logHashSecret',
    variable: 'LOG_HASH_SECRET',
    source: 'secret',
    read: text,
    default: 'none',
    doc: 'log and metric hashes become HMACs under it (at least 16 characters), so nobody reading logs can test guesses of a weak credential; recommended',
  },
  {
    option: 'metrics',
    variable: 'METRICS',
    source: 'binding',
    default: '`METRICS`',
    doc: 'the binding of a Workers Analytics Engine dataset: when it is bound, every keyed request writes a data point',
  },
  {
    option: 'errorFormat',
    variable: 'IDEMPOTENCY_ERROR_FORMAT',
    source: 'var',
    read: text,
    default: '`problem`',
    doc: '`problem`: RFC 9457 problem documents that also carry an `error` member; `error_object`: only `{"error": {...}}`',
  },
  {
    option: 'conflictStatus',
    variable: 'IDEMPOTENCY_CONFLICT_STATUS',
    source: 'var',
    read: whole,
    default: '`409`',
    doc: 'the status of `idempotency_key_reused`: `409`, or `422` as the IETF draft has it',
  },
  {
    option: 'cors',
    variable: 'IDEMPOTENCY_CORS_ORIGINS',
    source: 'var',
    read: (raw) => (text(raw) === '*' ? '*' : list(raw)),
    default: 'none',
    doc: "page origins (comma-separated) or `*` whose pages may read the layer's own answers (problems, key API, replays)",
  },
  {
    option: 'binding',
    variable: 'IDEMPOTENCY',
    source: 'binding',
    default: '`IDEMPOTENCY`',
    doc: 'the binding of the `IdempotencyRecord` Durable Object namespace (a `new_sqlite_classes` migration)',
  },
  {
    option: 'run',
    default: '`{ mode: "handler" }` (the proxy: origin mode)',
    doc: "where attempts run: the app's handler in the Worker, or `{ mode: 'origin', target }`, the object calling the origin itself",
  },
  { option: 'onError', default: 'none', doc: 'called with every problem before it is sent; may return a replacement' },
  {
    option: 'retry',
    default: '`{ attempts: 3, baseDelayMs: 50 }`',
    doc: 'retries of Durable Object calls the platform marks retryable (never overloaded ones); `false` turns them off',
  },
  {
    option: 'reporter',
    default: 'JSON lines on the console',
    doc: 'where the log line of each decision goes; `false` for none (the proxy: `LOG_REQUESTS`)',
  },
  {
    option: 'logPassThrough',
    default: '`false`',
    doc: 'requests passed on untouched (reads, writes without a key) are logged too (the proxy: `LOG_REQUESTS = "all"`)',
  },
  {
    option: 'logRepeats',
    default: '`false`',
    doc: 'replays are logged too, not only counted (the proxy: `LOG_REQUESTS = "all"`)',
  },
  {
    variable: 'LOG_REQUESTS',
    source: 'var',
    default: '`true`',
    doc: '`true`: a JSON line per decision (replays only counted); `all`: every request; `false`: no lines and no data points (purges are always logged)',
  },
  {
    variable: 'IDEMPOTENCY_ROUTES',
    source: 'var',
    default: 'none',
    doc: 'per-route policy: a TOML array of tables (or a JSON string), the first route whose `pattern` and `methods` match deciding (fields below)',
  },
  {
    variable: 'IDEMPOTENCY_API_PREFIX',
    source: 'var',
    default: '`/_idempotency`',
    doc: 'where the key API lives; `off` turns it off. No spelling of it is ever forwarded',
  },
  {
    variable: 'IDEMPOTENCY_ADMIN_TOKEN',
    source: 'secret',
    default: 'none',
    doc: 'turns the admin key API on; at least 32 characters (`openssl rand -hex 32`); an invalid one turns only the admin API off',
  },
  {
    variable: 'IDEMPOTENCY_ENCRYPTION_KEYS',
    source: 'secret',
    default: 'none',
    doc: 'encryption at rest: `id:base64key[,id:base64key...]`, 256-bit keys; the first seals, all open (rotation); `plaintext` after them keeps plaintext records readable',
  },
  {
    field: 'pattern',
    default: '(required)',
    doc: 'the path pattern a route matches, in Hono syntax (`/api/v1/payments/*`, `/orders/:id/refund`)',
  },
  {
    field: 'mode',
    default: '`optional`',
    doc: '`off`: forwarded as it is, the key too, nothing stored; `optional`; `required`: writes without a key get `400 idempotency_key_missing`',
  },
] as const satisfies readonly Setting[];

/** The proxy's names: its variables, secrets and bindings. */
export type VariableName = Extract<(typeof SETTINGS)[number], { variable: string }>['variable'];

/** The setting of an option. */
export const settingOf = (option: OptionName): Setting | undefined => SETTINGS.find((setting: Setting) => setting.option === option);

/** How errors name an option where the proxy reads it: by its variable (the option's own name if it has none). */
export const variableOf = (option: OptionName): string => settingOf(option)?.variable ?? option;

/** Every option has its row: a compile error names one that has none. */
type Declared = Extract<(typeof SETTINGS)[number], { option: string }>['option'];
const everyOptionDeclared: [Exclude<OptionName, Declared>] extends [never] ? true : Exclude<OptionName, Declared> = true;
void everyOptionDeclared;
