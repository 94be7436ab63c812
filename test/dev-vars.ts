/**
 * @module
 * Tests run on what wrangler.toml and the tests set, never on a developer's own `.dev.vars` (or `.env`): wrangler
 * reads those beside the config for every local Worker, and a secret there (an `IDEMPOTENCY_ADMIN_TOKEN`, as
 * wrangler.toml suggests putting it) would change what the tests see (issue #28).
 */
import { unstable_getVarsForDev, unstable_readConfig } from 'wrangler';

/**
 * The bindings that undo what a `.dev.vars` (or `.env`) beside `configPath` would add to the Worker under test: each
 * name it sets is bound back to its `[vars]` value in the config, or to `""` (which the proxy reads as unset).
 *
 * @param configPath - the wrangler config the tests run
 */
export function devVarsUndone(configPath: string): Record<string, unknown> {
  const config = unstable_readConfig({ config: configPath }, { hideWarnings: true });
  const local = unstable_getVarsForDev(config.configPath, undefined, {}, undefined, true);
  return Object.fromEntries(Object.keys(local).map((name) => [name, name in config.vars ? config.vars[name] : '']));
}
