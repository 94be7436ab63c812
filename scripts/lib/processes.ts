/**
 * @module
 * Child processes and local servers for the benchmark (`bench/`) and the end-to-end tests (`test/e2e/`).
 *
 * - {@link spawnGroup} starts a child in its own process group with its output captured (only the tail
 *   is kept); {@link ProcessGroup.stop} and {@link ProcessGroup.kill} signal that whole group by its id and
 *   wait until no process of it is left.
 * - {@link waitFor}, {@link waitForOutput} and {@link waitForControl} wait for readiness, and fail early
 *   (with the child's output) when the child exits first.
 * - Every server binds port 0 and reports the port it got: {@link listen} for Node servers
 *   (`server.address()`), {@link startWranglerDev} for `wrangler dev --port 0 --inspector-port 0` (its
 *   "Ready on http://..." line), and `workerd serve --control-fd=3` through {@link waitForControl} (workerd
 *   writes `{"event":"listen","socket":NAME,"port":N}` and `{"event":"listen-inspector","port":N}` there).
 *   Nothing here picks a "free" port to bind later.
 * - {@link startReaper} starts a tiny detached process that SIGKILLs every registered group (and removes
 *   registered directories) if this process dies without cleaning up, even by SIGKILL.
 *
 * Linux only: group membership is read from `/proc`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
/** wrangler's CLI entry, run with the current Node (>= 22 when started through npm scripts). */
export const WRANGLER_JS = join(ROOT, 'node_modules/wrangler/bin/wrangler.js');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Told when a process group starts and when it is gone (see {@link startReaper}). */
export interface GroupRegistry {
  addGroup(pgid: number): void;
  removeGroup(pgid: number): void;
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Opens fd 3 as a pipe and collects the JSON lines the child writes there (`workerd --control-fd=3`). */
  controlFd?: boolean;
  /** How much output (stdout and stderr interleaved) to keep, from the end. @default 256 KiB */
  tailChars?: number;
  /** Where the group is registered while it runs. */
  registry?: GroupRegistry;
}

/** A child process leading its own process group. */
export interface ProcessGroup {
  readonly name: string;
  /** The child's pid, which is also the process group id. */
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the child itself (the group leader) has exited. */
  readonly exited: Promise<void>;
  /** JSON messages received on the control fd so far (with `controlFd`). */
  readonly control: readonly Record<string, unknown>[];
  /** The tail of the output so far. */
  output(): string;
  /** True until the group leader exits. */
  running(): boolean;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once no process of the group is left. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL to the group (a crash: nothing gets to clean up); resolves once no process of it is left. */
  kill(): Promise<void>;
}

/** Fields of `/proc/<pid>/stat` after the command name: [0] is the state, [1] ppid, [2] pgid. */
export function statFields(pid: number | string): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The live (not zombie) processes in process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (f !== undefined && Number(f[2]) === pgid && f[0] !== 'Z') out.push(Number(name));
  }
  return out;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // no process left in the group
  }
}

/** Waits until no live process is left in group `pgid`, at most `maxMs`; true if none is left. */
async function groupGone(pgid: number, maxMs: number): Promise<boolean> {
  const deadline = Date.now() + maxMs;
  while (groupMembers(pgid).length > 0) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/**
 * Ends process group `pgid`: SIGTERM and up to `graceMs` for it to exit (skipped when `graceMs` is
 * undefined), then SIGKILL to whatever is left (a leader's children, such as wrangler's workerd, are in
 * the group too); resolves once no live process of the group is left.
 */
export async function endGroup(pgid: number, graceMs?: number): Promise<void> {
  if (graceMs !== undefined && groupMembers(pgid).length > 0) {
    signalGroup(pgid, 'SIGTERM');
    await groupGone(pgid, graceMs);
  }
  signalGroup(pgid, 'SIGKILL');
  if (!(await groupGone(pgid, 10_000))) throw new Error(`processes ${groupMembers(pgid).join(', ')} of group ${pgid} outlived SIGKILL`);
}

/** Starts `command` in its own process group with its output captured; see {@link ProcessGroup}. */
export function spawnGroup(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): ProcessGroup {
  const { cwd, env, controlFd = false, tailChars = 256 * 1024, registry } = options;
  const child = spawn(command, args, {
    cwd,
    env,
    detached: true,
    stdio: controlFd ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
  });
  // A spawn failure (e.g. ENOENT) is also emitted as 'error'; without a listener it would crash us.
  child.once('error', () => {});
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = child.pid;
  registry?.addGroup(pid);
  // Only the tail: a Worker that logs every request would otherwise grow this without bound.
  let log = '';
  const append = (chunk: Buffer): void => {
    log += chunk.toString();
    if (log.length > tailChars) log = log.slice(-Math.floor(tailChars / 2));
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const control: Record<string, unknown>[] = [];
  if (controlFd) {
    let pending = '';
    const stream = child.stdio[3] as NodeJS.ReadableStream;
    stream.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
        const line = pending.slice(0, i).trim();
        pending = pending.slice(i + 1);
        if (line !== '') control.push(JSON.parse(line) as Record<string, unknown>);
      }
    });
    stream.on('error', () => {});
  }
  let leaderDone = false;
  const exited = new Promise<void>((r) => child.once('exit', () => ((leaderDone = true), r())));
  let stopping: Promise<void> | undefined;

  const end = async (graceMs: number | undefined): Promise<void> => {
    await endGroup(pid, graceMs);
    await Promise.race([exited, sleep(2000)]);
    registry?.removeGroup(pid);
  };
  return {
    name,
    pid,
    child,
    exited,
    control,
    output: () => log,
    running: () => !leaderDone,
    stop: (graceMs = 5000) => (stopping ??= end(graceMs)),
    kill: () => (stopping ??= end(undefined)),
  };
}

export interface WaitOptions {
  /** Give up after this long. @default 60 s */
  timeoutMs?: number;
  /** Poll interval. @default 50 ms */
  intervalMs?: number;
  /** Fail as soon as this group's leader exits (its output goes into the error). */
  group?: ProcessGroup;
}

/** Polls `probe` until it returns something other than `undefined`; throws after the timeout. */
export async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, options: WaitOptions = {}): Promise<T> {
  const { timeoutMs = 60_000, intervalMs = 50, group } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (group !== undefined && !group.running()) throw new Error(`${group.name} exited before ${what}:\n${group.output()}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${group ? `:\n${group.output()}` : ''}`);
    await sleep(intervalMs);
  }
}

/** Waits until the group's output matches `pattern`; returns the match. */
export function waitForOutput(group: ProcessGroup, pattern: RegExp, options: Omit<WaitOptions, 'group'> = {}): Promise<RegExpExecArray> {
  return waitFor(`${group.name} to print ${pattern}`, () => pattern.exec(group.output()) ?? undefined, { ...options, group });
}

/** Waits for a control message (`controlFd`) that satisfies `match`; returns it. */
export function waitForControl(
  group: ProcessGroup,
  match: (message: Record<string, unknown>) => boolean,
  options: Omit<WaitOptions, 'group'> = {},
): Promise<Record<string, unknown>> {
  return waitFor(`a control message from ${group.name}`, () => group.control.find(match), { ...options, group });
}

/** Starts `server` listening on `host`, port 0 unless given; resolves to the port it got. */
export function listen(server: Server, host = '127.0.0.1', port = 0): Promise<number> {
  return new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('the server has no TCP address'));
      else resolveListen(address.port);
    });
  });
}

export interface WranglerDevOptions {
  /** The wrangler config file. */
  config: string;
  /** `--persist-to`: the local state directory. */
  persistTo: string;
  /** `--var NAME:value` each. */
  vars?: Record<string, string>;
  /** Extra environment on top of this process's, `WRANGLER_SEND_METRICS=false` and `NO_COLOR=1`. */
  env?: Record<string, string>;
  /** More arguments for `wrangler dev`. */
  args?: readonly string[];
  cwd?: string;
  registry?: GroupRegistry;
  /** @default 90 s */
  timeoutMs?: number;
  name?: string;
}

export interface WranglerDev {
  readonly group: ProcessGroup;
  readonly url: string;
  readonly port: number;
  /** The full `wrangler dev` argument list (for reports). */
  readonly args: readonly string[];
}

/**
 * `wrangler dev --ip 127.0.0.1 --port 0 --inspector-port 0` in its own process group; resolves once its
 * "Ready on http://127.0.0.1:PORT" line names the port it bound. That line is logged at level `info`, so
 * `--log-level` must not be `warn`, `error` or `none` here.
 */
export async function startWranglerDev(options: WranglerDevOptions): Promise<WranglerDev> {
  const { config, persistTo, vars = {}, env = {}, cwd = ROOT, registry, timeoutMs = 90_000, name = 'wrangler dev' } = options;
  const args = ['dev', '--config', config, '--ip', '127.0.0.1', '--port', '0', '--inspector-port', '0', '--persist-to', persistTo];
  for (const [key, value] of Object.entries(vars)) args.push('--var', `${key}:${value}`);
  args.push(...(options.args ?? []));
  const group = spawnGroup(name, process.execPath, [WRANGLER_JS, ...args], {
    cwd,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', ...env },
    ...(registry ? { registry } : {}),
  });
  try {
    const [, url = '', port = ''] = await waitForOutput(group, /Ready on (http:\/\/127\.0\.0\.1:(\d+))/, { timeoutMs, intervalMs: 100 });
    return { group, url, port: Number(port), args };
  } catch (error) {
    await group.kill();
    throw error;
  }
}

export interface Reaper extends GroupRegistry {
  /** Registers a directory to remove if this process dies without cleaning up. */
  addDir(path: string): void;
  removeDir(path: string): void;
  /** Ends the reaper after a normal cleanup (everything registered has been unregistered by then). */
  close(): Promise<void>;
}

// The reaper reads "+pgid", "-pgid", "dPATH" and "rPATH" lines from its stdin. When the pipe closes
// (this process exited, however it died) it SIGKILLs every group still registered and removes the dirs.
const REAPER = `
const live = new Set(); const dirs = new Set(); let buf = '';
process.stdin.on('data', (d) => {
  buf += d; let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1); const arg = line.slice(1);
    if (line[0] === '+') live.add(Number(arg)); else if (line[0] === '-') live.delete(Number(arg));
    else if (line[0] === 'd') dirs.add(arg); else if (line[0] === 'r') dirs.delete(arg);
  }
});
process.stdin.on('end', () => {
  for (const g of live) { try { process.kill(-g, 'SIGKILL'); } catch {} }
  setTimeout(() => {
    for (const d of dirs) { try { require('node:fs').rmSync(d, { recursive: true, force: true }); } catch {} }
    process.exit(0);
  }, live.size > 0 ? 500 : 0);
});`;

/** Starts the reaper (see the module description). */
export function startReaper(): Reaper {
  const reaper = spawn(process.execPath, ['-e', REAPER], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  reaper.stdin.on('error', () => {});
  const exited = new Promise<void>((r) => reaper.once('exit', () => r()));
  const tell = (line: string): void => {
    if (reaper.stdin.writable) reaper.stdin.write(`${line}\n`);
  };
  return {
    addGroup: (pgid) => tell(`+${pgid}`),
    removeGroup: (pgid) => tell(`-${pgid}`),
    addDir: (path) => tell(`d${path}`),
    removeDir: (path) => tell(`r${path}`),
    async close() {
      reaper.stdin.end();
      await Promise.race([exited, sleep(3000)]);
      if (reaper.pid !== undefined) signalGroup(reaper.pid, 'SIGKILL');
    },
  };
}
