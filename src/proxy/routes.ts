/**
 * @module
 * `IDEMPOTENCY_ROUTES`: per-route policy for the proxy, a list of routes each matched by a path pattern (Hono
 * syntax) and methods, with its own mode and overrides of the global variables. The table is read once per
 * configuration; a mistake names the exact field (`IDEMPOTENCY_ROUTES[1].ttl_seconds`).
 */
import type { IdempotencyOptions, OptionName } from '../middleware/options';

/** What a route does with the requests it matches. */
export type RouteMode = 'off' | 'optional' | 'required';

/** One route of the table, checked. */
export interface RouteSpec {
  readonly pattern: string;
  readonly mode: RouteMode;
  /** The options this route sets (on top of the global ones); its methods are checked with them. */
  readonly options: IdempotencyOptions;
  /** The field each option of {@link options} came from. */
  readonly fields: Partial<Record<OptionName, string>>;
}

/** A mistake in the table: the field and what is wrong with it. */
export class RouteError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

const VARIABLE = 'IDEMPOTENCY_ROUTES';
const NUMBER_FIELDS = { ttl_seconds: 'ttlSeconds', timeout_ms: 'timeoutMs', lease_ms: 'leaseMs', max_body_bytes: 'maxBodyBytes' } as const;
const FIELDS = new Set([
  'pattern',
  'methods',
  'mode',
  'fingerprint',
  'ignore_fields',
  'on_unknown',
  'reconcile_url',
  'allow_anonymous',
  ...Object.keys(NUMBER_FIELDS),
]);

function table(raw: unknown): unknown[] {
  if (Array.isArray(raw)) return raw;
  if (typeof raw === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new RouteError(VARIABLE, 'must be a JSON array of routes (or a TOML array of tables under [vars])');
    }
    if (Array.isArray(parsed)) return parsed;
  }
  throw new RouteError(VARIABLE, 'must be an array of routes');
}

function strings(field: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw new RouteError(field, 'must be an array of strings');
  return value;
}

/** Reads one route. */
function route(raw: unknown, index: number): RouteSpec {
  const at = (field: string) => `${VARIABLE}[${index}].${field}`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new RouteError(`${VARIABLE}[${index}]`, 'must be a table (an object)');
  const entry = raw as Record<string, unknown>;
  for (const field of Object.keys(entry)) if (!FIELDS.has(field)) throw new RouteError(at(field), 'is not a route field');
  const { pattern, mode = 'optional' } = entry;
  if (typeof pattern !== 'string' || !pattern.startsWith('/') || pattern.length > 1024) {
    throw new RouteError(at('pattern'), 'must be a path pattern starting with "/" (Hono syntax, e.g. "/api/v1/payments/*")');
  }
  if (mode !== 'off' && mode !== 'optional' && mode !== 'required')
    throw new RouteError(at('mode'), 'must be "off", "optional" or "required"');
  const options: Record<string, unknown> = { required: mode === 'required' };
  const fields: Partial<Record<OptionName, string>> = { methods: at('methods'), required: at('mode') };
  if (entry['methods'] !== undefined) options['methods'] = strings(at('methods'), entry['methods']);
  for (const [field, option] of Object.entries(NUMBER_FIELDS)) {
    const value = entry[field];
    if (value === undefined) continue;
    const number = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isSafeInteger(number)) throw new RouteError(at(field), 'must be a whole number');
    options[option] = number;
    fields[option] = at(field);
  }
  if (entry['fingerprint'] !== undefined) {
    options['fingerprint'] = entry['fingerprint'];
    fields.fingerprint = at('fingerprint');
  }
  if (entry['on_unknown'] !== undefined) {
    options['onUnknown'] = entry['on_unknown'];
    fields.onUnknown = at('on_unknown');
    // A route's own policy does not inherit the global reconcile URL; only its own reconcile_url counts.
    options['reconcileUrl'] = undefined;
  }
  if (entry['reconcile_url'] !== undefined) {
    options['reconcileUrl'] = entry['reconcile_url'];
    fields.reconcileUrl = at('reconcile_url');
  }
  const anonymous = entry['allow_anonymous'];
  if (anonymous !== undefined) {
    if (anonymous !== true && anonymous !== false && anonymous !== 'true' && anonymous !== 'false')
      throw new RouteError(at('allow_anonymous'), 'must be true or false');
    options['allowAnonymous'] = anonymous === true || anonymous === 'true';
    fields.allowAnonymous = at('allow_anonymous');
  }
  if (entry['ignore_fields'] !== undefined) {
    options['ignoreFields'] = strings(at('ignore_fields'), entry['ignore_fields']);
    fields.ignoreFields = at('ignore_fields');
  }
  return { pattern, mode, options: options as IdempotencyOptions, fields };
}

/**
 * Reads the route table.
 *
 * @param raw - `IDEMPOTENCY_ROUTES` as wrangler passes it: an array (TOML array of tables) or a JSON string
 * @returns the routes in order (the first that matches a request decides); none when unset
 * @throws {@link RouteError} naming the field at fault
 */
export function readRoutes(raw: unknown): RouteSpec[] {
  if (raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '')) return [];
  return table(raw).map(route);
}
