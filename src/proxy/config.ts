/**
 * @module
 * The proxy's configuration: wrangler variables mapped to `idempotency()` options, plus the origin.
 *
 * This module only maps: the defaults, ranges and cross-checks of the options live in the middleware's
 * options module, which the proxy calls like any app would. A mistake is reported as a
 * `configuration_invalid` problem that names the variables involved, never their values.
 */
import { type IdempotencyOptions, type OptionName, OptionsError, type ResolvedOptions, resolveOptions } from '../middleware/options';

/** The variables this module reads (wrangler passes a TOML number as a number). */
export interface ProxyVars {
  ORIGIN_URL?: unknown;
  IDEMPOTENCY_TTL_SECONDS?: unknown;
  ORIGIN_TIMEOUT_MS?: unknown;
  ORIGIN_LEASE_MS?: unknown;
  MAX_BODY_BYTES?: unknown;
  REQUIRE_IDEMPOTENCY_KEY?: unknown;
  LOG_REQUESTS?: unknown;
}

/** The resolved configuration. */
export interface ProxyConfig {
  /** Origin base URL; the request's path and query are appended to {@link basePath}. */
  readonly origin: URL;
  /** The path of `ORIGIN_URL` without its trailing slash (`""` for a bare host). */
  readonly basePath: string;
  /** Whether every request writes its JSON log line (and data point). */
  readonly logRequests: boolean;
  /** The options as the variables set them (defaults not applied), for `idempotency()`. */
  readonly options: IdempotencyOptions;
  /** The same options resolved (defaults applied, checked). */
  readonly resolved: ResolvedOptions;
}

/** Why a configuration is invalid. `message` names every variable involved and never shows a value. */
export class ConfigError extends Error {
  constructor(
    readonly variables: readonly string[],
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The variable each option comes from. */
const VARIABLE_OF: Partial<Record<OptionName, keyof ProxyVars>> = {
  ttlSeconds: 'IDEMPOTENCY_TTL_SECONDS',
  timeoutMs: 'ORIGIN_TIMEOUT_MS',
  leaseMs: 'ORIGIN_LEASE_MS',
  maxBodyBytes: 'MAX_BODY_BYTES',
  required: 'REQUIRE_IDEMPOTENCY_KEY',
};

const isUnset = (raw: unknown): raw is undefined => raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '');

function integer(vars: ProxyVars, name: keyof ProxyVars): number | undefined {
  const raw = vars[name];
  if (isUnset(raw)) return undefined;
  // Only plain decimal integers: "1e3", "0x10" or "5 s" are configuration mistakes.
  if (typeof raw === 'number' ? !Number.isSafeInteger(raw) : typeof raw !== 'string' || !/^\s*\d+\s*$/.test(raw)) {
    throw new ConfigError([name], `${name} must be a whole number`);
  }
  return Number(raw);
}

function boolean(vars: ProxyVars, name: keyof ProxyVars): boolean | undefined {
  const raw = vars[name];
  if (isUnset(raw)) return undefined;
  if (typeof raw === 'boolean') return raw;
  const text = String(raw).trim().toLowerCase();
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  throw new ConfigError([name], `${name} must be "true" or "false"`);
}

function originUrl(vars: ProxyVars): URL {
  const raw = typeof vars.ORIGIN_URL === 'string' ? vars.ORIGIN_URL.trim() : '';
  if (!raw) throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL is required (an absolute http or https URL)');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL is not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL must be an http or https URL');
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(['ORIGIN_URL'], 'ORIGIN_URL must not carry a query, fragment or credentials');
  }
  return url;
}

/** Drops the keys whose value is `undefined` (the options use `exactOptionalPropertyTypes`). */
function defined<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

/**
 * Reads the configuration from wrangler variables.
 *
 * @param vars - the Worker's `env` (only the variables of {@link ProxyVars} are read)
 * @returns the configuration
 * @throws {@link ConfigError} naming the variables involved
 * @example
 * ```ts
 * readConfig({ ORIGIN_URL: 'https://api.example.com/v1', IDEMPOTENCY_TTL_SECONDS: '3' });
 * ```
 */
export function readConfig(vars: ProxyVars): ProxyConfig {
  const options: IdempotencyOptions = defined({
    ttlSeconds: integer(vars, 'IDEMPOTENCY_TTL_SECONDS'),
    timeoutMs: integer(vars, 'ORIGIN_TIMEOUT_MS'),
    leaseMs: integer(vars, 'ORIGIN_LEASE_MS'),
    maxBodyBytes: integer(vars, 'MAX_BODY_BYTES'),
    required: boolean(vars, 'REQUIRE_IDEMPOTENCY_KEY'),
  });
  let resolved: ResolvedOptions;
  try {
    resolved = resolveOptions(options);
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    const name = (option: OptionName) => VARIABLE_OF[option] ?? option;
    throw new ConfigError(error.options.map(name), error.describe(name));
  }
  const origin = originUrl(vars);
  return { origin, basePath: origin.pathname.replace(/\/+$/, ''), logRequests: boolean(vars, 'LOG_REQUESTS') ?? true, options, resolved };
}
