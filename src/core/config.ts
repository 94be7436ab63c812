/**
 * @module
 * Reads and validates the proxy's configuration (wrangler vars) once per `env` object.
 *
 * Every variable is a string in `wrangler.toml` and can be overridden with
 * `wrangler dev --var NAME:value`. A bad value never reaches the request path: it is reported as a
 * `configuration_invalid` problem naming the variable.
 */

/** The resolved configuration. Durations are in milliseconds, sizes in bytes. */
export interface ProxyConfig {
  /** Origin base URL; the request's path and query are appended to {@link originBasePath}. */
  readonly originUrl: URL;
  /** The path of `ORIGIN_URL` without its trailing slash (`""` for a bare host). */
  readonly originBasePath: string;
  readonly ttlMs: number;
  readonly originTimeoutMs: number;
  readonly leaseMs: number;
  readonly maxBodyBytes: number;
  readonly requireKey: boolean;
  /** Whether every request writes its JSON log line (and data point). */
  readonly logRequests: boolean;
}

/** Why a configuration is invalid: the variable and what is wrong with it. */
export interface ConfigError {
  readonly variable: string;
  readonly message: string;
}

/**
 * The largest `MAX_BODY_BYTES` we accept. Request bodies travel to the Durable Object as one RPC
 * argument and stored responses come back as one RPC value, and workerd caps a serialized RPC
 * message at 32 MiB; 24 MiB leaves room for headers and framing.
 */
export const MAX_BODY_BYTES_LIMIT = 24 * 1024 * 1024;

/** The variables this module reads. */
export interface ConfigVars {
  ORIGIN_URL?: string;
  IDEMPOTENCY_TTL_SECONDS?: string;
  ORIGIN_TIMEOUT_MS?: string;
  ORIGIN_LEASE_MS?: string;
  MAX_BODY_BYTES?: string;
  REQUIRE_IDEMPOTENCY_KEY?: string;
  LOG_REQUESTS?: string;
}

class InvalidConfig extends Error {
  constructor(readonly detail: ConfigError) {
    super(`${detail.variable}: ${detail.message}`);
  }
}

function integer(vars: ConfigVars, name: keyof ConfigVars, fallback: number, min: number, max: number): number {
  const raw = vars[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  // Only plain decimal integers: "1e3", "0x10", " 5 " with inner junk are configuration mistakes.
  if (!/^\s*\d+\s*$/.test(raw)) {
    throw new InvalidConfig({ variable: name, message: `must be a whole number, got ${JSON.stringify(raw)}` });
  }
  const value = Number(raw);
  if (value < min || value > max) {
    throw new InvalidConfig({ variable: name, message: `must be between ${min} and ${max}, got ${value}` });
  }
  return value;
}

function boolean(vars: ConfigVars, name: keyof ConfigVars, fallback: boolean): boolean {
  const raw = vars[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new InvalidConfig({ variable: name, message: `must be "true" or "false", got ${JSON.stringify(vars[name])}` });
}

function originUrl(vars: ConfigVars): URL {
  const raw = vars.ORIGIN_URL?.trim();
  if (!raw) throw new InvalidConfig({ variable: 'ORIGIN_URL', message: 'is required (e.g. "https://api.example.com")' });
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidConfig({ variable: 'ORIGIN_URL', message: `is not an absolute URL: ${JSON.stringify(raw)}` });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidConfig({ variable: 'ORIGIN_URL', message: `must be http or https, got ${url.protocol}` });
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new InvalidConfig({ variable: 'ORIGIN_URL', message: 'must not carry a query, fragment or credentials' });
  }
  return url;
}

/**
 * Resolves the configuration from wrangler vars.
 *
 * @param vars - the Worker's `env` (only the variables in {@link ConfigVars} are read)
 * @returns the configuration, or the first invalid variable
 * @example
 * ```ts
 * const config = parseConfig({ ORIGIN_URL: 'https://api.example.com' });
 * if ('variable' in config) throw new Error(config.message);
 * ```
 */
export function parseConfig(vars: ConfigVars): ProxyConfig | ConfigError {
  try {
    const ttlMs = integer(vars, 'IDEMPOTENCY_TTL_SECONDS', 86_400, 1, 30 * 86_400) * 1000;
    const originTimeoutMs = integer(vars, 'ORIGIN_TIMEOUT_MS', 30_000, 1, 15 * 60_000);
    // The lease is how long an origin attempt may run before it is abandoned and the key freed. It
    // cannot be shorter than the client's wait, and must end well inside the TTL.
    const leaseMs = integer(vars, 'ORIGIN_LEASE_MS', Math.max(120_000, originTimeoutMs), originTimeoutMs, 15 * 60_000);
    if (leaseMs >= ttlMs) {
      throw new InvalidConfig({ variable: 'ORIGIN_LEASE_MS', message: `must be shorter than IDEMPOTENCY_TTL_SECONDS (${ttlMs / 1000} s)` });
    }
    const origin = originUrl(vars);
    return {
      originUrl: origin,
      originBasePath: origin.pathname.replace(/\/+$/, ''),
      ttlMs,
      originTimeoutMs,
      leaseMs,
      maxBodyBytes: integer(vars, 'MAX_BODY_BYTES', 10 * 1024 * 1024, 1, MAX_BODY_BYTES_LIMIT),
      requireKey: boolean(vars, 'REQUIRE_IDEMPOTENCY_KEY', false),
      logRequests: boolean(vars, 'LOG_REQUESTS', true),
    };
  } catch (error) {
    if (error instanceof InvalidConfig) return error.detail;
    throw error;
  }
}

const cache = new WeakMap<object, ProxyConfig | ConfigError>();

/**
 * {@link parseConfig}, computed once per `env` object (workerd hands the same object to every
 * request of an isolate, so validation does not run on the request path).
 */
export function configFor(env: ConfigVars): ProxyConfig | ConfigError {
  let config = cache.get(env);
  if (config === undefined) {
    config = parseConfig(env);
    cache.set(env, config);
  }
  return config;
}
