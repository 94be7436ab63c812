/**
 * @module
 * `IDEMPOTENCY_ROUTES`: per-route policy for the proxy, a list of routes each matched by a path pattern (Hono
 * syntax) and methods, with its own mode and overrides of the global variables. Its fields are the settings that
 * declare one (`SETTINGS`); the table is read once per configuration, and a mistake names the exact field
 * (`IDEMPOTENCY_ROUTES[1].ttl_seconds`).
 */
import { type IdempotencyOptions, type OptionName, SETTINGS, type Setting, SettingError } from '../middleware';

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
/** The settings a route sets by a field of its own, read as the table says. */
const FIELD_SETTINGS = (SETTINGS as readonly Setting[]).filter(
  (setting): setting is Setting & { field: string; option: OptionName; read: NonNullable<Setting['read']> } =>
    setting.field !== undefined && setting.option !== undefined && setting.read !== undefined,
);
const FIELDS: ReadonlySet<string> = new Set((SETTINGS as readonly Setting[]).flatMap((setting) => setting.field ?? []));

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
  // A route's mode decides `required` whatever REQUIRE_IDEMPOTENCY_KEY says; its methods are checked with its options.
  const options: Record<string, unknown> = { required: mode === 'required' };
  const fields: Partial<Record<OptionName, string>> = { methods: at('methods'), required: at('mode') };
  for (const { field, option, read } of FIELD_SETTINGS) {
    const value = entry[field];
    if (value === undefined) continue;
    try {
      options[option] = read(value);
    } catch (error) {
      if (!(error instanceof SettingError)) throw error;
      throw new RouteError(at(field), error.rule);
    }
    fields[option] = at(field);
  }
  // A route's own policy does not inherit the global reconcile URL; only its own reconcile_url counts.
  if (entry['on_unknown'] !== undefined && entry['reconcile_url'] === undefined) options['reconcileUrl'] = undefined;
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
