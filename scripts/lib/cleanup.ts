/**
 * @module
 * Nothing a tool starts outlives it (the benchmark, the fault-schedule run): every process group and temp directory
 * is registered here and with the reaper; {@link Cleanup.run} stops and removes them on success, error, and (unless
 * told otherwise) SIGINT, SIGTERM or SIGHUP, and the reaper does it if the tool is killed outright (even by SIGKILL).
 */
import { rmSync } from 'node:fs';
import { endGroup, type GroupRegistry, startReaper } from './processes.ts';

/** Where process groups and temp directories are registered while they exist. */
export interface Registry extends GroupRegistry {
  /** A directory to remove at the end. */
  addDir(path: string): void;
}

export interface Cleanup extends Registry {
  /** Removes a directory now (and forgets it). */
  removeDirNow(path: string): void;
  /** Stops every group still registered, removes the directories, ends the reaper. Idempotent. */
  run(): Promise<void>;
  /** True once a signal asked the tool to stop. */
  interrupted(): boolean;
}

/**
 * @param signals - whether SIGINT, SIGTERM and SIGHUP run the cleanup and exit (not inside a test runner, which
 *   handles its own signals)
 */
export function installCleanup(signals = true): Cleanup {
  const reaper = startReaper();
  const groups = new Set<number>();
  const dirs = new Set<string>();
  let running: Promise<void> | undefined;
  let interrupted = false;
  const cleanup: Cleanup = {
    addGroup(pgid) {
      groups.add(pgid);
      reaper.addGroup(pgid);
    },
    removeGroup(pgid) {
      groups.delete(pgid);
      reaper.removeGroup(pgid);
    },
    addDir(path) {
      dirs.add(path);
      reaper.addDir(path);
    },
    removeDirNow(path) {
      rmSync(path, { recursive: true, force: true });
      dirs.delete(path);
      reaper.removeDir(path);
    },
    run: () =>
      (running ??= (async () => {
        await Promise.allSettled(
          [...groups].map(async (pgid) => {
            await endGroup(pgid, 5000);
            cleanup.removeGroup(pgid);
          }),
        );
        for (const dir of [...dirs]) cleanup.removeDirNow(dir);
        await reaper.close();
      })()),
    interrupted: () => interrupted,
  };
  for (const signal of signals ? (['SIGINT', 'SIGTERM', 'SIGHUP'] as const) : []) {
    process.on(signal, () => {
      interrupted = true;
      console.error(`\n${signal}: stopping every process started by this run...`);
      void cleanup.run().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  // Last resort, synchronous: nothing can be awaited in 'exit'.
  process.on('exit', () => {
    for (const pgid of groups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  return cleanup;
}
