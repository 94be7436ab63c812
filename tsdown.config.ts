import { defineConfig } from 'tsdown';

// The package build, into dist/. The library: ESM modules and declaration files, one per package entry: `index`
// (the middleware, the object and the service entrypoint) and `client` (`idempotentFetch`, which imports nothing).
// `hono` (a peer dependency), `structured-headers` (a dependency) and the runtime's `cloudflare:workers` stay
// imports. The command: `check` (the `idempotency-check` bin), one file for Node >= 20 with only `node:` imports,
// built on its own so that it shares no chunk with the library.
export default defineConfig([
  {
    entry: { index: 'src/index.ts', client: 'src/client/index.ts' },
    format: 'esm',
    platform: 'neutral',
    target: 'es2023',
    dts: true,
    deps: { neverBundle: ['cloudflare:workers'] },
    clean: true,
  },
  {
    entry: { check: 'src/check/cli.ts' },
    format: 'esm',
    platform: 'node',
    target: 'node20',
    dts: false,
    fixedExtension: false,
    banner: '#!/usr/bin/env node',
    clean: false,
  },
]);
