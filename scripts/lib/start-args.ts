/**
 * @module
 * What `npm start` passes to `wrangler dev`. wrangler.toml points `ORIGIN_URL` at the demo origin's default port
 * (8788); a demo origin moved elsewhere with `DEMO_ORIGIN_PORT` must take `ORIGIN_URL` with it, or every request
 * through the proxy answers 502 (issue #28).
 */

/** The port of the demo origin: `DEMO_ORIGIN_PORT`, else 8788 (wrangler.toml's `ORIGIN_URL`). */
export function demoOriginPort(env: NodeJS.ProcessEnv): { readonly port: number; readonly moved: boolean } {
  const raw = env['DEMO_ORIGIN_PORT'];
  return raw === undefined || raw === '' ? { port: 8788, moved: false } : { port: Number(raw), moved: true };
}

/**
 * The arguments of `wrangler dev`: the user's (`npm start -- …`), and, when the demo origin was moved and the user names
 * no `ORIGIN_URL` of their own, `--var ORIGIN_URL:http://127.0.0.1:<port>` before them.
 *
 * @param argv - what the user passed after `npm start --`
 */
export function wranglerDevArgs(argv: readonly string[], demo: { readonly port: number; readonly moved: boolean }): string[] {
  const named = argv.some((arg) => /^(?:--var=)?ORIGIN_URL:/.test(arg));
  return demo.moved && !named ? ['dev', '--var', `ORIGIN_URL:http://127.0.0.1:${demo.port}`, ...argv] : ['dev', ...argv];
}

/** What `npm start` says when the demo origin's port is taken. */
export function portBusyMessage(port: number, code: string | undefined): string {
  return `[demo origin] cannot listen on 127.0.0.1:${port} (${code ?? 'error'}). Free the port, or run on another one with DEMO_ORIGIN_PORT=<port> npm start: ORIGIN_URL then points there too.`;
}
