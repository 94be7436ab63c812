/**
 * @module
 * The proxy's configuration: wrangler variables mapped to `idempotency()` options, plus the origin, the route
 * table and the key API.
 *
 * This module only maps: the defaults, ranges and cross-checks of the options live in the middleware's
 * `resolveOptions` (`middleware/resolve.ts`), which the proxy calls like any app would. A mistake is reported as a
 * `configuration_invalid` problem that names the variables involved, never their values.
 */
import {
  Answers,
  type IdempotencyOptions,
  type OptionName,
  OptionsError,
  type ResolvedOptions,
  SETTINGS,
  type Setting,
  type VariableName,
  resolveOptions,
  variableOf,
} from '../middleware';
import { keyringError } from '../record/seal';
import { RouteError, type RouteSpec, readRoutes } from './routes';
import { type OriginConfig, originTarget } from './target';
import { ConfigError, Problems, type ProxyVars, readVariable, text, unknownVariables } from './variables';

export { ConfigError };

export type { ProxyVars };

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

/** A DNS name or an IPv4 address (letters, digits, hyphens, dots), or an IPv6 address in brackets. */
const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$|^\[[0-9a-f:.]+\]$/;
/** An `ORIGIN_HOSTS` entry: an optional `http://` or `https://`, a host name, an optional port. */
const HOST_ENTRY = /^(?:(https?):\/\/)?([^/:]+|\[[^\]]*\])(?::(\d{1,5}))?$/;

/**
 * An `ORIGIN_HOSTS` entry as the serialised origin it pins: `api.example.com` is https on 443,
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
  const raw = text(vars, 'ORIGIN_URL');
  if (raw === undefined) throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL is required (an absolute http or https URL, or "request")');
  const hosts = text(vars, 'ORIGIN_HOSTS');
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
  const value = raw === undefined || raw === null ? '' : String(raw).trim().toLowerCase();
  if (value === '' || value === 'true' || value === '1') return 'keyed';
  if (value === 'all') return 'all';
  if (value === 'false' || value === '0') return 'none';
  throw new ConfigError(['LOG_REQUESTS'], 'LOG_REQUESTS must be "true", "all" or "false"');
}

function apiPrefix(vars: ProxyVars): string | undefined {
  const raw = text(vars, 'IDEMPOTENCY_API_PREFIX') ?? '/_idempotency';
  if (raw === 'off') return undefined;
  if (!/^(?:\/[A-Za-z0-9._~-]+)+$/.test(raw))
    throw new ConfigError(['IDEMPOTENCY_API_PREFIX'], 'IDEMPOTENCY_API_PREFIX must be a path such as "/_idempotency", or "off"');
  return raw;
}

/** The shortest admin token accepted: 32 characters (of a random token, at least 128 bits even in hex). */
const MIN_ADMIN_TOKEN = 32;

function adminToken(vars: ProxyVars): string | undefined {
  const token = text(vars, 'IDEMPOTENCY_ADMIN_TOKEN');
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
  const error = keyringError(vars.IDEMPOTENCY_ENCRYPTION_KEYS);
  if (error !== undefined) throw new ConfigError(['IDEMPOTENCY_ENCRYPTION_KEYS'], error);
}

/** A setting the proxy reads from a variable into an option, as the table says. */
type VariableSetting = Setting & { option: OptionName; variable: VariableName; read: NonNullable<Setting['read']> };

/** Every option the proxy reads from a variable; the rest of its variables it reads itself (below). */
const OPTION_VARIABLES = (SETTINGS as readonly Setting[]).filter(
  (setting): setting is VariableSetting => setting.option !== undefined && setting.variable !== undefined && setting.read !== undefined,
);

/** The settings that shape the layer's own answers (format, conflict status, CORS). */
const ANSWER_OPTIONS: ReadonlySet<OptionName> = new Set(['errorFormat', 'conflictStatus', 'cors']);

/**
 * The options the variables set, each read as the table says; unset variables set nothing.
 *
 * @param take - reads one variable, keeping its problem ({@link Problems.take}); by default a problem is thrown
 */
function optionsOf(
  vars: ProxyVars,
  settings: readonly VariableSetting[],
  take: <T>(read: () => T) => T | undefined = (read) => read(),
): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const setting of settings) {
    const value = take(() => readVariable(vars, setting));
    if (value !== undefined) options[setting.option] = value;
  }
  return options;
}

/**
 * How the answers of a configuration that may be invalid are written: as its variables say when those are valid
 * themselves, else the defaults. So `configuration_invalid` follows `IDEMPOTENCY_ERROR_FORMAT` wherever it can.
 */
export function answersOf(vars: ProxyVars): Answers {
  try {
    return resolveOptions(
      optionsOf(
        vars,
        OPTION_VARIABLES.filter((setting) => ANSWER_OPTIONS.has(setting.option)),
      ),
    ).answers;
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
    return resolveOptions(options);
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
  const target = take(() => origin(vars));
  const logging = take(() => logRequests(vars)) ?? 'keyed';
  const options = {
    ...optionsOf(vars, OPTION_VARIABLES, take),
    namespace: 'proxy',
    // The proxy always runs in origin mode: the object fetches the request's target.
    run: { mode: 'origin' as const, target: (c: { req: { url: string } }) => originTarget(target!, c.req.url) },
    ...(logging === 'none' ? { reporter: false as const } : {}),
    logPassThrough: logging === 'all',
    logRepeats: logging === 'all',
    // Forwarding to each request's own URL: the host is part of the request, so of its record and fingerprint.
    // Only then: with a fixed ORIGIN_URL, record names and fingerprints stay as they were (stored keys remain).
    ...(target?.mode === 'request' ? { hostScoped: true } : {}),
  } as IdempotencyOptions;
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
