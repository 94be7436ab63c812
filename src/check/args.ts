/**
 * @module
 * The command line of `idempotency-check`: what it reads from `argv`, or the usage error it exits 2 with.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

/** The command's usage text. */
export const USAGE = `Usage: idempotency-check <url> [options]

Sends real writes to <url> with fresh Idempotency-Key values and reports whether the layer in front of it keeps
them at most once. Meant for test and staging endpoints: every write may run.

Options:
  -X, --request METHOD   the write to check (default POST; PUT, PATCH, DELETE, ...)
  -H, --header 'N: v'    a header for every request, such as the credential (repeatable)
  -d, --data BODY        the request body (default {}); @FILE reads it from a file
      --as 'N: v'        the second identity for the scope check: these headers replace the -H ones of
                         the same name (repeatable); without it, scope is skipped
      --origin-port PORT origin mode: also serve a recording test origin on 127.0.0.1:PORT (0: any free
                         port, printed), to which the layer under test forwards; counts executions exactly
                         and runs the fault checks
      --concurrency N    identical requests sent at once by the concurrent check (20-200, default 20)
      --max-time SECONDS the time bound of the whole run (10-3600, default 120)
      --json             print { checks, passed, failed, skipped } as JSON instead of a table
  -h, --help             this text

Exit status: 0 when no check failed, 1 when one did, 2 on a usage error (a bad argument, an unreachable host,
a target the checks cannot judge), 3 if the command itself broke.`;

/** The methods that are reads: the checks need a write. */
const READS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT']);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A header as the command line gives it. */
export type Header = readonly [name: string, value: string];

/** What the command line asks for. */
export interface Options {
  readonly url: URL;
  readonly method: string;
  /** The -H headers, names in lower case. */
  readonly headers: readonly Header[];
  /** The second identity's headers (-H with --as on top), or `null` without --as. */
  readonly second: readonly Header[] | null;
  readonly body: Buffer;
  /** Origin mode: the port of the recording origin (0: any), else `null`. */
  readonly originPort: number | null;
  readonly concurrency: number;
  readonly maxTimeMs: number;
  readonly json: boolean;
}

/** A usage error: printed with the usage, exit status 2. */
export class UsageError extends Error {}

function header(text: string, flag: string): Header {
  const colon = text.indexOf(':');
  const name = colon > 0 ? text.slice(0, colon).trim() : '';
  if (!TOKEN.test(name)) throw new UsageError(`${flag} ${JSON.stringify(text)}: expected 'Name: value'`);
  const lower = name.toLowerCase();
  if (lower === 'idempotency-key') throw new UsageError(`${flag} Idempotency-Key: the check sends its own fresh keys`);
  return [lower, text.slice(colon + 1).trim()];
}

function whole(text: string | undefined, flag: string, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`${flag} ${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`);
  }
  return Number(text);
}

/** Reads the command line; throws {@link UsageError}, or returns `'help'` for -h. */
export function parseOptions(argv: readonly string[]): Options | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        request: { type: 'string', short: 'X' },
        header: { type: 'string', short: 'H', multiple: true },
        data: { type: 'string', short: 'd' },
        as: { type: 'string', multiple: true },
        'origin-port': { type: 'string' },
        concurrency: { type: 'string' },
        'max-time': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length !== 1)
    throw new UsageError(positionals.length === 0 ? 'no <url> given' : `one <url> only, got ${positionals.join(' ')}`);
  let url: URL;
  try {
    url = new URL(positionals[0]!);
  } catch {
    throw new UsageError(`${JSON.stringify(positionals[0])} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${url.href}: only http and https URLs can be checked`);
  const method = (values.request ?? 'POST').toUpperCase();
  if (!TOKEN.test(method)) throw new UsageError(`-X ${JSON.stringify(values.request)} is not a method`);
  if (READS.has(method)) throw new UsageError(`-X ${method} is a read: the checks need a write method (POST, PUT, PATCH, DELETE)`);
  const headers = (values.header ?? []).map((text) => header(text, '-H'));
  const replaced = (values.as ?? []).map((text) => header(text, '--as'));
  const second = replaced.length === 0 ? null : [...headers.filter(([name]) => !replaced.some(([other]) => other === name)), ...replaced];
  let body = Buffer.from(values.data ?? '{}');
  if (values.data?.startsWith('@')) {
    try {
      body = readFileSync(values.data.slice(1));
    } catch (error) {
      throw new UsageError(`-d ${values.data}: ${(error as Error).message}`);
    }
  }
  return {
    url,
    method,
    headers,
    second,
    body,
    originPort: values['origin-port'] === undefined ? null : whole(values['origin-port'], '--origin-port', 0, 65535, 0),
    concurrency: whole(values.concurrency, '--concurrency', 20, 200, 20),
    maxTimeMs: whole(values['max-time'], '--max-time', 10, 3600, 120) * 1000,
    json: values.json ?? false,
  };
}
