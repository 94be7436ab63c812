/**
 * @module
 * A headless Chromium from the lock file, for the browser test: the npm package `@sparticuz/chromium` ships the binary
 * brotli-compressed, and the NSS libraries it needs at load time in `bin/al2023.tar.br` (the package itself unpacks
 * those only where it detects Amazon Linux). Both are unpacked here, into a directory of this run's own, and the
 * browser process alone gets that directory first on its `LD_LIBRARY_PATH`: nothing from apt, no Lambda variables set
 * for this process, nothing shared with another run.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createBrotliDecompress } from 'node:zlib';

/** How to start the unpacked browser. */
export interface UnpackedChromium {
  /** The directory it was unpacked into (remove it when done). */
  readonly dir: string;
  readonly executablePath: string;
  /** The browser process's environment: this one's, with the unpacked NSS first on `LD_LIBRARY_PATH`. */
  readonly env: Record<string, string | undefined>;
}

/** Decompresses a brotli file. */
const unbrotli = (from: string, to: string, mode?: number) =>
  pipeline(createReadStream(from), createBrotliDecompress(), createWriteStream(to, mode === undefined ? {} : { mode }));

/** Unpacks the package's Chromium and its NSS into a new directory under the system temp dir. */
export async function unpackChromium(): Promise<UnpackedChromium> {
  // The package's entry is build/index.js; its compressed files are in bin/ beside build/.
  const bin = join(dirname(dirname(fileURLToPath(import.meta.resolve('@sparticuz/chromium')))), 'bin');
  const dir = mkdtempSync(join(tmpdir(), 'idem-chromium-'));
  const executablePath = join(dir, 'chromium');
  const libraries = join(dir, 'al2023.tar');
  await Promise.all([unbrotli(join(bin, 'chromium.br'), executablePath, 0o700), unbrotli(join(bin, 'al2023.tar.br'), libraries)]);
  // lib/libnss3.so, lib/libnspr4.so, ...
  execFileSync('tar', ['-xf', libraries, '-C', dir]);
  const inherited = process.env['LD_LIBRARY_PATH'];
  const path = inherited === undefined || inherited === '' ? join(dir, 'lib') : `${join(dir, 'lib')}:${inherited}`;
  return { dir, executablePath, env: { ...process.env, LD_LIBRARY_PATH: path } };
}
