/**
 * @module
 * The benchmark origin (`bench/origin.ts`) as a child process, and a client for its call counters.
 */
import { join } from 'node:path';
import { sleep, spawnGroup, waitForOutput } from '../../scripts/lib/processes.ts';
import type { Cleanup } from '../../scripts/lib/cleanup.ts';
import { BENCH, ROOT } from './workers.ts';

export interface Origin {
  url: string;
  pid: number;
  /** `GET /__calls<query>` (see bench/origin.ts). */
  calls<T = { total: number }>(query?: string): Promise<T>;
  /** Per-key counts of every key starting with `prefix`. */
  keys(prefix: string): Promise<Record<string, number>>;
  /** Calls that carried Idempotency-Key `key`. */
  count(key: string): Promise<number>;
  /** Waits until the call count has not moved for `quietMs` (requests still in flight land); returns it. */
  settle(quietMs?: number, maxMs?: number): Promise<number>;
}

export async function startOrigin(delayMs: number, cleanup: Cleanup, prefix: readonly string[] = []): Promise<Origin> {
  const [command, ...prefixArgs] = [...prefix, process.execPath];
  const group = spawnGroup('origin', command!, [...prefixArgs, join(BENCH, 'origin.ts'), '--delay-ms', String(delayMs)], {
    cwd: ROOT,
    registry: cleanup,
  });
  const [line = ''] = await waitForOutput(group, /\{"port":\d+\}/, { timeoutMs: 10_000 });
  const url = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`;
  const calls = async <T>(query = ''): Promise<T> => (await (await fetch(`${url}/__calls${query}`)).json()) as T;
  return {
    url,
    pid: group.pid,
    calls,
    keys: async (prefix) => (await calls<{ keys: Record<string, number> }>(`?prefix=${encodeURIComponent(prefix)}`)).keys,
    count: async (key) => (await calls<{ count: number }>(`?key=${encodeURIComponent(key)}`)).count,
    async settle(quietMs = 300, maxMs = 10_000) {
      const deadline = Date.now() + maxMs;
      let last = (await calls<{ total: number }>()).total;
      let since = Date.now();
      while (Date.now() - since < quietMs && Date.now() < deadline) {
        await sleep(50);
        const now = (await calls<{ total: number }>()).total;
        if (now !== last) {
          last = now;
          since = Date.now();
        }
      }
      return last;
    },
  };
}
