// `npm start`: the demo origin on 127.0.0.1:8788 and the proxy under `wrangler dev` in front of it.
// Extra arguments go to `wrangler dev`, so `npm start -- --var ORIGIN_URL:https://api.example.com`
// sends traffic to that origin instead (wrangler's --var overrides the [vars] default).
import { spawn } from 'node:child_process';
import { startDemoOrigin } from '../demo/origin.mjs';

const port = Number(process.env.DEMO_ORIGIN_PORT ?? 8788);
const origin = await startDemoOrigin(port).catch((error) => {
  console.error(`[demo origin] cannot listen on 127.0.0.1:${port} (${error.code}); set DEMO_ORIGIN_PORT or free the port.`);
  process.exit(1);
});
console.log(`[demo origin] ledger listening on http://127.0.0.1:${port}`);

const wrangler = spawn('wrangler', ['dev', ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
});
const stop = (signal) => wrangler.kill(signal);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
wrangler.on('exit', (code, signal) => {
  origin.close();
  process.exit(code ?? (signal ? 1 : 0));
});
