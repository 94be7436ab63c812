import { defineConfig } from 'tsdown';

// The package build: one ESM module and one declaration file in dist/, from the package entry.
// `hono` (a peer dependency), `structured-headers` (a dependency) and the runtime's own
// `cloudflare:workers` stay imports.
export default defineConfig({
  entry: ['src/index.ts'],
  format: 'esm',
  platform: 'neutral',
  target: 'es2023',
  dts: true,
  deps: { neverBundle: ['cloudflare:workers'] },
  clean: true,
});
