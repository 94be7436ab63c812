/**
 * @module
 * `npm start`: the demo origin on 127.0.0.1:8788 (or `DEMO_ORIGIN_PORT`, and then `ORIGIN_URL` points there too) and
 * the proxy under `wrangler dev` in front of it. Extra arguments go to `wrangler dev`, so
 * `npm start -- --var ORIGIN_URL:https://api.example.com` sends traffic to that origin instead (wrangler's --var
 * overrides the [vars] default).
 */
import { spawn } from 'node:child_process';
import { startDemoOrigin } from '../demo/origin.ts';
import { WRANGLER_JS } from './lib/processes.ts';
import { demoOriginPort, portBusyMessage, wranglerDevArgs } from './lib/start-args.ts';

const demo = demoOriginPort(process.env);
const origin = await startDemoOrigin(demo.port).catch((error: NodeJS.ErrnoException) => {
  console.error(portBusyMessage(demo.port, error.code));
  process.exit(1);
});
console.log(`[demo origin] ledger listening on http://127.0.0.1:${demo.port}`);

// Interactive: wrangler dev keeps the terminal (its keyboard shortcuts work), so it is not detached.
const wrangler = spawn(process.execPath, [WRANGLER_JS, ...wranglerDevArgs(process.argv.slice(2), demo)], {
  stdio: 'inherit',
  env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
});
const stop = (signal: NodeJS.Signals): void => void wrangler.kill(signal);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
wrangler.on('exit', (code, signal) => {
  origin.close();
  process.exit(code ?? (signal ? 1 : 0));
});
