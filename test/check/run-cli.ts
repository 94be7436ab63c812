/**
 * @module
 * Runs `idempotency-check` the way a user does, as its own process (the sources, through Node's type stripping), and
 * a TCP relay for origin mode: the layer under test is started first with its upstream at the relay, which passes
 * every connection on to the test origin the command serves once it has said where (`--origin-port 0`). No port is
 * picked in advance.
 */
import { spawn } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { listen } from '../../scripts/lib/processes.ts';

const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = resolve(ROOT, 'src/check/cli.ts');

export interface CheckResult {
  readonly name: string;
  readonly status: 'pass' | 'fail' | 'skip';
  readonly detail: string;
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The `--json` report, when the run printed one. */
  readonly json: { checks: CheckResult[]; passed: number; failed: number; skipped: number } | null;
}

/** The status of every check by name, e.g. `{ replay: 'pass', ... }`. */
export const statuses = (run: CliRun): Record<string, string> =>
  Object.fromEntries((run.json?.checks ?? []).map((check) => [check.name, check.status]));

/** The names of the checks with `status`. */
export const named = (run: CliRun, status: CheckResult['status']): string[] =>
  (run.json?.checks ?? []).filter((check) => check.status === status).map((check) => check.name);

/**
 * Runs the command with `args`; `onOrigin` gets the test origin's URL as soon as the command prints it (origin
 * mode). `command` runs another build of it (`[node, dist/check.js]`).
 */
export function runCli(
  args: readonly string[],
  options: { onOrigin?: (url: string) => void; command?: readonly string[] } = {},
): Promise<CliRun> {
  const [file, ...rest] = options.command ?? [process.execPath, CLI];
  const child = spawn(file!, [...rest, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let told = false;
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    const found = /test origin listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
    if (found !== null && !told) {
      told = true;
      options.onOrigin?.(found[1]!);
    }
  });
  return new Promise((resolveRun) => {
    child.once('close', (code) => {
      let json: CliRun['json'] = null;
      try {
        json = JSON.parse(stdout) as CliRun['json'];
      } catch {
        // a table, or nothing
      }
      resolveRun({ code, stdout, stderr, json });
    });
  });
}

export interface Relay {
  readonly url: string;
  /** Where every connection, held until now and later, goes from now on (`http://127.0.0.1:PORT`). */
  target(url: string): void;
  close(): Promise<void>;
}

/** A TCP relay on a port of its own, to a target named later; a connection closed on one side is closed on the other. */
export async function startRelay(): Promise<Relay> {
  let setTarget!: (port: number) => void;
  const target = new Promise<number>((resolveTarget) => (setTarget = resolveTarget));
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    // Paused until piped: what the client sends meanwhile waits in its buffer.
    void target.then((port) => {
      if (client.destroyed) return;
      const upstream = connect(port, '127.0.0.1');
      sockets.add(upstream);
      const end = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(upstream);
      };
      upstream.on('error', end).once('close', end);
      client.once('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    target: (url) => setTarget(Number(new URL(url).port)),
    close: () =>
      new Promise<void>((resolveClose) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolveClose());
      }),
  };
}
