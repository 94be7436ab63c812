/**
 * @module
 * What the benchmark reads from `/proc` and the file system: CPU time, memory, start time, command line
 * and listening ports of a process, the descendants of a process, and disk usage of a directory.
 */
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { statFields } from '../../scripts/lib/processes.ts';

/** Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`. */
export const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Start time since boot, in clock ticks: identifies a process across pid reuse. */
export const startTime = (pid: number): string | undefined => statFields(pid)?.[19];

/** utime + stime in clock ticks (all threads of the process); NaN once it is gone. */
export function cpuTicks(pid: number): number {
  const f = statFields(pid);
  return f === undefined ? Number.NaN : Number(f[11]) + Number(f[12]);
}

const readText = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

export const comm = (pid: number): string => readText(`/proc/${pid}/comm`).trim();
export const cmdline = (pid: number): string => readText(`/proc/${pid}/cmdline`).split('\0').join(' ');

/** VmRSS in bytes (NaN when unknown). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readText(`/proc/${pid}/status`));
  return m?.[1] ? Number(m[1]) * 1024 : Number.NaN;
}

/** Every descendant of `root` (ppid chains over /proc). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = Number(statFields(name)?.[1] ?? -1);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
  }
  const out: number[] = [];
  const queue = [root];
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    for (const child of children.get(pid) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/**
 * The TCP ports `pid` is listening on (its socket inodes matched against /proc/net/tcp and tcp6). Reads
 * what a process has bound; used where a tool binds port 0 but does not print the port (wrangler dev's
 * inspector).
 */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m?.[1]) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return [];
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readText(table).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address:port (hex), f[3] state (0A = LISTEN), f[9] inode
      if (f[3] === '0A' && f[9] !== undefined && inodes.has(f[9])) ports.add(Number.parseInt(f[1]?.split(':')[1] ?? '', 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/**
 * Calls `visit(path, stat)` for every file below `path` (or `path` itself), in sorted order, skipping
 * `.wrangler` and `node_modules` folders and anything that vanished meanwhile.
 */
export function walkFiles(path: string, visit: (path: string, stat: Stats) => void): void {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isDirectory()) return visit(path, st);
  let names: string[];
  try {
    names = readdirSync(path).sort();
  } catch {
    return;
  }
  for (const name of names) if (name !== '.wrangler' && name !== 'node_modules') walkFiles(join(path, name), visit);
}

export interface DiskUsage {
  bytes: number;
  allocated: number;
  files: number;
  sqliteFiles: number;
  sqliteBytes: number;
  walFiles: number;
}

/** Size of everything below `dir`: apparent bytes, allocated bytes, files, SQLite files. */
export function diskUsage(dir: string): DiskUsage {
  const usage: DiskUsage = { bytes: 0, allocated: 0, files: 0, sqliteFiles: 0, sqliteBytes: 0, walFiles: 0 };
  walkFiles(dir, (path, st) => {
    usage.files++;
    usage.bytes += st.size;
    usage.allocated += st.blocks * 512;
    if (path.endsWith('.sqlite') && !path.endsWith('/metadata.sqlite')) {
      usage.sqliteFiles++;
      usage.sqliteBytes += st.size;
    } else if (path.endsWith('-wal')) usage.walFiles++;
  });
  return usage;
}
