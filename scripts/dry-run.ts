// `npm run check:deploy`: the proxy's configuration checked (`check:config`, with the proxy's own reader) for the top
// level and every environment in wrangler.toml, then `wrangler deploy --dry-run` for each and for the consumer example,
// so a configuration or bundling mistake fails here (and in CI) rather than at deploy time. A dry run alone passes a
// configuration that answers 500 to every request. The bundles go to .wrangler/dry-run/<name>/ (git-ignored).
import { execFileSync } from 'node:child_process';
import { checkConfig, environmentsOf, report } from './lib/config-check.ts';

/** The proxy's environments, as wrangler reads them: `undefined` is the top level. */
const environments = environmentsOf('wrangler.toml');
const builds: [name: string, args: string[]][] = [
  ...environments.map((environment): [string, string[]] => [
    environment ?? 'default',
    environment === undefined ? [] : ['--env', environment],
  ]),
  ['examples-consumer', ['--config', 'examples/consumer/wrangler.toml']],
];
let invalid = 0;
for (const environment of environments) {
  const name = environment ?? 'default';
  const problems = await checkConfig('wrangler.toml', environment);
  console.log(`> check:config ${environment === undefined ? '' : `--env ${environment}`}`);
  console.log(report(name, problems));
  invalid += problems.length;
}
if (invalid > 0) {
  console.error('The configuration is invalid: the proxy would answer 500 configuration_invalid (see above).');
  process.exit(1);
}
for (const [name, args] of builds) {
  const argv = ['deploy', '--dry-run', '--outdir', `.wrangler/dry-run/${name}`, ...args];
  console.log(`> wrangler ${argv.join(' ')}`);
  execFileSync('wrangler', argv, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  console.log(`  ok: ${name}`);
}
