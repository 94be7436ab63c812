/**
 * docs/configuration.md is the settings table (`src/middleware/settings.ts`) rendered: every setting, one line each.
 * The test renders it and compares; `npm run docs:config` writes it after the table changed.
 */
import { describe, expect, it } from 'vitest';
import { SETTINGS, type Setting } from '../../src/middleware/settings';

const SOURCE: Record<NonNullable<Setting['source']>, string> = { var: 'variable', secret: 'secret', binding: 'binding' };

const code = (name: string | undefined): string => (name === undefined ? '' : `\`${name}\``);
const cell = (text: string): string => text.replaceAll('|', '\\|');

/** The reference, from the table. */
function render(settings: readonly Setting[]): string {
  const variables = settings.filter((setting) => setting.variable !== undefined);
  const fields = settings.filter((setting) => setting.field !== undefined);
  const options = settings.filter((setting) => setting.option !== undefined);
  return [
    '# Configuration',
    '',
    '<!-- Generated from src/middleware/settings.ts by `npm run docs:config`; test/node/configuration.test.ts fails when it is stale. -->',
    '',
    'Every setting of the layer is declared once, in `src/middleware/settings.ts`: the proxy reads its variables and',
    'route fields through that table, errors name settings through it, and this page is rendered from it. The rules of',
    "each value (ranges, defaults that adapt to what is set, settings that contradict each other) are the options'",
    'own: an invalid value answers `500 configuration_invalid` naming every setting involved, never a value.',
    '',
    '## The proxy',
    '',
    'Set variables under `[vars]` in `wrangler.toml` (or `wrangler dev --var NAME:value`), secrets with `wrangler secret',
    'put NAME` (locally in `.dev.vars`), and bindings in their own tables. Set only what you change. A name that looks',
    'like a setting but is not one (`ORGIN_URL`, `IDEMPOTENCY_TTL`) is refused, naming the closest setting.',
    '`npm run check:config -- --env production` checks an environment before it is deployed.',
    '',
    '| Name | Kind | Option | Default | Meaning |',
    '|---|---|---|---|---|',
    ...variables.map(
      (s) => `| ${code(s.variable)} | ${SOURCE[s.source ?? 'var']} | ${code(s.option)} | ${cell(s.default)} | ${cell(s.doc)} |`,
    ),
    '',
    '## Route fields',
    '',
    '`IDEMPOTENCY_ROUTES` is a TOML array of tables under `[vars]` (or a JSON string). The first route whose `pattern`',
    'and `methods` match a request decides; a request that matches none follows the variables. A route sets what its',
    'fields say and takes the rest from the variables (a route that sets `on_unknown` does not inherit',
    '`IDEMPOTENCY_RECONCILE_URL`); a key keeps the TTL of the route it was first stored under. A mistake names the',
    'field: `IDEMPOTENCY_ROUTES[1].ttl_seconds`.',
    '',
    '```toml',
    '[[vars.IDEMPOTENCY_ROUTES]]',
    'pattern = "/api/v1/payments/*"',
    'mode = "required"',
    'ttl_seconds = 2592000',
    'fingerprint = "json"',
    'ignore_fields = ["/client_timestamp"]',
    '```',
    '',
    '| Field | Option | Default | Meaning |',
    '|---|---|---|---|',
    ...fields.map((s) => `| ${code(s.field)} | ${code(s.option)} | ${cell(s.default)} | ${cell(s.doc)} |`),
    '',
    '## `idempotency()` options',
    '',
    'Options are checked once, when `idempotency()` is called: a `TypeError` (`OptionsError`) names every option',
    'involved. Each has JSDoc with its type and default; this is the index.',
    '',
    '| Option | Proxy | Route field | Default | Meaning |',
    '|---|---|---|---|---|',
    ...options.map((s) => `| ${code(s.option)} | ${code(s.variable)} | ${code(s.field)} | ${cell(s.default)} | ${cell(s.doc)} |`),
    '',
  ].join('\n');
}

describe('docs/configuration.md', () => {
  it('is the settings table, rendered', async () => {
    await expect(render(SETTINGS)).toMatchFileSnapshot('../../docs/configuration.md');
  });
});
