/**
 * @module
 * The system under test: the built proxy Worker on the bare `workerd` runtime, with SQLite Durable Objects on local
 * disk. A fault SIGKILLs the runtime's whole process group and starts it again on the same storage directory; the
 * clients wait for it ({@link System.ready}) and pick up the new port ({@link System.url}).
 */
import type { Registry } from '../lib/cleanup.ts';
import { startWorkerd, type WorkerdProcess } from '../lib/workerd.ts';
import type { BuiltWorker } from '../lib/workers.ts';
import type { KillEvent } from './history.ts';

export interface System {
  /** The proxy's base URL (its port changes at each restart). */
  url(): string;
  /** Resolves once the runtime listens (at once, unless it is being restarted). */
  ready(): Promise<void>;
  /** SIGKILLs the runtime and starts it again on the same storage; resolves once it listens again. */
  kill(id: string, afterRequests: number): Promise<KillEvent>;
  /** Stops the runtime (SIGTERM, then SIGKILL). */
  stop(): Promise<void>;
  /** The runtime's output (the current process's tail). */
  output(): string;
}

export async function startSystem(
  built: BuiltWorker,
  storageDir: string,
  vars: Record<string, unknown>,
  registry: Registry,
): Promise<System> {
  const start = () => startWorkerd(built, { name: 'torture', storageDir, vars }, registry);
  let current: WorkerdProcess = await start();
  let ready: Promise<void> = Promise.resolve();
  return {
    url: () => current.url,
    ready: () => ready,
    async kill(id, afterRequests) {
      let restarted!: () => void;
      ready = new Promise<void>((resolve) => (restarted = resolve));
      const time = Date.now();
      await current.kill();
      const dead = Date.now();
      try {
        current = await start();
      } finally {
        restarted();
      }
      return { type: 'kill', id, time, dead, restarted: Date.now(), port: current.port, afterRequests };
    },
    stop: () => current.stop(),
    output: () => current.output(),
  };
}
