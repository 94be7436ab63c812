/**
 * Issue #28: the package's `engines` is true of what it installs. It declares Node >= 20 (the client entry runs there),
 * so no dependency it installs may ask for more: canonicalize 5 declared Node >= 22, and npm warned (or, with
 * engine-strict, refused) on Node 20.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

interface Manifest {
  engines?: { node?: string };
  dependencies?: Record<string, string>;
}
const read = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Manifest;

/** The lowest major version of Node a range of `>=N` bounds admits, or `undefined` for a range of another form. */
const lowest = (range: string): number | undefined => {
  const bounds = range.split('||').map((part) => /^\s*>=\s*v?(\d+)(?:\.\d+){0,2}\s*$/.exec(part)?.[1]);
  return bounds.every((bound) => bound !== undefined) ? Math.min(...bounds.map(Number)) : undefined;
};

describe('engines', () => {
  const own = read('package.json');
  const floor = lowest(own.engines?.node ?? '');

  it('of the package is a >= bound', () => {
    expect(floor).toBe(20);
  });

  it.each(Object.keys(own.dependencies ?? {}))('of %s admit the package’s own', (name) => {
    const range = read(`node_modules/${name}/package.json`).engines?.node;
    if (range === undefined) return;
    expect(lowest(range), `${name} declares node ${range}`).toBeLessThanOrEqual(floor!);
  });
});
