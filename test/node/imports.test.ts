/**
 * The import rules of src/ (`.dependency-cruiser.cjs`) hold, and the check that keeps them is real: run on a copy of
 * src/ with a cycle, a shared file importing from record/, and the proxy reaching past the middleware's index, it fails
 * naming each rule.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const DEPCRUISE = join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruiser.mjs');

/** Runs the check in `dir` (which holds src/, the config and tsconfig.json); its exit code and output. */
function check(dir: string): { code: number; output: string } {
  try {
    const output = execFileSync(process.execPath, [DEPCRUISE, 'src', '--config', '.dependency-cruiser.cjs'], {
      cwd: dir,
      encoding: 'utf8',
    });
    return { code: 0, output };
  } catch (error) {
    const { status, stdout } = error as { status: number; stdout: string };
    return { code: status, output: stdout };
  }
}

const copies: string[] = [];
afterAll(() => copies.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

describe('the import rules of src/', () => {
  it('hold: no cycle, shared/ files are leaves, the proxy reaches the middleware through its index', () => {
    const { code, output } = check(ROOT);
    expect(output).toContain('no dependency violations found');
    expect(code).toBe(0);
  });

  it('fail on a cycle, a shared file importing from src/, and the proxy reaching past the middleware index', () => {
    const dir = mkdtempSync(join(tmpdir(), 'idem-imports-'));
    copies.push(dir);
    for (const path of ['src', '.dependency-cruiser.cjs', 'tsconfig.json', 'worker-configuration.d.ts'])
      cpSync(join(ROOT, path), join(dir, path), { recursive: true });
    appendFileSync(join(dir, 'src/record/storage.ts'), "\nimport type { Keyring } from './seal';\nexport type Planted = Keyring;\n");
    appendFileSync(join(dir, 'src/shared/timer.ts'), "\nimport type { Outcome } from '../record/api';\nexport type Planted = Outcome;\n");
    appendFileSync(
      join(dir, 'src/proxy/forward.ts'),
      "\nimport type { KeyInfo } from '../middleware/lookup';\nexport type Planted = KeyInfo;\n",
    );
    const { code, output } = check(dir);
    expect(code).not.toBe(0);
    expect(output).toMatch(/no-cycles: src\/record\/(seal|storage)\.ts/);
    expect(output).toContain('shared-are-leaves: src/shared/timer.ts → src/record/api.ts');
    expect(output).toContain('proxy-through-middleware-index: src/proxy/forward.ts → src/middleware/lookup.ts');
  });
});
