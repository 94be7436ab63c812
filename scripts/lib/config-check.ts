/**
 * @module
 * Checks the proxy's configuration in a wrangler config before it is deployed: wrangler's own reader
 * (`unstable_readConfig`) gives the variables and bindings of the top level or of one environment, and the proxy's
 * real configuration reader (`readConfig` in src/proxy/config.ts, bundled for Node with esbuild: Node cannot import
 * src/ as it is, its imports name no file extension) reads them as the Worker would. No rule is written twice.
 *
 * Secrets are not in the wrangler config (`wrangler secret put`, `.dev.vars` locally), so they are not checked here:
 * an invalid `IDEMPOTENCY_ADMIN_TOKEN`, `IDEMPOTENCY_ENCRYPTION_KEYS` or `LOG_HASH_SECRET` shows at run time.
 */
import { resolve } from 'node:path';
import { build } from 'esbuild';
import { unstable_convertConfigBindingsToStartWorkerBindings, unstable_readConfig } from 'wrangler';

const ROOT = resolve(import.meta.dirname, '../..');

/** What the check needs of src/proxy/config.ts. */
interface Reader {
  readConfig(vars: Record<string, unknown>): { disabled: readonly Problem[] };
  ConfigError: new (...args: never[]) => Error & { problems: readonly Problem[] };
}

/** One problem: the variables it names and what is wrong (never a value). */
export interface Problem {
  readonly variables: readonly string[];
  readonly message: string;
}

let reader: Promise<Reader> | undefined;

/** The proxy's configuration reader, bundled once per process. */
function loadReader(): Promise<Reader> {
  reader ??= (async () => {
    const bundle = await build({
      entryPoints: [resolve(ROOT, 'src/proxy/config.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      write: false,
      logLevel: 'silent',
    });
    const code = bundle.outputFiles[0]!.text;
    return (await import(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`)) as Reader;
  })();
  return reader;
}

/** The environments of a wrangler config, the top level (`undefined`) first. */
export function environmentsOf(configPath: string): (string | undefined)[] {
  const config = unstable_readConfig({ config: resolve(ROOT, configPath) }, { hideWarnings: true });
  return [undefined, ...(config.definedEnvironments ?? [])];
}

/** What the Worker's `env` holds for a wrangler config: its vars, and a stand-in for each other binding. */
export function envOf(configPath: string, environment?: string): Record<string, unknown> {
  const config = unstable_readConfig(
    { config: configPath, ...(environment === undefined ? {} : { env: environment }) },
    { hideWarnings: true },
  );
  const env: Record<string, unknown> = {};
  for (const [name, binding] of Object.entries(unstable_convertConfigBindingsToStartWorkerBindings(config) ?? {}))
    env[name] = name in config.vars ? config.vars[name] : { binding: (binding as { type?: string }).type ?? 'binding' };
  return env;
}

/**
 * Every problem the proxy would answer `configuration_invalid` for (or turn a feature off for), in the wrangler config
 * at `configPath`, top level or `environment`.
 *
 * @returns the problems; none when the configuration is valid
 */
export async function checkConfig(configPath: string, environment?: string): Promise<Problem[]> {
  const env = envOf(resolve(ROOT, configPath), environment);
  const { readConfig, ConfigError } = await loadReader();
  try {
    return [...readConfig(env).disabled];
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
}

/** The report of one configuration, as the commands print it. */
export function report(label: string, problems: readonly Problem[]): string {
  if (problems.length === 0) return `  ok: ${label}`;
  const lines = problems.map((problem) => `  - ${problem.message}`);
  return [`  ${label}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`, ...lines].join('\n');
}
