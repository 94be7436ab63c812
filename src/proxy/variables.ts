/**
 * @module
 * The proxy's variables as such: the names it reads from its `env`, how one value is read (a whole number, a boolean,
 * a string), and the problems a configuration has, gathered so that all of them are reported. Names that look like
 * settings but are not are refused: a misspelt setting (`ORGIN_URL`, `IDEMPOTENCY_TTL`, or `--var ORIGIN_URL=…` with
 * `=`) would otherwise be ignored silently, and the proxy would run on a default the operator meant to change.
 */
import { SETTINGS, type Setting, SettingError, type VariableName } from '../middleware';

/**
 * The proxy's `env` as this module reads it: its variables, secrets and bindings (`SETTINGS`), each of any type
 * (wrangler passes a TOML number as a number, a binding as an object).
 */
export type ProxyVars = { readonly [Name in VariableName]?: unknown };

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

/**
 * The value of `setting`'s variable, read as the table says, or `undefined` when it is unset.
 *
 * @throws {@link ConfigError} naming the variable, never its value
 */
export function readVariable(vars: ProxyVars, setting: Setting & { variable: VariableName; read: NonNullable<Setting['read']> }): unknown {
  const raw = vars[setting.variable];
  if (isUnset(raw)) return undefined;
  try {
    return setting.read(raw);
  } catch (error) {
    if (!(error instanceof SettingError)) throw error;
    throw new ConfigError([setting.variable], `${setting.variable} ${error.rule}`);
  }
}

/**
 * A variable the proxy reads itself (not an option's): its trimmed text, or `undefined` when it is unset.
 *
 * @throws {@link ConfigError} when it is not a string
 */
export function text(vars: ProxyVars, name: VariableName): string | undefined {
  const raw = vars[name];
  if (isUnset(raw)) return undefined;
  if (typeof raw !== 'string') throw new ConfigError([name], `${name} must be a string`);
  return raw.trim();
}

/** Every name the proxy knows: its variables, secrets and bindings. */
export const KNOWN_NAMES: readonly string[] = (SETTINGS as readonly Setting[]).flatMap((setting) => setting.variable ?? []);
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
