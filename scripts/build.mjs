// `npm run build`: `wrangler deploy --dry-run` for the top level and every environment in wrangler.toml
// (and the consumer example),
// so a config or bundling mistake fails here (and in CI) rather than at deploy time.
import { execFileSync } from 'node:child_process';

const builds = [
  ...['', 'staging', 'production'].map((env) => ['--outdir', `dist/${env || 'default'}`, '--env', env]),
  ['--outdir', 'dist/examples-consumer', '--config', 'examples/consumer/wrangler.toml'],
];
for (const build of builds) {
  const args = ['deploy', '--dry-run', ...build];
  console.log(`> wrangler ${args.join(' ')}`);
  execFileSync('wrangler', args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  console.log(`  ok: ${build[1]}`);
}
