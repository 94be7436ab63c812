/**
 * @module
 * The bare runtime: a Worker's dry-run bundle served by the `workerd` binary that the project's wrangler
 * ships, from a generated config (its modules, its vars as text/JSON bindings, its Durable Object
 * namespaces with SQLite enabled and local disk storage, a network that reaches the origin on 127.0.0.1,
 * and an HTTP socket on port 0, reported on `--control-fd`). Used by the benchmark and the fault-schedule run, which
 * SIGKILLs it and starts it again on the same storage directory.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Registry } from './cleanup.ts';
import { spawnGroup, waitForControl } from './processes.ts';
import type { BuiltWorker } from './workers.ts';

const requireFromWrangler = createRequire(createRequire(import.meta.url).resolve('wrangler/package.json'));
const workerdPackage = requireFromWrangler('workerd') as { default: string; version: string };
/** The binary wrangler itself runs (`workerd` resolved from the `wrangler` package). */
export const WORKERD_BIN = workerdPackage.default;
export const WORKERD_VERSION = workerdPackage.version;

/** A Cap'n Proto text literal (ASCII only; the escapes JSON and Cap'n Proto share). */
function text(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new Error(`not representable in the generated config: ${JSON.stringify(value)}`);
  return JSON.stringify(value);
}

export interface WorkerdOptions {
  /** Stands in for the service name in logs and the inspector. */
  name: string;
  /** Vars on top of (replacing) the Worker's own. */
  vars?: Record<string, unknown>;
  /** Directory for Durable Object storage (created if missing). */
  storageDir: string;
  /** Also open the V8 inspector (for `--profile`). */
  inspector?: boolean;
  /** A command that starts the binary (e.g. `taskset -c 1`), or none. */
  prefix?: readonly string[];
}

/** The config text for `built` (module paths relative to `configDir`). */
export function workerdConfig(built: BuiltWorker, configDir: string, options: WorkerdOptions): string {
  const { config } = built;
  const vars = { ...config.vars, ...options.vars };
  const bindings = [
    ...Object.entries(vars).map(([name, value]) =>
      typeof value === 'string'
        ? `(name = ${text(name)}, text = ${text(value)})`
        : `(name = ${text(name)}, json = ${text(JSON.stringify(value))})`,
    ),
    ...config.durableObjects.map((d) => `(name = ${text(d.binding)}, durableObjectNamespace = ${text(d.className)})`),
  ];
  const modules = built.modules.map(
    (m) => `(name = ${text(m.name)}, ${m.kind} = embed ${text(relative(configDir, join(built.dir, m.name)))})`,
  );
  const namespaces = config.durableObjects.map(
    (d) => `(className = ${text(d.className)}, uniqueKey = ${text(`${config.name}-${d.className}`)}, enableSql = ${d.sqlite})`,
  );
  const hasObjects = namespaces.length > 0;
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = ${text(options.name)}, worker = .worker),
    # fetch() reaches the origin on 127.0.0.1 (the default network allows public addresses only)
    (name = "internet", network = (allow = ["public", "private", "local"])),
${hasObjects ? `    (name = "do-storage", disk = (path = ${text(options.storageDir)}, writable = true)),\n` : ''}  ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = ${text(options.name)}) ],
);
const worker :Workerd.Worker = (
  compatibilityDate = ${text(config.compatibilityDate)},
  compatibilityFlags = [${config.compatibilityFlags.map(text).join(', ')}],
  modules = [
    ${modules.join(',\n    ')}
  ],
  bindings = [
    ${bindings.join(',\n    ')}
  ],
${hasObjects ? `  durableObjectNamespaces = [ ${namespaces.join(', ')} ],\n  durableObjectStorage = (localDisk = "do-storage"),\n` : ''});
`;
}

export interface WorkerdProcess {
  url: string;
  port: number;
  inspectorPort: number | undefined;
  pid: number;
  configFile: string;
  /** SIGTERM to the process group, SIGKILL after a grace period; resolves once none of it is left. */
  stop(): Promise<void>;
  /** SIGKILL to the process group (a crash: nothing gets to clean up); resolves once none of it is left. */
  kill(): Promise<void>;
  output(): string;
}

/** Serves `built` on bare workerd; resolves once its HTTP socket (and inspector) listen. */
export async function startWorkerd(built: BuiltWorker, options: WorkerdOptions, registry: Registry): Promise<WorkerdProcess> {
  mkdirSync(options.storageDir, { recursive: true });
  const configDir = mkdtempSync(join(tmpdir(), `idem-workerd-${options.name}-`));
  registry.addDir(configDir);
  const configFile = join(configDir, 'config.capnp');
  writeFileSync(configFile, workerdConfig(built, configDir, options));
  const args = ['serve', '--experimental', configFile, '--control-fd=3'];
  if (options.inspector) args.push('--inspector-addr=127.0.0.1:0');
  const [command, ...prefixArgs] = [...(options.prefix ?? []), WORKERD_BIN];
  const group = spawnGroup(`workerd (${options.name})`, command!, [...prefixArgs, ...args], { controlFd: true, registry });
  try {
    const listen = await waitForControl(group, (m) => m['event'] === 'listen' && m['socket'] === 'http', { timeoutMs: 30_000 });
    const inspector = options.inspector
      ? await waitForControl(group, (m) => m['event'] === 'listen-inspector', { timeoutMs: 30_000 })
      : undefined;
    const port = Number(listen['port']);
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      inspectorPort: inspector === undefined ? undefined : Number(inspector['port']),
      pid: group.pid,
      configFile,
      stop: () => group.stop(),
      kill: () => group.kill(),
      output: () => group.output(),
    };
  } catch (error) {
    await group.kill();
    throw error;
  }
}
