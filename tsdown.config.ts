import { defineConfig } from 'tsdown';

// The package build: ESM modules and declaration files in dist/, one per package entry: `index` (the middleware,
// the object and the service entrypoint) and `client` (`idempotentFetch`, which imports nothing). `hono` (a peer
// dependency), `structured-headers` (a dependency) and the runtime's `cloudflare:workers` stay imports.
export default defineConfig({
  entry: { index: 'src/index.ts', client: 'src/client/index.ts' },
  format: 'esm',
  platform: 'neutral',
  target: 'es2023',
  dts: true,
  deps: { neverBundle: ['cloudflare:workers'] },
  clean: true,
});
