/**
 * @module
 * The proxy's variables as such: the names it reads from its `env`, how one value is read (a whole number, a boolean,
 * a string), and the problems a configuration has, gathered so that all of them are reported. Names that look like
 * settings but are not are refused: a misspelt setting (`ORGIN_URL`, `IDEMPOTENCY_TTL`, or `--var ORIGIN_URL=…` with
 * `=`) would otherwise be ignored silently, and the proxy would run on a default the operator meant to change
 * (issue #28).
 */
import type { ProxyVars } from './config';

/**
 * Why a configuration is invalid. `message` names every variable involved and never shows a value; `problems` lists
 * each problem found (one, or all of a configuration with several).
 */
export class ConfigError extends Error {
  readonly problems: readonly ConfigError[];

  constructor(
    readonly variables: readonly string[],
    message: string,
    problems?: readonly ConfigError[],
  ) {
    super(message);
    this.name = 'ConfigError';
    this.problems = problems ?? [this];
  }
}

/** Gathers the problems of a configuration, so that all of them are reported, not only the first. */
export class Problems {
  readonly found: ConfigError[] = [];

  /** `read()`, or `undefined` when it finds a problem (kept). */
  take<T>(read: () => T): T | undefined {
    try {
      return read();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.found.push(error);
      return undefined;
    }
  }

  /** Throws the problems found: the one, or all of them in one error. */
  throwAny(): void {
    const { found } = this;
    if (found.length === 1) throw found[0]!;
    if (found.length > 1)
      throw new ConfigError([...new Set(found.flatMap((error) => error.variables))], found.map((error) => error.message).join('; '), found);
  }
}

const isUnset = (raw: unknown): boolean => raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '');

export function integer(vars: ProxyVars, name: keyof ProxyVars): number | undefined {
  const raw = vars[name];
  if (isUnset(raw)) return undefined;
  // Only plain decimal integers: "1e3", "0x10" or "5 s" are configuration mistakes.
  if (typeof raw === 'number' ? !Number.isSafeInteger(raw) : typeof raw !== 'string' || !/^\s*\d+\s*$/.test(raw)) {
    throw new ConfigError([name], `${name} must be a whole number`);
  }
  return Number(raw);
}

export function boolean(vars: ProxyVars, name: keyof ProxyVars): boolean | undefined {
  const raw = vars[name];
  if (isUnset(raw)) return undefined;
  if (typeof raw === 'boolean') return raw;
  const text = String(raw).trim().toLowerCase();
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  throw new ConfigError([name], `${name} must be "true" or "false"`);
}

export function string(vars: ProxyVars, name: keyof ProxyVars): string | undefined {
  const raw = vars[name];
  if (isUnset(raw)) return undefined;
  if (typeof raw !== 'string') throw new ConfigError([name], `${name} must be a string`);
  return raw.trim();
}

/** Every variable the proxy reads, and the bindings it looks for (`IDEMPOTENCY_RATE_LIMITER`, …): all of them. */
const VARIABLES = {
  ORIGIN_URL: true,
  ORIGIN_HOSTS: true,
  ORIGIN_TIMEOUT_MS: true,
  ORIGIN_LEASE_MS: true,
  IDEMPOTENCY_TTL_SECONDS: true,
  IDEMPOTENCY_ON_UNKNOWN: true,
  IDEMPOTENCY_RECONCILE_URL: true,
  MAX_BODY_BYTES: true,
  REQUIRE_IDEMPOTENCY_KEY: true,
  IDEMPOTENCY_ALLOW_ANONYMOUS: true,
  LOG_REQUESTS: true,
  IDEMPOTENCY_SCOPE_HEADERS: true,
  IDEMPOTENCY_JURISDICTION: true,
  IDEMPOTENCY_LOCATION_HINT: true,
  IDEMPOTENCY_ROUTES: true,
  IDEMPOTENCY_API_PREFIX: true,
  IDEMPOTENCY_ADMIN_TOKEN: true,
  LOG_HASH_SECRET: true,
  IDEMPOTENCY_RATE_LIMITER: true,
  IDEMPOTENCY_IP_RATE_LIMITER: true,
  IDEMPOTENCY_ERROR_FORMAT: true,
  IDEMPOTENCY_CONFLICT_STATUS: true,
  IDEMPOTENCY_CORS_ORIGINS: true,
  IDEMPOTENCY_ENCRYPTION_KEYS: true,
} as const satisfies Record<keyof ProxyVars, true>;

/** The other bindings wrangler.toml declares for the proxy: the records' namespace and the metrics dataset. */
const BINDINGS = ['IDEMPOTENCY', 'METRICS'];

/** Every name the proxy knows. */
export const KNOWN_NAMES: readonly string[] = [...Object.keys(VARIABLES), ...BINDINGS];
const known = new Set(KNOWN_NAMES);

/** Names of the proxy's settings start so: another name that does is a mistake, not the operator's own binding. */
const PREFIXES = ['IDEMPOTENCY_', 'ORIGIN_', 'LOG_', 'MAX_BODY', 'REQUIRE_IDEMPOTENCY'];

/** The Levenshtein distance between two names (insertions, deletions and substitutions). */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}

/**
 * The known name closest to `name` (case aside), if one is close enough to be what was meant: a few edits away, or
 * the start of it (`IDEMPOTENCY_TTL`).
 */
function closest(name: string): { readonly name: string; readonly distance: number } | undefined {
  const upper = name.toUpperCase();
  let best: { name: string; distance: number } | undefined;
  for (const candidate of KNOWN_NAMES) {
    const d = upper.length >= 8 && candidate.startsWith(upper) ? 1 : distance(upper, candidate);
    if (best === undefined || d < best.distance) best = { name: candidate, distance: d };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(best.name.length / 4)) ? best : undefined;
}

/** A name as it may be shown: up to its first character that no variable name has (`ORIGIN_URL=…`). */
const shown = (name: string): string => name.replace(/[^A-Za-z0-9_][\s\S]*$/, '…');

/** A name the proxy does not know, but which looks like one of its settings. */
export interface UnknownVariable {
  /** The name as it may be shown (never a value that `--var NAME=VALUE` put into it). */
  readonly name: string;
  readonly message: string;
}

/**
 * The names of `env` that look like the proxy's settings but are not: any name starting like one
 * (`IDEMPOTENCY_`, `ORIGIN_`, `LOG_`, `MAX_BODY`, `REQUIRE_IDEMPOTENCY`), and any other within a small edit distance of
 * a known name (`ORGIN_URL`, `origin_url`). Bindings of other names are the operator's own and are left alone.
 *
 * @param env - the Worker's `env`
 * @returns one entry per such name, with the known name it is closest to when one is close
 */
export function unknownVariables(env: object): UnknownVariable[] {
  const found: UnknownVariable[] = [];
  for (const [name, value] of Object.entries(env)) {
    // An empty variable sets nothing, like an unset one.
    if (known.has(name) || isUnset(value)) continue;
    const upper = name.toUpperCase();
    const near = closest(shown(name).replace(/…$/, ''));
    if (!PREFIXES.some((prefix) => upper.startsWith(prefix)) && near === undefined) continue;
    const display = shown(name);
    const hint = near === undefined ? '' : ` (did you mean ${near.name}?)`;
    // wrangler reads `--var NAME:VALUE`; with `=`, the whole `NAME=VALUE` is taken for a name.
    const separator = display.endsWith('…') && name.includes('=') ? `; wrangler's --var takes NAME:VALUE, not NAME=VALUE` : '';
    found.push({ name: display, message: `${display} is not a setting of the proxy${hint}${separator}` });
  }
  return found;
}
