// `npm run build`: `wrangler deploy --dry-run` for the top level and every environment in wrangler.toml,
// so a config or bundling mistake fails here (and in CI) rather than at deploy time.
import { execFileSync } from 'node:child_process';

for (const env of ['', 'staging', 'production']) {
  const args = ['deploy', '--dry-run', '--outdir', `dist/${env || 'default'}`, '--env', env];
  console.log(`> wrangler ${args.join(' ')}`);
  execFileSync('wrangler', args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  console.log(`  ok: dist/${env || 'default'}`);
}
