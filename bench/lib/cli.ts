/**
 * @module
 * The benchmark's flags (`--help` prints {@link HELP}) and the settings they resolve to.
 */
import { parseArgs } from 'node:util';

/** The scenarios `--baseline-ref` runs unless `--only` says otherwise. */
export const BASELINE_ONLY = ['passthrough_post', 'passthrough_get', 'replay', 'conflict', 'first', 'stream'];

export const HELP = `Usage: npm run bench -- [flags]

Modes (default: the scenarios, then the billing counts):
  --scale               first-time requests until each --scale-levels count of stored keys: throughput,
                        memory and disk per key at each level (product and design floor)
  --profile             V8 CPU profile of each Worker's isolate (Worker and Durable Objects) through the
                        runtime's inspector, one run per scenario (default floor,passthrough_post,replay,
                        design_floor_first,first; see --only); writes bench/results/<time>-<scenario>.cpuprofile
  --billing             only the billing counts (Durable Object requests, SQLite rows, bytes stored, cost)
  --stall               readers that stop reading (issue #29): peak RSS of the product's runtime with
                        --stall-readers clients stalled on one key's answer of --stall-mib MiB, live (joined
                        while the origin still sends it) and replayed (stored first); --repeats runs each

Against another commit (default mode or --profile, bare workerd only):
  --baseline-ref REF    also build the product as of commit REF (a temporary git worktree, its node_modules a link
                        to this one's) and run every product scenario on both builds, back to back in each repeat:
                        ratios this build / REF for req/s and runtime CPU/req, medians and per repeat. Its default
                        --only is ${BASELINE_ONLY.join(',')}; no billing counts unless --billing-requests.
                        With --profile: each product scenario profiled on both builds (<scenario>@baseline)

Runtime:
  --runtime R           workerd: each Worker's \`wrangler deploy --dry-run\` bundle on the bare workerd binary
                        wrangler ships (default); wrangler-dev: each Worker under \`wrangler dev\`
  --wrangler-env K=V    extra environment for every wrangler dev process (repeatable; --runtime wrangler-dev),
                        e.g. X_LOCAL_OBSERVABILITY=false to switch off wrangler dev's local trace store

Placement:
  --no-pin              do not pin processes to CPUs. By default (with 2 or more CPUs) every Worker's runtime
                        runs on the last CPU and the benchmark (autocannon) and the origin on the others, so the
                        measured runtime's CPU time is not inflated by the load generator sharing its core

Load (autocannon):
  --connections N       connections                                  (default 16)
  --duration S          measured seconds per scenario run            (default 5)
  --warmup S            unmeasured warm-up seconds before each run   (default 1)
  --repeats N           interleaved repeats, medians reported        (default 5)
  --timeout S           per-request timeout                          (default 10)
  --origin-delay-ms MS  fixed delay of every origin answer           (default 0; the latency table is
                        meant for 20)
  --only a,b,...        run only these scenarios (direct, floor, passthrough_post, passthrough_get,
                        replay, conflict, replay_unlogged, design_floor_first, first, replay_sealed,
                        first_sealed, stream; and, only when named here, replay_large,
                        replay_large_sealed); \`--only stream --billing-requests 0\` runs the stream
                        scenario alone (the origin trickles 1 MiB over ~1 s: first and last byte)

Scale mode:
  --scale-levels L,...  stored-key levels                            (default 1000,10000,100000)
  --scale-probe N       measured first-time requests ending at each level (default 1000)
  --scale-idle S        idle wait before the lasting memory/disk footprint is read (default 15)

Stall mode:
  --stall-readers N     clients that stop reading, per case                (default 10)
  --stall-mib M         size of the answer in MiB                           (default 8)
  --stall-hold S        seconds the RSS is sampled after the first request  (default 5)

Billing:
  --billing-requests N  requests per scenario through the metered Worker (default 500; 0 = skip)

Output:
  --no-json             do not write bench/results/<time>.json
  --help`;

export type Mode = 'scenarios' | 'scale' | 'profile' | 'billing' | 'stall';
export type Runtime = 'workerd' | 'wrangler-dev';

export interface Settings {
  mode: Mode;
  runtime: Runtime;
  connections: number;
  durationS: number;
  warmupS: number;
  repeats: number;
  timeoutS: number;
  originDelayMs: number;
  pipelining: number;
  only: string[] | undefined;
  scaleLevels: number[];
  scaleProbe: number;
  scaleIdleS: number;
  billingRequests: number;
  stallReaders: number;
  stallMib: number;
  stallHoldS: number;
  wranglerEnv: Record<string, string>;
  /** `--baseline-ref`: the commit whose product every product scenario also runs on. */
  baselineRef: string | undefined;
  json: boolean;
  /** Pin the measured runtimes to one CPU and everything else to the others. */
  pin: boolean;
}

/** Thrown for a bad flag: the entry prints the message and exits 2. */
export class UsageError extends Error {}

/** Parses `argv`; returns `undefined` after printing the help. */
export function parseSettings(argv: string[]): Settings | undefined {
  const { values: flags } = parseArgs({
    args: argv,
    options: {
      connections: { type: 'string', default: '16' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      repeats: { type: 'string', default: '5' },
      timeout: { type: 'string', default: '10' },
      'origin-delay-ms': { type: 'string', default: '0' },
      only: { type: 'string' },
      runtime: { type: 'string', default: 'workerd' },
      scale: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      billing: { type: 'boolean', default: false },
      stall: { type: 'boolean', default: false },
      'stall-readers': { type: 'string', default: '10' },
      'stall-mib': { type: 'string', default: '8' },
      'stall-hold': { type: 'string', default: '5' },
      'billing-requests': { type: 'string' },
      'baseline-ref': { type: 'string' },
      'scale-levels': { type: 'string', default: '1000,10000,100000' },
      'scale-probe': { type: 'string', default: '1000' },
      'scale-idle': { type: 'string', default: '15' },
      'wrangler-env': { type: 'string', multiple: true, default: [] },
      'no-json': { type: 'boolean', default: false },
      'no-pin': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (flags.help) {
    console.log(HELP);
    return undefined;
  }
  const number = (name: keyof typeof flags, integer = true): number => {
    const raw = flags[name];
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
      throw new UsageError(`--${name} must be a non-negative ${integer ? 'integer' : 'number'}, got ${String(raw)}`);
    }
    return value;
  };
  const modes = (['scale', 'profile', 'billing', 'stall'] as const).filter((m) => flags[m]);
  if (modes.length > 1) throw new UsageError(`--${modes.join(' and --')} are separate modes`);
  if (flags.runtime !== 'workerd' && flags.runtime !== 'wrangler-dev')
    throw new UsageError(`--runtime must be workerd or wrangler-dev, got ${flags.runtime}`);
  const wranglerEnv: Record<string, string> = {};
  for (const pair of flags['wrangler-env']) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new UsageError(`--wrangler-env expects NAME=VALUE, got ${pair}`);
    wranglerEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const baselineRef = flags['baseline-ref'];
  if (baselineRef !== undefined && (modes.some((m) => m !== 'profile') || flags.runtime !== 'workerd'))
    throw new UsageError('--baseline-ref runs the default mode or --profile, on the bare workerd runtime');
  // With a baseline, the billing counts (of this build only) run when asked for.
  flags['billing-requests'] ??= baselineRef === undefined ? '500' : '0';
  const only = flags.only ?? (baselineRef === undefined || flags.profile ? undefined : BASELINE_ONLY.join(','));
  const settings: Settings = {
    mode: modes[0] ?? 'scenarios',
    runtime: flags.runtime,
    connections: number('connections'),
    durationS: number('duration', false),
    warmupS: number('warmup', false),
    repeats: number('repeats'),
    timeoutS: number('timeout', false),
    originDelayMs: number('origin-delay-ms'),
    pipelining: 1,
    only: only
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    scaleLevels: flags['scale-levels'].split(',').map(Number),
    scaleProbe: number('scale-probe'),
    scaleIdleS: number('scale-idle', false),
    billingRequests: number('billing-requests'),
    stallReaders: number('stall-readers'),
    stallMib: number('stall-mib'),
    stallHoldS: number('stall-hold', false),
    wranglerEnv,
    baselineRef,
    json: !flags['no-json'],
    pin: !flags['no-pin'],
  };
  if (settings.connections < 1 || settings.repeats < 1 || settings.durationS <= 0)
    throw new UsageError('--connections, --repeats and --duration must be at least 1');
  if (settings.scaleLevels.some((n, i, all) => !Number.isInteger(n) || n < 1 || (i > 0 && n <= (all[i - 1] ?? 0)))) {
    throw new UsageError('--scale-levels must be increasing positive integers');
  }
  return settings;
}
