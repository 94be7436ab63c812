/**
 * docs/guarantees.md is the map from each guarantee to the tests that prove it. A test renamed or removed
 * would silently leave a guarantee unproved: every test file and test name the map cites must exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const map = readFileSync('docs/guarantees.md', 'utf8');

/** Every `` `layer/file`: *title*, *title* `` citation of the map's tables, as [file, titles]. */
function citations(): [file: string, titles: string[]][] {
  const cited: [string, string[]][] = [];
  for (const row of map.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| Guarantee'))) {
    const proof = row.split(' | ').at(-1) ?? '';
    // `worker/contract`: *a*, *b*; `e2e/faults` (*c*) — the titles follow their file up to the next file.
    for (const part of proof.split(/(?=`(?:worker|e2e|node|check)\/)/)) {
      const file = /^`((?:worker|e2e|node|check)\/[\w.-]+)`/.exec(part)?.[1];
      if (file !== undefined) cited.push([file, [...part.matchAll(/\*([^*]+)\*/g)].map((match) => match[1]!)]);
    }
  }
  return cited;
}

describe('docs/guarantees.md', () => {
  const cited = citations();

  it('cites tests', () => {
    expect(cited.length).toBeGreaterThan(30);
  });

  it.each(cited.map(([file, titles]) => [file, titles] as const))('%s holds every test it is cited for', (file, titles) => {
    const path = `test/${file}.test.ts`;
    expect(existsSync(path), `${path} exists`).toBe(true);
    const source = readFileSync(path, 'utf8');
    const names = [...source.matchAll(/\b(?:describe|it|test)(?:\.\w+)*(?:\([^)]*\))?\(\s*(['"`])((?:\\.|(?!\1).)*)\1/g)].map((match) =>
      match[2]!.replace(/\\(.)/g, '$1'),
    );
    // A title is cited by a part of a test or describe name of that file, or, for a table of tests (`it.each`), by the
    // whole name with its placeholders filled in.
    const filled = (name: string) => new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/%[isdfjo]|\\\$\w+/g, '.+')}$`);
    for (const title of titles) {
      const found = names.some((name) => name.includes(title) || filled(name).test(title));
      expect(found, `${path}: a test named "…${title}…"`).toBe(true);
    }
  });
});
