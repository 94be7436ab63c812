/**
 * @module
 * The proxy's configuration: wrangler variables mapped to `idempotency()` options, plus the origin, the route
 * table and the key API.
 *
 * This module only maps: the defaults, ranges and cross-checks of the options live in the middleware's
 * options module, which the proxy calls like any app would. A mistake is reported as a
 * `configuration_invalid` problem that names the variables involved, never their values.
 */
import type { IdempotencyOptions, OptionName } from '../middleware/options';
import { OptionsError, type ResolvedOptions, resolveOptions } from '../middleware/resolve';
import { Answers } from '../middleware/answer';
import { SealConfigError, readKeyring } from '../record/seal';
import { RouteError, type RouteSpec, readRoutes } from './routes';
import { originTarget } from './target';
import { ConfigError, Problems, boolean, integer, string, unknownVariables } from './variables';

export { ConfigError };

/**
 * The variables and bindings this module reads (wrangler passes a TOML number as a number). A name that looks like
 * one of them but is not is refused (`variables.ts`).
 */
export interface ProxyVars {
  ORIGIN_URL?: unknown;
  IDEMPOTENCY_TTL_SECONDS?: unknown;
  ORIGIN_TIMEOUT_MS?: unknown;
  ORIGIN_LEASE_MS?: unknown;
  IDEMPOTENCY_ON_UNKNOWN?: unknown;
  IDEMPOTENCY_RECONCILE_URL?: unknown;
  MAX_BODY_BYTES?: unknown;
  REQUIRE_IDEMPOTENCY_KEY?: unknown;
  IDEMPOTENCY_ALLOW_ANONYMOUS?: unknown;
  LOG_REQUESTS?: unknown;
  IDEMPOTENCY_SCOPE_HEADERS?: unknown;
  IDEMPOTENCY_JURISDICTION?: unknown;
  IDEMPOTENCY_LOCATION_HINT?: unknown;
  IDEMPOTENCY_ROUTES?: unknown;
  IDEMPOTENCY_API_PREFIX?: unknown;
  IDEMPOTENCY_ADMIN_TOKEN?: unknown;
  LOG_HASH_SECRET?: unknown;
  IDEMPOTENCY_RATE_LIMITER?: unknown;
  IDEMPOTENCY_ERROR_FORMAT?: unknown;
  IDEMPOTENCY_CONFLICT_STATUS?: unknown;
  IDEMPOTENCY_CORS_ORIGINS?: unknown;
  IDEMPOTENCY_IP_RATE_LIMITER?: unknown;
  ORIGIN_HOSTS?: unknown;
  IDEMPOTENCY_ENCRYPTION_KEYS?: unknown;
}

/** Where requests go: a fixed origin (its path prefixes every request path), or each request's own URL. */
export type OriginConfig =
  | {
      readonly mode: 'url';
      /** The path of `ORIGIN_URL` without its trailing slash (`""` for a bare host). */
      readonly basePath: string;
      /** What every target starts with: the origin (scheme, host, port) and the base path. */
      readonly prefix: string;
    }
  | {
      readonly mode: 'request';
      /**
       * `ORIGIN_HOSTS` as serialised origins (`https://api.example.com`, `http://127.0.0.1:8788`): the only scheme, host
       * and port triples requests are forwarded to.
       */
      readonly hosts: ReadonlySet<string>;
    };

/** A route of the table with its options resolved: the global options with the route's on top. */
export interface ProxyRoute extends RouteSpec {
  readonly resolved: ResolvedOptions;
}

/** The resolved configuration. */
export interface ProxyConfig {
  readonly origin: OriginConfig;
  /** Which requests write a JSON log line: none, those the layer decides other than replays, or all. */
  readonly logRequests: 'none' | 'keyed' | 'all';
  /** The options the variables set, resolved once (defaults applied, checked): the middleware's and the key API's. */
  readonly resolved: ResolvedOptions;
  readonly routes: readonly ProxyRoute[];
  /** The path prefix of the key API, or `undefined` when it is off. */
  readonly apiPrefix: string | undefined;
  /** The operator's token for the admin key API, or `undefined` (the admin API answers 404). */
  readonly adminToken: string | undefined;
  /**
   * Optional features an invalid setting turned off, each answering `configuration_invalid` on its own routes (today
   * the admin key API, for an invalid `IDEMPOTENCY_ADMIN_TOKEN`); the rest of the proxy runs.
   */
  readonly disabled: readonly ConfigError[];
}

/** The variable each option comes from. */
export const VARIABLE_OF: Partial<Record<OptionName, string>> = {
  ttlSeconds: 'IDEMPOTENCY_TTL_SECONDS',
  timeoutMs: 'ORIGIN_TIMEOUT_MS',
  leaseMs: 'ORIGIN_LEASE_MS',
  onUnknown: 'IDEMPOTENCY_ON_UNKNOWN',
  reconcileUrl: 'IDEMPOTENCY_RECONCILE_URL',
  maxBodyBytes: 'MAX_BODY_BYTES',
  required: 'REQUIRE_IDEMPOTENCY_KEY',
  allowAnonymous: 'IDEMPOTENCY_ALLOW_ANONYMOUS',
  scope: 'IDEMPOTENCY_SCOPE_HEADERS',
  jurisdiction: 'IDEMPOTENCY_JURISDICTION',
  locationHint: 'IDEMPOTENCY_LOCATION_HINT',
  logHashSecret: 'LOG_HASH_SECRET',
  rateLimit: 'IDEMPOTENCY_RATE_LIMITER',
  errorFormat: 'IDEMPOTENCY_ERROR_FORMAT',
  conflictStatus: 'IDEMPOTENCY_CONFLICT_STATUS',
  cors: 'IDEMPOTENCY_CORS_ORIGINS',
  ipRateLimit: 'IDEMPOTENCY_IP_RATE_LIMITER',
};

/** How errors name a global option: by its variable. */
export const variableOf = (option: OptionName): string => VARIABLE_OF[option] ?? option;

/** A DNS name or an IPv4 address (letters, digits, hyphens, dots), or an IPv6 address in brackets. */
const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$|^\[[0-9a-f:.]+\]$/;
/** An `ORIGIN_HOSTS` entry: an optional `http://` or `https://`, a host name, an optional port. */
const HOST_ENTRY = /^(?:(https?):\/\/)?([^/:]+|\[[^\]]*\])(?::(\d{1,5}))?$/;

/**
 * An `ORIGIN_HOSTS` entry as the serialised origin it pins (issue #29, finding 2): `api.example.com` is https on 443,
 * `api.example.com:8443` https on that port, `http://host[:port]` plain http (local use). `undefined` when it is none.
 */
function pinnedOrigin(entry: string): string | undefined {
  const match = HOST_ENTRY.exec(entry.trim().toLowerCase());
  if (match === null) return undefined;
  const [, scheme = 'https', host = '', port] = match;
  if (!HOST_NAME.test(host) || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) return undefined;
  try {
    return new URL(`${scheme}://${host}${port === undefined ? '' : `:${port}`}`).origin;
  } catch {
    return undefined;
  }
}

function origin(vars: ProxyVars): OriginConfig {
  const raw = string(vars, 'ORIGIN_URL');
  if (raw === undefined) throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL is required (an absolute http or https URL, or "request")');
  const hosts = string(vars, 'ORIGIN_HOSTS');
  if (raw === 'request') {
    // Without a list, a runtime that takes Host from the client (self-hosted workerd) would fetch any host for it.
    if (hosts === undefined) throw new ConfigError(['ORIGIN_HOSTS', 'ORIGIN_URL'], 'ORIGIN_HOSTS is required with ORIGIN_URL = "request"');
    const origins = hosts.split(',').map(pinnedOrigin);
    if (!origins.every((origin) => origin !== undefined))
      throw new ConfigError(
        ['ORIGIN_HOSTS'],
        'ORIGIN_HOSTS must be comma-separated hosts, each https on 443 (api.example.com), on a port (api.example.com:8443) or plain http (http://127.0.0.1:8788)',
      );
    return { mode: 'request', hosts: new Set(origins) };
  }
  if (hosts !== undefined) throw new ConfigError(['ORIGIN_HOSTS', 'ORIGIN_URL'], 'ORIGIN_HOSTS is only used with ORIGIN_URL = "request"');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL is not an absolute URL (or "request")');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL must be an http or https URL');
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL must not carry a query, fragment or credentials');
  }
  const basePath = url.pathname.replace(/\/+$/, '');
  return { mode: 'url', basePath, prefix: url.origin + basePath };
}

/**
 * `LOG_REQUESTS`: `true` (the default) logs the requests the layer decides except replays (executed, conflict,
 * in progress, refused), `all` every request, `false` none.
 */
function logRequests(vars: ProxyVars): ProxyConfig['logRequests'] {
  const raw = vars.LOG_REQUESTS;
  if (typeof raw === 'string' && raw.trim().toLowerCase() === 'all') return 'all';
  try {
    return boolean(vars, 'LOG_REQUESTS') === false ? 'none' : 'keyed';
  } catch {
    throw new ConfigError(['LOG_REQUESTS'], 'LOG_REQUESTS must be "true", "all" or "false"');
  }
}

function apiPrefix(vars: ProxyVars): string | undefined {
  const raw = string(vars, 'IDEMPOTENCY_API_PREFIX') ?? '/_idempotency';
  if (raw === 'off') return undefined;
  if (!/^(?:\/[A-Za-z0-9._~-]+)+$/.test(raw))
    throw new ConfigError(['IDEMPOTENCY_API_PREFIX'], 'IDEMPOTENCY_API_PREFIX must be a path such as "/_idempotency", or "off"');
  return raw;
}

/** The shortest admin token accepted: 32 characters (of a random token, at least 128 bits even in hex). */
const MIN_ADMIN_TOKEN = 32;

function adminToken(vars: ProxyVars): string | undefined {
  const token = string(vars, 'IDEMPOTENCY_ADMIN_TOKEN');
  // It can purge any client's records: a short one could be guessed online, one request at a time.
  if (token !== undefined && token.length < MIN_ADMIN_TOKEN)
    throw new ConfigError(['IDEMPOTENCY_ADMIN_TOKEN'], `IDEMPOTENCY_ADMIN_TOKEN must be at least ${MIN_ADMIN_TOKEN} characters long`);
  return token;
}

function routeSpecs(vars: ProxyVars): RouteSpec[] {
  try {
    return readRoutes(vars.IDEMPOTENCY_ROUTES);
  } catch (error) {
    if (!(error instanceof RouteError)) throw error;
    throw new ConfigError([error.field], error.message);
  }
}

/**
 * Checks `IDEMPOTENCY_ENCRYPTION_KEYS` (the objects read it from the same env): a malformed keyring is refused at
 * the first request rather than at the first store, where the answer would be lost. Empty or unset: no encryption.
 */
function encryptionKeys(vars: ProxyVars): void {
  const raw = vars.IDEMPOTENCY_ENCRYPTION_KEYS;
  if (raw === undefined || raw === '') return;
  try {
    readKeyring(raw);
  } catch (error) {
    if (!(error instanceof SealConfigError)) throw error;
    throw new ConfigError(['IDEMPOTENCY_ENCRYPTION_KEYS'], error.message);
  }
}

/** Drops the keys whose value is `undefined` (the options use `exactOptionalPropertyTypes`). */
function defined<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

/**
 * The options that shape the layer's own answers (format, conflict status, CORS), as the variables set them.
 *
 * @param take - reads one variable, keeping its problem ({@link Problems.take}); by default a problem is thrown
 */
function answerOptions(vars: ProxyVars, take: <T>(read: () => T) => T | undefined = (read) => read()): IdempotencyOptions {
  const cors = take(() => string(vars, 'IDEMPOTENCY_CORS_ORIGINS'));
  return defined({
    errorFormat: take(() => string(vars, 'IDEMPOTENCY_ERROR_FORMAT')) as IdempotencyOptions['errorFormat'],
    conflictStatus: take(() => integer(vars, 'IDEMPOTENCY_CONFLICT_STATUS')) as IdempotencyOptions['conflictStatus'],
    cors: cors === undefined ? undefined : cors === '*' ? '*' : cors.split(','),
  });
}

/**
 * How the answers of a configuration that may be invalid are written: as its variables say when those are valid
 * themselves, else the defaults. So `configuration_invalid` follows `IDEMPOTENCY_ERROR_FORMAT` wherever it can.
 */
export function answersOf(vars: ProxyVars): Answers {
  try {
    return resolveOptions(answerOptions(vars)).answers;
  } catch {
    return new Answers();
  }
}

/**
 * Resolves options, turning a refusal into a {@link ConfigError} that names the settings by `name`; the answers at
 * run time name the jurisdiction setting the same way.
 */
function resolve(options: IdempotencyOptions, name: (option: OptionName) => string): ResolvedOptions {
  try {
    return { ...resolveOptions(options), jurisdictionName: name('jurisdiction') };
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    throw new ConfigError(error.options.map(name), error.describe(name));
  }
}

/**
 * Reads the configuration from wrangler variables and bindings, finding every problem it has: a name that looks like a
 * setting but is not one, and each invalid setting. An invalid `IDEMPOTENCY_ADMIN_TOKEN` only turns the admin key API
 * off ({@link ProxyConfig.disabled}) when nothing else is wrong: no guarantee depends on it. Every other setting stays
 * fatal, since running without it (or on its default) would weaken what the operator set it for.
 *
 * @param vars - the Worker's `env` (the names of {@link ProxyVars} are read; other names like them are refused)
 * @returns the configuration
 * @throws {@link ConfigError} naming the variables (or route fields) involved; with several problems, all of them
 * @example
 * ```ts
 * readConfig({ ORIGIN_URL: 'https://api.example.com/v1', IDEMPOTENCY_TTL_SECONDS: '3' });
 * ```
 */
export function readConfig(vars: ProxyVars): ProxyConfig {
  const problems = new Problems();
  const take = <T>(read: () => T): T | undefined => problems.take(read);
  for (const unknown of unknownVariables(vars)) problems.found.push(new ConfigError([unknown.name], unknown.message));
  const scopeHeaders = take(() => string(vars, 'IDEMPOTENCY_SCOPE_HEADERS'));
  const target = take(() => origin(vars));
  const logging = take(() => logRequests(vars)) ?? 'keyed';
  const options: IdempotencyOptions = defined({
    namespace: 'proxy',
    // The proxy always runs in origin mode: the object fetches the request's target.
    run: { mode: 'origin' as const, target: (c: { req: { url: string } }) => originTarget(target!, c.req.url) },
    reporter: logging === 'none' ? (false as const) : undefined,
    logPassThrough: logging === 'all',
    logRepeats: logging === 'all',
    // Forwarding to each request's own URL: the host is part of the request, so of its record and fingerprint.
    // Only then: with a fixed ORIGIN_URL, record names and fingerprints stay as they were (stored keys remain).
    hostScoped: target?.mode === 'request' ? true : undefined,
    ttlSeconds: take(() => integer(vars, 'IDEMPOTENCY_TTL_SECONDS')),
    timeoutMs: take(() => integer(vars, 'ORIGIN_TIMEOUT_MS')),
    leaseMs: take(() => integer(vars, 'ORIGIN_LEASE_MS')),
    onUnknown: take(() => string(vars, 'IDEMPOTENCY_ON_UNKNOWN')) as IdempotencyOptions['onUnknown'],
    reconcileUrl: take(() => string(vars, 'IDEMPOTENCY_RECONCILE_URL')),
    maxBodyBytes: take(() => integer(vars, 'MAX_BODY_BYTES')),
    required: take(() => boolean(vars, 'REQUIRE_IDEMPOTENCY_KEY')),
    allowAnonymous: take(() => boolean(vars, 'IDEMPOTENCY_ALLOW_ANONYMOUS')),
    scope: scopeHeaders === undefined ? undefined : { headers: scopeHeaders.split(',') },
    jurisdiction: take(() => string(vars, 'IDEMPOTENCY_JURISDICTION')) as DurableObjectJurisdiction | undefined,
    locationHint: take(() => string(vars, 'IDEMPOTENCY_LOCATION_HINT')) as DurableObjectLocationHint | undefined,
    logHashSecret: take(() => string(vars, 'LOG_HASH_SECRET')),
    // The per-credential limit is on when the rate limiting binding is declared in wrangler.toml.
    rateLimit: vars.IDEMPOTENCY_RATE_LIMITER === undefined ? undefined : { binding: 'IDEMPOTENCY_RATE_LIMITER' },
    ...answerOptions(vars, take),
    // And the per-address limit (CF-Connecting-IP) when its own binding is declared.
    ipRateLimit: vars.IDEMPOTENCY_IP_RATE_LIMITER === undefined ? undefined : { binding: 'IDEMPOTENCY_IP_RATE_LIMITER' },
  });
  const resolved = take(() => resolve(options, variableOf));
  take(() => encryptionKeys(vars));
  const routes = (take(() => routeSpecs(vars)) ?? []).map((spec) => {
    const merged = { ...options, ...spec.options };
    return { ...spec, resolved: take(() => resolve(merged, (option) => spec.fields[option] ?? variableOf(option))) };
  });
  const prefix = take(() => apiPrefix(vars));
  // Optional: an invalid token turns the admin API off, and that alone is no reason to refuse every request.
  const before = problems.found.length;
  const token = take(() => adminToken(vars));
  const disabled = problems.found.slice(before);
  if (before > 0) problems.throwAny();
  return {
    origin: target!,
    logRequests: logging,
    resolved: resolved!,
    routes: routes.map((route): ProxyRoute => ({ ...route, resolved: route.resolved! })),
    apiPrefix: prefix,
    adminToken: token,
    disabled,
  };
}
