// `npm run check:package`: publint, then attw on the tarball `npm pack` makes, packed into a directory of its own. (`attw
// --pack .` packs into the repository root and deletes the tarball afterwards: a tarball of the same name that the user
// packed there was lost with it.)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = (command: string, args: string[]): string =>
  execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

console.log(run('publint', ['--strict']));
const dir = mkdtempSync(join(tmpdir(), 'idem-pack-'));
try {
  // `prepack` builds dist/ first. The directory is new, so the one file in it is the tarball.
  run('npm', ['pack', '--pack-destination', dir]);
  const [tarball] = readdirSync(dir);
  console.log(run('attw', [join(dir, tarball!), '--profile', 'esm-only']));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
