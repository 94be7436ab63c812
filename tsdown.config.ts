import { defineConfig } from 'tsdown';

// The package build: ESM modules and declaration files in dist/, one per package entry: `index` (the
// middleware and the object; `hono` (a peer dependency), `structured-headers` (a dependency) and the runtime's
// own `cloudflare:workers` stay imports) and `client` (`idempotentFetch`, which imports nothing).
export default defineConfig({
  entry: { index: 'src/index.ts', client: 'src/client/index.ts' },
  format: 'esm',
  platform: 'neutral',
  target: 'es2023',
  dts: true,
  deps: { neverBundle: ['cloudflare:workers'] },
  clean: true,
});
