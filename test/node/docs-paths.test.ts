/**
 * The docs name code that exists: every `src/...` path in README.md and docs/, and every function, class or method the
 * life of a keyed request (docs/how-it-works.md) walks through, is in src/. A move or a rename without its docs fails
 * here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const DOCS = ['README.md', 'AGENTS.md', ...readdirSync(join(ROOT, 'docs')).map((name) => `docs/${name}`)];

/** Every source file's text, joined. */
function sources(dir = join(ROOT, 'src')): string {
  return readdirSync(dir)
    .map((name) => join(dir, name))
    .map((path) => (statSync(path).isDirectory() ? sources(path) : readFileSync(path, 'utf8')))
    .join('\n');
}

describe('the docs name code that exists', () => {
  it.each(DOCS)('%s names only src/ paths that exist', (doc) => {
    const text = readFileSync(join(ROOT, doc), 'utf8');
    const paths = [...new Set([...text.matchAll(/\bsrc\/[\w/.-]+\.ts\b/g)].map(([path]) => path))];
    const missing = paths.filter((path) => {
      try {
        return !statSync(join(ROOT, path)).isFile();
      } catch {
        return true;
      }
    });
    expect(missing).toEqual([]);
  });

  it('docs/how-it-works.md walks through functions, classes and methods that exist', () => {
    const text = readFileSync(join(ROOT, 'docs/how-it-works.md'), 'utf8');
    const life = text.slice(text.indexOf('## The life of a keyed request'));
    // Code names in backticks: `name`, `#private`, `Class.method` (not paths, headers, settings or values).
    const names = [...life.matchAll(/`(#?[a-z][A-Za-z0-9]*|[A-Z][A-Za-z0-9]*\.#?[a-z][A-Za-z0-9]*|[A-Z][a-z]+[A-Z][A-Za-z0-9]*)`/g)].map(
      ([, name]) => name!,
    );
    expect(names.length).toBeGreaterThan(30);
    const code = sources();
    const missing = [...new Set(names)].filter(
      (name) => !name.split('.').every((part) => new RegExp(`(?<![\\w#])${part.replace('#', '#')}\\b`).test(code)),
    );
    expect(missing).toEqual([]);
  });
});
