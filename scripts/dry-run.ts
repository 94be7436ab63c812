// `npm run check:deploy`: `wrangler deploy --dry-run` for the top level and every environment in wrangler.toml, and for
// the consumer example, so a configuration or bundling mistake fails here (and in CI) rather than at deploy time.
// The bundles go to .wrangler/dry-run/<name>/ (git-ignored).
import { execFileSync } from 'node:child_process';

const builds: [name: string, args: string[]][] = [
  ['default', []],
  ['staging', ['--env', 'staging']],
  ['production', ['--env', 'production']],
  ['examples-consumer', ['--config', 'examples/consumer/wrangler.toml']],
];
for (const [name, args] of builds) {
  const argv = ['deploy', '--dry-run', '--outdir', `.wrangler/dry-run/${name}`, ...args];
  console.log(`> wrangler ${argv.join(' ')}`);
  execFileSync('wrangler', argv, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  console.log(`  ok: ${name}`);
}
