/**
 * Issue #21: the package entry exports the documented API only. Read from the source (the entry imports the
 * runtime's `cloudflare:workers`, which plain Node cannot load); the built package is checked end to end in
 * `test/e2e/package.test.ts`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const source = readFileSync(resolve(import.meta.dirname, '../../src/index.ts'), 'utf8');

/** The names of `export { … } from` and `export type { … } from` statements, by kind. */
function exported(kind: 'value' | 'type'): string[] {
  const statement = kind === 'value' ? /^export \{([^}]*)\} from/gm : /^export type \{([^}]*)\} from/gm;
  return [...source.matchAll(statement)]
    .flatMap(([, names]) => names!.split(','))
    .map((name) => name.trim())
    .filter((name) => name !== '')
    .sort();
}

describe('the package entry', () => {
  it('exports the middleware, the object and the options error as values, nothing else', () => {
    expect(exported('value')).toEqual(['IdempotencyRecord', 'OptionsError', 'idempotency']);
  });

  it('exports the types a user writes: options, log lines, the object RPC types and the problem codes', () => {
    expect(exported('type')).toEqual(
      [
        'AttemptLimits',
        'AttemptReport',
        'AttemptSpec',
        'BeginResult',
        'HeaderList',
        'IdempotencyEnv',
        'IdempotencyMode',
        'IdempotencyOptions',
        'IdempotencyProblem',
        'IdempotencyVariables',
        'OptionName',
        'OriginRequest',
        'Outcome',
        'ProblemCode',
        'PurgeResult',
        'RecordInfo',
        'Reporter',
        'RequestLog',
        'RequestOutcome',
        'RetryOptions',
        'Settled',
        'StoredResponse',
        'StreamedResponse',
      ].sort(),
    );
  });

  it('has no other kind of export (no `export *`, no local declarations)', () => {
    expect(source.match(/^export (?!\{|type \{)/gm)).toBeNull();
  });
});
