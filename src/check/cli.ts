/**
 * @module
 * `idempotency-check <url> [-X METHOD] [-H 'Name: value']... [-d BODY] [--origin-port PORT] [--json]`: a conformance
 * check of any Idempotency-Key API. The package's `bin` (built to `dist/check.js` for Node >= 20); here
 * `npm run check:api -- <args>` runs this file as it is. Node builtins only.
 *
 * Exit status: 0 when no check failed, 1 when one did, 2 on a usage error (a bad argument, an unreachable host, a
 * target the checks cannot judge).
 */
import { parseOptions, USAGE, UsageError } from './args.ts';
import { Bound } from './http.ts';
import { type RecordingOrigin, startRecordingOrigin } from './origin.ts';
import { json, summary, table, warning } from './report.ts';
import { plan, runChecks, Unusable } from './run.ts';

const out = (text: string): void => void process.stdout.write(`${text}\n`);
const err = (text: string): void => void process.stderr.write(`${text}\n`);

async function main(argv: readonly string[]): Promise<number> {
  let options;
  try {
    options = parseOptions(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    err(`idempotency-check: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    out(USAGE);
    return 0;
  }
  const started = Date.now();
  let origin: RecordingOrigin | null = null;
  if (options.originPort !== null) {
    try {
      origin = await startRecordingOrigin({ port: options.originPort });
    } catch (error) {
      err(
        `idempotency-check: cannot serve the test origin on 127.0.0.1:${options.originPort}: ${(error as { code?: string }).code ?? (error as Error).message}`,
      );
      return 2;
    }
    err(`test origin listening on ${origin.url}`);
  }
  try {
    const planned = plan(options);
    err(warning(options, planned, origin?.url ?? null));
    const { report, sent } = await runChecks(options, origin, planned, started + options.maxTimeMs);
    out(options.json ? json(report) : table(report));
    (options.json ? err : out)(summary(report, sent, Date.now() - started));
    return report.failed > 0 ? 1 : 0;
  } catch (error) {
    if (!(error instanceof Unusable) && !(error instanceof Bound)) throw error;
    err(`idempotency-check: ${error.message}`);
    return 2;
  } finally {
    await origin?.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Keep-alive connections of fetch may hold the event loop a little; nothing is left to do.
    setTimeout(() => process.exit(code), 500).unref();
  },
  (error: unknown) => {
    err(`idempotency-check: internal error: ${(error as Error).stack ?? String(error)}`);
    process.exit(3);
  },
);
