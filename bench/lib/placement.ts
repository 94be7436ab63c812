/**
 * @module
 * Where processes run: with `--pin` (the default on 2 or more CPUs), the measured runtimes get the last CPU to
 * themselves and the benchmark (the load generator) and the origin the others. On a small machine the load
 * generator otherwise shares the runtime's core, and the runtime's CPU time per request then depends on it.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

export interface Placement {
  /** The command prefix that starts a measured runtime on its CPU (empty when not pinning). */
  readonly runtime: readonly string[];
  /** The command prefix of the origin and other helpers. */
  readonly helpers: readonly string[];
  /** What the report says about it. */
  readonly description: string;
}

/** Pins this process (the load generator) and returns how to start the others. */
export function placement(pin: boolean): Placement {
  const cpus = availableParallelism();
  if (!pin || cpus < 2) return { runtime: [], helpers: [], description: 'processes not pinned to CPUs' };
  const last = String(cpus - 1);
  const rest = cpus === 2 ? '0' : `0-${cpus - 2}`;
  execFileSync('taskset', ['-a', '-p', '-c', rest, String(process.pid)], { stdio: 'ignore' });
  return {
    runtime: ['taskset', '-c', last],
    helpers: ['taskset', '-c', rest],
    description: `each Worker's runtime pinned to CPU ${last}, the load generator (autocannon, in the benchmark's process) and the origin to CPU ${rest}`,
  };
}
