/**
 * @module
 * Planted bugs that prove the checker: each is one textual change to a copy of the source (`src/` and the wrangler
 * config copied into a temporary directory, `node_modules` linked), built and run under the same fault schedule as the
 * real proxy. The worktree's own files are never touched. docs/mutations.md lists what caught each.
 */
import { copyFileSync, cpSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Registry } from '../lib/cleanup.ts';
import { ROOT } from '../lib/workers.ts';

export interface Mutant {
  readonly name: string;
  /** The bug, in a sentence. */
  readonly summary: string;
  /** The invariant expected to catch it. */
  readonly caughtBy: string;
  /** A file under the project root. */
  readonly file: string;
  /** Each `from` must occur exactly once in the file. */
  readonly edits: readonly { readonly from: string; readonly to: string }[];
}

export const MUTANTS: readonly Mutant[] = [
  {
    name: 'inflight-after-origin',
    summary: 'the in-flight record is written once the origin has answered, not before the call',
    caughtBy: 'once',
    file: 'src/record/record.ts',
    edits: [
      { from: '    this.#store.begin({\n', to: '    const begin = () => this.#store.begin({\n' },
      {
        from: '    const { answer, settled } = run();\n',
        to: '    const { answer, settled: ran } = run();\n    const settled = ran.then((result) => (begin(), result));\n',
      },
    ],
  },
  {
    name: 'store-5xx',
    summary: 'a 5xx answer counts as a result: it is stored and replayed',
    caughtBy: 'not-stored',
    file: 'src/shared/status.ts',
    edits: [{ from: 'status < 500 && !NOT_RESULTS.has(status)', to: 'status < 600 && !NOT_RESULTS.has(status)' }],
  },
  {
    name: 'unscoped-record-name',
    summary: "the scope is left out of the record's name: credentials share keys",
    caughtBy: 'scope',
    file: 'src/record/stub.ts',
    edits: [
      {
        from: '[namespace, kind, scopeHash, key] : [namespace, kind, scopeHash, key, host]',
        to: '[namespace, kind, key] : [namespace, kind, key, host]',
      },
    ],
  },
  {
    name: 'purge-keeps-record',
    summary: 'a purge answers 204 without deleting the record',
    caughtBy: 'purge',
    file: 'src/record/record.ts',
    edits: [{ from: '    await this.#store.clear();\n    if (running !== undefined) this.#attempt = undefined;\n', to: '' }],
  },
  {
    name: 'purge-keeps-cache',
    summary: "a purge does not forget the isolate's cached replay of the key",
    caughtBy: 'purge',
    file: 'src/middleware/lookup.ts',
    edits: [{ from: '      isolateReplays.delete(name);\n', to: '' }],
  },
  {
    name: 'expiry-by-alarm-only',
    summary: 'the read path no longer checks expiry: only the alarm expires a record',
    caughtBy: 'expiry',
    file: 'src/record/decide.ts',
    edits: [{ from: '    store.expire(record);\n    record = undefined;\n', to: '' }],
  },
  {
    name: 'alarm-keeps-expired',
    summary: "the expiry alarm deletes only an empty object's storage: expired records stay on disk",
    caughtBy: 'the storage left on disk (records past their expiry)',
    file: 'src/record/record.ts',
    edits: [
      {
        from: '      return;\n    }\n    await this.#store.clear();\n  }\n',
        to: '      return;\n    }\n    if (record === undefined) await this.#store.clear();\n  }\n',
      },
    ],
  },
  {
    name: 'lost-frees-key',
    summary: 'a result whose body broke off frees the key instead of holding it as lost',
    caughtBy: 'once',
    file: 'src/record/storage.ts',
    edits: [
      {
        from: "    else if (settled.kind === 'response_lost' && isResultStatus(settled.status)) this.lost(attempt, settled.status);\n",
        to: '',
      },
    ],
  },
  {
    name: 'hold-runs-again',
    summary: 'under on_unknown = "hold" a key held as unknown is taken over by the next request',
    caughtBy: 'once',
    file: 'src/record/decide.ts',
    edits: [{ from: "      if (spec.onUnknown === 'hold') return { outcome: { kind: 'outcome_unknown' } };\n", to: '' }],
  },
  {
    name: 'broken-body-stored',
    summary: 'an origin body that breaks off counts as ended: the truncated answer is sent as whole and stored',
    caughtBy: 'bytes',
    file: 'src/record/live.ts',
    edits: [{ from: "      this.#state = 'broken';\n      this.#wake();\n      return { kind: 'broken' };\n", to: '' }],
  },
  {
    name: 'answer-not-written',
    summary: 'a small answer is reported stored without being written: the record stays in flight',
    caughtBy: 'kept',
    file: 'src/record/storage.ts',
    edits: [{ from: '      this.#kv.put(RECORD_KEY, stored);\n      return true;\n', to: '      return true;\n' }],
  },
  {
    name: 'join-unmarked',
    summary: 'a duplicate that joins a live answer is not marked Idempotent-Replay',
    caughtBy: 'marked',
    file: 'src/record/attempt.ts',
    edits: [{ from: "    kind: 'response',\n    replayed: !first,\n", to: "    kind: 'response',\n    replayed: false,\n" }],
  },
  {
    name: 'expires-on-5xx',
    summary: 'the first answer of a 5xx carries Idempotency-Expires as if it were stored',
    caughtBy: 'expires-header',
    file: 'src/record/attempt.ts',
    edits: [
      {
        from: '  return holds ? { ...outcome, storedUntil: attempt.expiresAt } : outcome;',
        to: '  return { ...outcome, storedUntil: attempt.expiresAt };',
      },
    ],
  },
  {
    name: 'conflict-status',
    summary: 'a reused key is answered 400 instead of its configured 409',
    caughtBy: 'codes',
    file: 'src/shared/problem.ts',
    edits: [{ from: "code === 'idempotency_key_reused' ? format.conflictStatus :", to: "code === 'idempotency_key_reused' ? 400 :" }],
  },
];

export function mutantNamed(name: string): Mutant {
  const mutant = MUTANTS.find((m) => m.name === name);
  if (mutant === undefined) throw new Error(`no planted bug named ${name}; --list-mutants lists them`);
  return mutant;
}

/**
 * `text` with the mutant's edits applied.
 *
 * @throws when an edit's text does not occur exactly once: the source moved on, and the planted bug must follow it
 */
export function applyMutant(text: string, mutant: Mutant): string {
  let out = text;
  for (const { from, to } of mutant.edits) {
    const count = out.split(from).length - 1;
    if (count !== 1)
      throw new Error(`planted bug ${mutant.name}: ${JSON.stringify(from)} occurs ${count} times in ${mutant.file}, not once`);
    out = out.replace(from, () => to);
  }
  return out;
}

/** Copies the project's source and config into a temporary directory and plants `mutant` there; returns the config path. */
export function plantedCopy(mutant: Mutant, registry: Registry): string {
  const dir = mkdtempSync(join(tmpdir(), `idem-mutant-${mutant.name}-`));
  registry.addDir(dir);
  cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
  for (const file of ['wrangler.toml', 'tsconfig.json', 'package.json']) copyFileSync(join(ROOT, file), join(dir, file));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  const path = join(dir, mutant.file);
  writeFileSync(path, applyMutant(readFileSync(path, 'utf8'), mutant));
  return join(dir, 'wrangler.toml');
}
