/**
 * Issue #28: `npm run check:package` leaves the user's files alone. It used to run `attw --pack .`, which packs into the
 * repository root and deletes the tarball afterwards, and with it a tarball of the same name the user had packed there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const { name, version } = JSON.parse(readFileSync('package.json', 'utf8')) as { name: string; version: string };
const TARBALL = `${name}-${version}.tgz`;

describe('npm run check:package', () => {
  it('packs elsewhere: a tarball in the repository root survives, byte for byte', () => {
    // The user's own tarball when there is one; else one of ours, removed afterwards.
    const mine = !existsSync(TARBALL);
    if (mine) writeFileSync(TARBALL, 'a tarball the user packed\n');
    const before = readFileSync(TARBALL);
    try {
      execFileSync('npm', ['run', '-s', 'check:package'], { stdio: 'pipe' });
      expect(existsSync(TARBALL)).toBe(true);
      expect(readFileSync(TARBALL).equals(before)).toBe(true);
    } finally {
      if (mine) rmSync(TARBALL, { force: true });
    }
  }, 180_000);
});
