/**
 * @module
 * A running Worker to send load to ({@link Target}), under either runtime: the bare `workerd` (default) or
 * `wrangler dev`. Each target knows which processes are its own, for CPU per request and memory.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWranglerDev, waitFor } from '../../scripts/lib/processes.ts';
import type { Cleanup } from '../../scripts/lib/cleanup.ts';
import type { Runtime } from './cli.ts';
import { comm, descendants, listeningPorts, startTime } from './proc.ts';
import { startWorkerd } from '../../scripts/lib/workerd.ts';
import { buildWorker, type BuiltWorker, readWorkerConfig, ROOT, type WorkerConfig, type WorkerId } from './workers.ts';

export interface Target {
  /** e.g. `product`, `product-first-r2`. */
  label: string;
  worker: WorkerId;
  url: string;
  /** The process(es) that run the Worker and its Durable Objects: its own CPU time. */
  runtime: number[];
  /** Every workerd process of the target (with wrangler dev: also its entry proxy). */
  workerd: number[];
  /** wrangler dev's Node processes (none on the bare runtime). */
  node: number[];
  /** Where the Durable Objects' files are. */
  storageDir: string;
  /** A DevTools WebSocket URL for the Worker's isolate (when started with `inspector`). */
  inspectorUrl: string | undefined;
  /** How the target was started (for the report). */
  command: string;
  /** Start time of each process: a restart mid-run shows as a change. */
  startTimes: Map<number, string | undefined>;
  /** The tail of the target's output (for error messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  vars?: Record<string, unknown>;
  inspector?: boolean;
}

/** Starts targets of one runtime; builds (or reads) each Worker once. */
export interface Runner {
  runtime: Runtime;
  configs: Map<WorkerId, WorkerConfig>;
  start(worker: WorkerId, label: string, options?: StartOptions): Promise<Target>;
  /** Serves `worker` from a bundle built elsewhere (the bare runtime only): the product of `--baseline-ref`. */
  provide(worker: WorkerId, built: BuiltWorker): void;
}

const startTimesOf = (pids: number[]): Map<number, string | undefined> => new Map(pids.map((pid) => [pid, startTime(pid)]));

export function createRunner(
  runtime: Runtime,
  originUrl: string,
  cleanup: Cleanup,
  wranglerEnv: Record<string, string>,
  runtimePrefix: readonly string[] = [],
): Runner {
  const configs = new Map<WorkerId, WorkerConfig>();
  const builds = new Map<WorkerId, Promise<BuiltWorker>>();
  const configOf = (id: WorkerId): WorkerConfig => {
    let config = configs.get(id);
    if (config === undefined) configs.set(id, (config = readWorkerConfig(id)));
    return config;
  };
  const newDir = (label: string): string => {
    const dir = mkdtempSync(join(tmpdir(), `idem-bench-${label}-`));
    cleanup.addDir(dir);
    return dir;
  };

  async function startOnWorkerd(id: WorkerId, label: string, options: StartOptions): Promise<Target> {
    let build = builds.get(id);
    if (build === undefined) builds.set(id, (build = buildWorker(configOf(id), cleanup)));
    const storageDir = newDir(label);
    const w = await startWorkerd(
      await build,
      {
        name: label,
        storageDir,
        vars: { ...options.vars, ORIGIN_URL: originUrl },
        inspector: options.inspector ?? false,
        prefix: runtimePrefix,
      },
      cleanup,
    );
    return {
      label,
      worker: id,
      url: w.url,
      runtime: [w.pid],
      workerd: [w.pid],
      node: [],
      storageDir,
      inspectorUrl: w.inspectorPort === undefined ? undefined : `ws://127.0.0.1:${w.inspectorPort}/${label}`,
      command: `workerd serve --experimental <generated config> --control-fd=3${options.inspector ? ' --inspector-addr=127.0.0.1:0' : ''}`,
      startTimes: startTimesOf([w.pid]),
      output: w.output,
      stop: async () => {
        await w.stop();
        cleanup.removeDirNow(storageDir);
      },
    };
  }

  async function startOnWranglerDev(id: WorkerId, label: string, options: StartOptions): Promise<Target> {
    const config = configOf(id);
    const persistTo = newDir(label);
    const vars = Object.fromEntries(
      Object.entries({ ...options.vars, ORIGIN_URL: originUrl }).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
    );
    // --log-level info: the "Ready on" line that names the port is an info line (wrangler dev then also
    // prints one line per request).
    const dev = await startWranglerDev({
      config: config.configPath,
      persistTo,
      vars,
      env: wranglerEnv,
      args: ['--log-level', 'info'],
      cwd: ROOT,
      registry: cleanup,
      name: `wrangler dev (${label})`,
    });
    // Two workerd processes: the dev entry proxy listening on the reported port, and the runtime that
    // runs the Worker and its Durable Objects. Both are on the request path.
    const pids = await waitFor(`the workerd processes of ${label}`, () => {
      const all = descendants(dev.group.pid);
      const workerd = all.filter((pid) => comm(pid) === 'workerd');
      return workerd.length >= 2 ? all : undefined;
    });
    const workerd = pids.filter((pid) => comm(pid) === 'workerd');
    const entry = workerd.filter((pid) => listeningPorts(pid).includes(dev.port));
    const runtime = workerd.filter((pid) => !entry.includes(pid));
    if (entry.length !== 1 || runtime.length === 0)
      throw new Error(`${label}: cannot tell wrangler dev's entry proxy from its runtime (workerd ${workerd.join(', ')})`);
    let inspectorUrl: string | undefined;
    if (options.inspector) {
      // wrangler dev does not print the inspector port it bound (--inspector-port 0); its inspector
      // proxy is the entry workerd's other listening port, the one that answers /json/version as wrangler.
      for (const port of listeningPorts(entry[0] ?? 0).filter((p) => p !== dev.port)) {
        const version = await fetch(`http://127.0.0.1:${port}/json/version`, { signal: AbortSignal.timeout(2000) })
          .then((r) => r.json() as Promise<{ Browser?: string }>)
          .catch(() => undefined);
        if (version?.Browser?.startsWith('wrangler')) inspectorUrl = `ws://127.0.0.1:${port}/ws`;
      }
      if (inspectorUrl === undefined) throw new Error(`${label}: wrangler dev's inspector port not found`);
    }
    return {
      label,
      worker: id,
      url: dev.url,
      runtime,
      workerd,
      node: [dev.group.pid, ...pids.filter((pid) => comm(pid) === 'node')],
      storageDir: join(persistTo, 'v3', 'do'),
      inspectorUrl,
      command: `wrangler ${dev.args.join(' ')}`,
      startTimes: startTimesOf(workerd),
      output: () => dev.group.output(),
      stop: async () => {
        await dev.group.stop();
        cleanup.removeDirNow(persistTo);
      },
    };
  }

  return {
    runtime,
    configs,
    start: (id, label, options = {}) =>
      runtime === 'workerd' ? startOnWorkerd(id, label, options) : startOnWranglerDev(id, label, options),
    provide: (id, built) => void builds.set(id, Promise.resolve(built)),
  };
}
