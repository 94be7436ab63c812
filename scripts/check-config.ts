// `npm run check:config [-- --env NAME] [--config PATH]`: checks the proxy's configuration in wrangler.toml (the top
// level, or the environment NAME) with the proxy's own configuration reader, prints every problem and exits 1 on any.
// Secrets (`wrangler secret put`, `.dev.vars`) are not in wrangler.toml and are not checked.
import { parseArgs } from 'node:util';
import { checkConfig, report } from './lib/config-check.ts';

const { values } = parseArgs({
  options: { env: { type: 'string' }, config: { type: 'string', default: 'wrangler.toml' } },
  strict: true,
});
const label = `${values.config}${values.env === undefined ? ' (top level)' : ` --env ${values.env}`}`;
const problems = await checkConfig(values.config, values.env);
console.log(report(label, problems));
console.log('  (secrets such as IDEMPOTENCY_ADMIN_TOKEN are not in wrangler.toml and are not checked)');
process.exitCode = problems.length === 0 ? 0 : 1;
