/**
 * The import rules of src/ (`npm run check:imports`, part of `npm test`). Each folder has one owner (AGENTS.md):
 * - no import cycle, type-only imports included;
 * - `shared/` holds leaves: a file there imports nothing from src/;
 * - `record/` (the object's side of the RPC seam, and the one Worker-side stub) never reaches up into the middleware
 *   or the proxy;
 * - the proxy reaches the middleware through its index only (the factory, the options and settings, key lookups);
 * - the client and the conformance check stand alone (the check may use the client's pure rules).
 */
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: { path: '^src/' }, to: { circular: true } },
    { name: 'shared-are-leaves', severity: 'error', from: { path: '^src/shared/' }, to: { path: '^src/' } },
    { name: 'record-stays-down', severity: 'error', from: { path: '^src/record/' }, to: { path: '^src/(middleware|proxy|client|check)/' } },
    { name: 'middleware-below-proxy', severity: 'error', from: { path: '^src/middleware/' }, to: { path: '^src/(proxy|client|check)/' } },
    {
      name: 'proxy-through-middleware-index',
      severity: 'error',
      from: { path: '^src/proxy/' },
      to: { path: '^src/middleware/', pathNot: '^src/middleware/index[.]ts$' },
    },
    { name: 'client-stands-alone', severity: 'error', from: { path: '^src/client/' }, to: { path: '^src/', pathNot: '^src/client/' } },
    {
      name: 'check-stands-alone',
      severity: 'error',
      from: { path: '^src/check/' },
      to: { path: '^src/', pathNot: '^src/(check|client)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
