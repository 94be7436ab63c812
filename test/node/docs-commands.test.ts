/**
 * Issue #28: the docs' command for a client's scope hash prints what the admin API takes. `sha256sum` alone prints
 * `<hash>  -`, which `Idempotency-Scope` refuses; the docs pipe it through `cut`. Each such command in the README and
 * the operations guide is run here, as it is written.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** Every `printf '%s' '<credential>' | sha256sum …` pipeline of a doc, with its line breaks joined. */
function hashCommands(path: string): { credential: string; command: string }[] {
  const text = readFileSync(path, 'utf8');
  return [...text.matchAll(/printf '%s' '([^']*)'\s*\|\s*sha256sum[^`)\n]*(?:\n[^`)\n]*)?/g)].map(([command, credential]) => ({
    credential: credential!,
    command: command.replace(/\s+/g, ' ').trim(),
  }));
}

describe.each(['README.md', 'docs/operations.md'])('%s', (path) => {
  const commands = hashCommands(path);

  it('has the scope hash command', () => {
    expect(commands.length).toBeGreaterThan(0);
  });

  it.each(commands)('`$command` prints the 64 lower-case hex characters alone', ({ credential, command }) => {
    const printed = execFileSync('bash', ['-c', command], { encoding: 'utf8' }).replace(/\n$/, '');
    expect(printed).toBe(createHash('sha256').update(credential).digest('hex'));
  });
});
