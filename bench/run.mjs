// `npm run bench`: what the idempotency layer costs, as ratios to baselines measured in the same run.
//
// Starts a fast local origin (bench/origin.mjs) and three Workers under `wrangler dev` with identical
// flags: the bare pass-through "floor" (bench/floor/), the simplest per-key Durable Object design
// "design floor" (bench/design-floor/) and the product (./wrangler.toml). Then drives each scenario with
// autocannon, reads the CPU time of the Workers' workerd processes from /proc, checks correctness against
// the origin's call counts, and prints medians over interleaved repeats, ratios and Markdown tables.
// `--scale` instead fills the product and the design floor with stored keys (1k, 10k) and reports
// throughput, memory and disk per key at each level. `--help` lists the flags.
//
// Every child runs detached in its own process group and is stopped by that group id, on success,
// error, SIGINT or SIGTERM; a small reaper process does it even if this process is killed outright.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

const ROOT = resolve(import.meta.dirname, '..');
const BENCH = join(ROOT, 'bench');
const WRANGLER_JS = join(ROOT, 'node_modules/wrangler/bin/wrangler.js');
const WORKER_ENV = { WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' };

// ---------------------------------------------------------------------------------------------- flags

const HELP = `Usage: npm run bench -- [flags]

  --connections N       autocannon connections                       (default 16)
  --duration S          measured seconds per scenario run            (default 5)
  --warmup S            unmeasured warm-up seconds before each run   (default 1)
  --repeats N           interleaved repeats, medians reported        (default 3)
  --timeout S           autocannon per-request timeout               (default 10)
  --origin-delay-ms MS  fixed delay of every origin answer           (default 0)
  --only a,b,...        run only these scenarios
  --scale               scale mode: first-time requests until 1k, 10k stored keys
  --scale-levels L,...  stored-key levels for --scale                (default 1000,10000)
  --scale-probe N       measured first-time requests ending at each level (default 1000)
  --scale-idle S        idle wait before the lasting memory/disk footprint is read  (default 15)
  --profile             profile mode: V8 CPU profile of each Worker's isolate (Worker and Durable
                        Objects) through wrangler's inspector, one run per scenario (default
                        floor,passthrough_post,replay,design_floor_first,first; see --only);
                        writes bench/results/<timestamp>-<scenario>.cpuprofile, prints top functions
  --wrangler-env K=V    extra environment for all three wrangler dev processes (repeatable),
                        e.g. X_LOCAL_OBSERVABILITY=false to switch off wrangler dev's local trace store
  --no-json             do not write bench/results/<timestamp>.json
  --help`;

const { values: flags } = parseArgs({
  options: {
    connections: { type: 'string', default: '16' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    repeats: { type: 'string', default: '3' },
    timeout: { type: 'string', default: '10' },
    'origin-delay-ms': { type: 'string', default: '0' },
    only: { type: 'string' },
    scale: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'scale-levels': { type: 'string', default: '1000,10000' },
    'scale-probe': { type: 'string', default: '1000' },
    'scale-idle': { type: 'string', default: '15' },
    'wrangler-env': { type: 'string', multiple: true, default: [] },
    'no-json': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log(HELP);
  process.exit(0);
}
const positive = (name, integer = true) => {
  const value = Number(flags[name]);
  if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    console.error(`--${name} must be a non-negative ${integer ? 'integer' : 'number'}, got ${flags[name]}`);
    process.exit(2);
  }
  return value;
};
const settings = {
  mode: flags.scale ? 'scale' : flags.profile ? 'profile' : 'scenarios',
  connections: positive('connections'),
  durationS: positive('duration', false),
  warmupS: positive('warmup', false),
  repeats: positive('repeats'),
  timeoutS: positive('timeout', false),
  originDelayMs: positive('origin-delay-ms'),
  pipelining: 1,
  scaleLevels: flags['scale-levels'].split(',').map(Number),
  scaleProbe: positive('scale-probe'),
  scaleIdleS: positive('scale-idle', false),
};
if (settings.connections < 1 || settings.repeats < 1 || settings.durationS <= 0) {
  console.error('--connections, --repeats and --duration must be at least 1');
  process.exit(2);
}
if (flags.scale && flags.profile) {
  console.error('--scale and --profile are separate modes');
  process.exit(2);
}
if (settings.scaleLevels.some((n, i, all) => !Number.isInteger(n) || n < 1 || (i > 0 && n <= all[i - 1]))) {
  console.error('--scale-levels must be increasing positive integers');
  process.exit(2);
}
for (const pair of flags['wrangler-env']) {
  const eq = pair.indexOf('=');
  if (eq < 1) {
    console.error(`--wrangler-env expects NAME=VALUE, got ${pair}`);
    process.exit(2);
  }
  WORKER_ENV[pair.slice(0, eq)] = pair.slice(eq + 1);
}
if (Number(process.versions.node.split('.')[0]) < 22) {
  console.error(`Node ${process.version}: wrangler needs Node >= 22. Run through \`npm run bench\` (Node 22 from node_modules/.bin).`);
  process.exit(2);
}

// ------------------------------------------------------------------------------ processes and cleanup

/** Process groups we started and have not stopped yet: pgid -> { name, child, exited }. */
const groups = new Map();
/** Temp dirs to remove at the end. */
const tempDirs = new Set();

// The reaper: a tiny detached process holding a pipe from us. If we die without cleaning up (even by
// SIGKILL), the pipe closes and it SIGKILLs every group still registered. On a normal exit we have
// already stopped and unregistered them all, so it has nothing to do and just exits.
const REAPER = `
const live = new Set();
const dirs = new Set();
let buf = '';
process.stdin.on('data', (d) => {
  buf += d; let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    if (line[0] === '+') live.add(Number(line.slice(1))); else if (line[0] === '-') live.delete(Number(line.slice(1)));
    else if (line[0] === 'd') dirs.add(line.slice(1)); else if (line[0] === 'r') dirs.delete(line.slice(1));
  }
});
process.stdin.on('end', () => {
  for (const g of live) { try { process.kill(-g, 'SIGKILL'); } catch {} }
  setTimeout(() => {
    for (const d of dirs) { try { require('node:fs').rmSync(d, { recursive: true, force: true }); } catch {} }
    process.exit(0);
  }, live.size > 0 ? 500 : 0);
});`;
const reaper = spawn(process.execPath, ['-e', REAPER], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
reaper.stdin.on('error', () => {});
const reaperExited = new Promise((r) => reaper.once('exit', r));

/** Spawns `command` detached (own process group), output captured; the group is registered for cleanup. */
function spawnGroup(name, command, args, options = {}) {
  const child = spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...options });
  // Keep only the tail of the output (for error messages): a Worker that logs every request would
  // otherwise grow this without bound.
  let log = '';
  const append = (d) => {
    log += d;
    if (log.length > 256 * 1024) log = log.slice(-128 * 1024);
  };
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  const exited = new Promise((r) => child.once('exit', r));
  const entry = { name, child, exited, log: () => log, knownPids: new Set() };
  groups.set(child.pid, entry);
  reaper.stdin.write(`+${child.pid}\n`);
  return entry;
}

/** True while `pid` exists (zombies included: see stopGroup). */
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** SIGTERM to the group, SIGKILL after 5 s; then makes sure no process of it is left. */
async function stopGroup(entry) {
  const pgid = entry.child.pid;
  const signal = (sig) => {
    try {
      process.kill(-pgid, sig);
    } catch {
      // already gone
    }
  };
  if (entry.child.exitCode === null && entry.child.signalCode === null) {
    signal('SIGTERM');
    await Promise.race([entry.exited, sleep(5000)]);
  }
  // wrangler's descendants (workerd, esbuild) are in the same group; kill whatever outlived the leader.
  signal('SIGKILL');
  for (const pid of entry.knownPids) if (alive(pid) && pgidOf(pid) === pgid) process.kill(pid, 'SIGKILL');
  await Promise.race([entry.exited, sleep(2000)]);
  // SIGKILL is asynchronous: wait until every process we saw in the group is gone (or a zombie).
  const deadline = Date.now() + 5000;
  while ([...entry.knownPids].some((pid) => alive(pid) && pgidOf(pid) === pgid && statFields(pid)?.[0] !== 'Z') && Date.now() < deadline) await sleep(50);
  groups.delete(pgid);
  reaper.stdin.write(`-${pgid}\n`);
}

let cleaningUp;
async function cleanup() {
  cleaningUp ??= (async () => {
    await Promise.all([...groups.values()].map(stopGroup));
    for (const dir of tempDirs) {
      rmSync(dir, { recursive: true, force: true });
      reaper.stdin.write(`r${dir}\n`);
    }
    reaper.stdin.end();
    await Promise.race([reaperExited, sleep(3000)]);
    try {
      process.kill(-reaper.pid, 'SIGKILL');
    } catch {
      // exited by itself, as expected
    }
  })();
  return cleaningUp;
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    interrupted = true;
    console.error(`\n${sig}: stopping every process started by the benchmark...`);
    cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}
// Last resort, synchronous: nothing can be awaited in 'exit'.
process.on('exit', () => {
  for (const pgid of groups.keys()) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

// --------------------------------------------------------------------------------------------- /proc

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the command name; [0] is field 3 (state). */
function statFields(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}
const pgidOf = (pid) => Number(statFields(pid)?.[2] ?? -1);
/** Start time since boot, in clock ticks: identifies a process across pid reuse. */
const startTime = (pid) => statFields(pid)?.[19];
/** utime + stime in clock ticks (all threads of the process). */
const cpuTicks = (pid) => {
  const f = statFields(pid);
  return f === undefined ? Number.NaN : Number(f[11]) + Number(f[12]);
};
const comm = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};
const cmdline = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
};
/** VmRSS in bytes. */
const rssBytes = (pid) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
};

/** Every descendant of `root` (ppid chains over /proc/[0-9]*). */
function descendants(root) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = Number(statFields(name)?.[1] ?? -1);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(name));
  }
  const out = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/**
 * Calls `visit(path, stat)` for every file below `path` (or `path` itself), in sorted order, skipping
 * `.wrangler` and `node_modules` folders and anything that vanished meanwhile.
 */
function walkFiles(path, visit) {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isDirectory()) return visit(path, st);
  for (const name of readdirSync(path).sort()) if (name !== '.wrangler' && name !== 'node_modules') walkFiles(join(path, name), visit);
}

/** Size of everything below `dir`: apparent bytes, allocated bytes, files. */
function diskUsage(dir) {
  let bytes = 0;
  let allocated = 0;
  let files = 0;
  let sqliteFiles = 0;
  let sqliteBytes = 0;
  let walFiles = 0;
  walkFiles(dir, (path, st) => {
    files++;
    bytes += st.size;
    allocated += st.blocks * 512;
    if (path.endsWith('.sqlite')) {
      sqliteFiles++;
      sqliteBytes += st.size;
    } else if (path.endsWith('-wal')) walFiles++;
  });
  return { bytes, allocated, files, sqliteFiles, sqliteBytes, walFiles };
}

// ----------------------------------------------------------------------------------------- utilities

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const mib = (bytes) => bytes / (1024 * 1024);

/**
 * What the three Workers are built from: wrangler dev watches these files and reloads (a new workerd)
 * when one changes, which would silently mix two versions into one measurement.
 */
function sourceDigest() {
  const hash = createHash('sha256');
  const add = (root) => walkFiles(root, (path) => hash.update(`${path}\0`).update(readFileSync(path)).update('\0'));
  for (const path of ['wrangler.toml', 'src', 'bench/floor', 'bench/design-floor']) add(join(ROOT, path));
  return hash.digest('hex');
}

function gitDescribe() {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'wrangler.toml'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return { head, productSourceDirty: dirty !== '', dirtyFiles: dirty.split('\n').filter(Boolean) };
  } catch {
    return { head: 'unknown', productSourceDirty: null, dirtyFiles: [] };
  }
}

let startDigest;
/** Throws when a Worker was reloaded or its source changed since the start: the numbers would be invalid. */
function assertStable(targets, when) {
  const problems = [];
  if (sourceDigest() !== startDigest) problems.push('the source of a Worker (src/, wrangler.toml, bench/floor, bench/design-floor) changed');
  for (const t of Object.values(targets)) {
    for (const [pid, start] of t.workerdStart ?? []) {
      if (startTime(pid) !== start) problems.push(`${t.name}: workerd ${pid} is gone (wrangler dev reloaded or restarted it)`);
    }
  }
  if (problems.length > 0) {
    throw new Error(`${when}: ${problems.join('; ')}. Measurements mixing two versions are invalid; rerun without editing the Workers' files.`);
  }
}

async function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const failures = [];
function fail(message) {
  failures.push(message);
  console.error(`FAIL: ${message}`);
}

// ------------------------------------------------------------------------------------- the processes

async function startOrigin() {
  const entry = spawnGroup('origin', process.execPath, [join(BENCH, 'origin.mjs'), '--port', '0', '--delay-ms', String(settings.originDelayMs)], { cwd: ROOT });
  const deadline = Date.now() + 10_000;
  while (!/\{"port":\d+\}/.test(entry.log())) {
    if (entry.child.exitCode !== null || Date.now() > deadline) throw new Error(`origin did not start:\n${entry.log()}`);
    await sleep(20);
  }
  const { port } = JSON.parse(/\{"port":\d+\}/.exec(entry.log())[0]);
  const url = `http://127.0.0.1:${port}`;
  return {
    ...entry,
    pid: entry.child.pid,
    url,
    async calls(query = '') {
      const res = await fetch(`${url}/__calls${query}`);
      return res.json();
    },
    /** Waits until the origin's call count has not moved for `quietMs` (requests still in flight land). */
    async settle(quietMs = 300, maxMs = 10_000) {
      const deadline = Date.now() + maxMs;
      let last = (await this.calls()).total;
      let since = Date.now();
      while (Date.now() - since < quietMs && Date.now() < deadline) {
        await sleep(50);
        const now = (await this.calls()).total;
        if (now !== last) {
          last = now;
          since = Date.now();
        }
      }
      return last;
    },
  };
}

/** `wrangler dev` for one Worker; flags and env identical for all three. */
async function startWorker(name, config, originUrl, vars = []) {
  const port = await freePort();
  const inspectorPort = await freePort();
  const persistTo = mkdtempSync(join(tmpdir(), `idem-bench-${name}-`));
  tempDirs.add(persistTo);
  reaper.stdin.write(`d${persistTo}\n`);
  const args = [
    WRANGLER_JS, 'dev', '--config', config,
    '--ip', '127.0.0.1', '--port', String(port), '--persist-to', persistTo, '--inspector-port', String(inspectorPort),
    '--log-level', 'warn', '--var', `ORIGIN_URL:${originUrl}`, ...vars.flatMap((v) => ['--var', v]),
  ];
  const entry = spawnGroup(name, process.execPath, args, { cwd: ROOT, env: { ...process.env, ...WORKER_ENV } });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (entry.child.exitCode !== null) throw new Error(`wrangler dev (${name}) exited early:\n${entry.log()}`);
    try {
      const res = await fetch(`${url}/__bench_ready`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`wrangler dev (${name}) did not become ready:\n${entry.log()}`);
    await sleep(200);
  }
  // The processes: wrangler's node processes, and two workerd: the dev entry proxy that listens on our
  // port, and the runtime that runs the Worker and its Durable Objects (both are on the request path).
  const pids = descendants(entry.child.pid);
  for (const pid of pids) entry.knownPids.add(pid);
  const workerd = pids.filter((pid) => comm(pid) === 'workerd');
  const entryProxy = workerd.filter((pid) => cmdline(pid).includes(`entry=127.0.0.1:${port}`));
  const runtime = workerd.filter((pid) => !entryProxy.includes(pid));
  const node = [entry.child.pid, ...pids.filter((pid) => comm(pid) === 'node')];
  if (runtime.length === 0) throw new Error(`no workerd runtime process found under wrangler dev (${name}): ${pids.map((p) => `${p}:${comm(p)}`).join(' ')}`);
  const workerdStart = new Map(workerd.map((pid) => [pid, startTime(pid)]));
  return { ...entry, name, url, port, inspectorPort, persistTo, args: args.slice(1), workerd, workerdStart, runtime, entryProxy, node };
}

/** CPU ticks of the processes that matter for one target, taken together. */
function cpuSnapshot(target, origin) {
  const sum = (pids) => pids.reduce((acc, pid) => acc + cpuTicks(pid), 0);
  return {
    runtime: target?.runtime ? sum(target.runtime) : Number.NaN,
    workerd: target?.workerd ? sum(target.workerd) : Number.NaN,
    wranglerNode: target?.node ? sum(target.node) : Number.NaN,
    origin: cpuTicks(origin.pid),
  };
}

// ----------------------------------------------------------------------------------------- scenarios

const AUTH = 'Bearer bench';
const PATH = '/v1/charges';
const BODY = JSON.stringify({ amount: 500, currency: 'EUR', customer: 'cus_0001', memo: 'bench' }); // ~60 bytes
const OTHER_BODY = JSON.stringify({ amount: 501, currency: 'EUR', customer: 'cus_0001', memo: 'bench' });
const REPLAY_KEY = 'bench-replay-key';

/**
 * target: which server; key: 'none' | 'fixed' | 'unique'; expect: status of every response;
 * originCalls: 'forwarded' (one per request) | 'none' | 'per-key' (each unique key exactly once).
 */
const SCENARIOS = {
  direct: { target: 'origin', method: 'POST', body: BODY, key: 'none', expect: 201, originCalls: 'forwarded' },
  floor: { target: 'floor', method: 'POST', body: BODY, key: 'none', expect: 201, originCalls: 'forwarded' },
  passthrough_post: { target: 'product', method: 'POST', body: BODY, key: 'none', expect: 201, originCalls: 'forwarded' },
  passthrough_get: { target: 'product', method: 'GET', body: undefined, key: 'none', expect: 200, originCalls: 'forwarded' },
  // The product with its per-request JSON log line on (its default). Under wrangler dev every console
  // line is relayed to wrangler's Node process through the inspector, a dev-only cost the floors do not
  // pay, so the other product scenarios run with LOG_REQUESTS=false and this one shows the difference.
  passthrough_post_logged: { target: 'productLogged', method: 'POST', body: BODY, key: 'none', expect: 201, originCalls: 'forwarded' },
  replay: { target: 'product', method: 'POST', body: BODY, key: 'fixed', expect: 201, replayed: true, originCalls: 'none' },
  conflict: { target: 'product', method: 'POST', body: OTHER_BODY, key: 'fixed', expect: 409, problem: 'idempotency_key_reused', originCalls: 'none' },
  design_floor_first: { target: 'design', method: 'POST', body: BODY, key: 'unique', expect: 201, replayed: false, originCalls: 'per-key' },
  first: { target: 'product', method: 'POST', body: BODY, key: 'unique', expect: 201, replayed: false, originCalls: 'per-key' },
};

const headerValue = (headers, name) => {
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === name) return Array.isArray(v) ? v.join(', ') : v;
  return undefined;
};

/**
 * One autocannon run. Every request goes through a requests[] entry with onResponse (so every scenario
 * pays the same client-side cost); 'unique' scenarios get a new Idempotency-Key per request from
 * setupRequest, remembered per connection context so each response is matched to its key.
 */
async function load(url, scenario, { keyPrefix, durationS, amount, expectedBody }) {
  const headers = { authorization: AUTH };
  if (scenario.body !== undefined) headers['content-type'] = 'application/json';
  if (scenario.key === 'fixed') headers['idempotency-key'] = REPLAY_KEY;
  const sent = new Map(); // key -> status (0 until answered)
  const bad = { status: new Map(), replayHeader: 0, body: 0, examples: [] };
  let seq = 0;
  let lastResponseAt = 0;
  const request = {
    method: scenario.method,
    path: PATH,
    headers,
    ...(scenario.body !== undefined ? { body: scenario.body } : {}),
    onResponse(status, body, context, resHeaders) {
      lastResponseAt = performance.now();
      if (context.key !== undefined) sent.set(context.key, status);
      if (status !== scenario.expect) {
        bad.status.set(status, (bad.status.get(status) ?? 0) + 1);
        if (bad.examples.length < 3) bad.examples.push(`${status} ${String(body).slice(0, 200)}`);
        return;
      }
      if (scenario.replayed !== undefined && (headerValue(resHeaders, 'idempotent-replay') === 'true') !== scenario.replayed) bad.replayHeader++;
      if (scenario.problem !== undefined && !String(body).includes(`"code":"${scenario.problem}"`)) bad.body++;
      if (expectedBody !== undefined && body !== expectedBody) bad.body++;
    },
  };
  if (scenario.key === 'unique') {
    request.setupRequest = (req, context) => {
      const key = `${keyPrefix}${++seq}`;
      context.key = key;
      sent.set(key, 0);
      return { ...req, headers: { ...req.headers, 'idempotency-key': key } };
    };
  }
  const startedAt = performance.now();
  const result = await autocannon({
    url,
    connections: settings.connections,
    pipelining: settings.pipelining,
    timeout: settings.timeoutS,
    ...(amount !== undefined ? { amount } : { duration: durationS }),
    requests: [request],
  });
  // autocannon ends a run on its 1 s sampling tick, so its duration is whole seconds after an `amount`
  // run; the time to the last response is exact.
  const elapsedS = lastResponseAt > 0 ? (lastResponseAt - startedAt) / 1000 : Number.NaN;
  return { result, sent, bad, elapsedS };
}

/** Checks one measured run against the scenario's expectations and the origin's counts. */
async function check(label, scenario, run, originBefore, originAfter, origin, keyPrefix, { allowInFlight = true } = {}) {
  const { result, sent, bad } = run;
  const completed = result.requests.total;
  const originDelta = originAfter - originBefore;
  const info = { originCalls: originDelta, inFlightAtEnd: result.requests.sent - completed - result.errors };
  if (bad.status.size > 0) fail(`${label}: expected every status ${scenario.expect}, got ${JSON.stringify(Object.fromEntries(bad.status))}; e.g. ${bad.examples.join(' | ')}`);
  if (bad.replayHeader > 0) fail(`${label}: ${bad.replayHeader} responses with Idempotent-Replay ${scenario.replayed ? 'missing' : 'present'}`);
  if (bad.body > 0) fail(`${label}: ${bad.body} responses with an unexpected body`);
  if (result.errors > 0) fail(`${label}: autocannon reported ${result.errors} errors (${result.timeouts} timeouts)`);
  if (completed === 0) fail(`${label}: no request completed`);

  if (scenario.originCalls === 'none') {
    if (originDelta !== 0) fail(`${label}: the origin was called ${originDelta} times (expected 0)`);
  } else if (scenario.originCalls === 'forwarded') {
    // Every answered request reached the origin; requests cut off at the end may or may not have.
    if (originDelta < completed || originDelta > result.requests.sent) {
      fail(`${label}: origin calls ${originDelta} not within [completed ${completed}, sent ${result.requests.sent}]`);
    }
  } else {
    // Exact per-key check: every key the origin saw was sent by this run and seen exactly once; every
    // key answered 2xx was seen; keys seen but not answered are requests cut off at the end.
    const { keys } = await origin.calls(`?prefix=${encodeURIComponent(keyPrefix)}`);
    const seenKeys = Object.keys(keys);
    const seenCalls = Object.values(keys).reduce((a, b) => a + b, 0);
    const duplicated = seenKeys.filter((k) => keys[k] !== 1);
    const unknown = seenKeys.filter((k) => !sent.has(k));
    const answered2xx = [...sent].filter(([, s]) => s >= 200 && s < 300).map(([k]) => k);
    const missing = answered2xx.filter((k) => keys[k] !== 1);
    const unanswered = [...sent].filter(([, s]) => s === 0).map(([k]) => k);
    const seenUnanswered = unanswered.filter((k) => keys[k] === 1).length;
    if (duplicated.length > 0) fail(`${label}: ${duplicated.length} keys reached the origin more than once (e.g. ${duplicated[0]}: ${keys[duplicated[0]]})`);
    if (unknown.length > 0) fail(`${label}: the origin saw ${unknown.length} keys this run never sent`);
    if (missing.length > 0) fail(`${label}: ${missing.length} keys answered 2xx never reached the origin (e.g. ${missing[0]})`);
    if (seenCalls !== originDelta) fail(`${label}: ${originDelta} origin calls in the window, but ${seenCalls} carried this run's keys`);
    if (answered2xx.length !== result['2xx']) fail(`${label}: matched ${answered2xx.length} 2xx responses to keys, autocannon counted ${result['2xx']}`);
    const allowed = (allowInFlight ? settings.connections : 0) + result.errors;
    if (unanswered.length > allowed) fail(`${label}: ${unanswered.length} requests unanswered (at most ${allowed} may be cut off at the end)`);
    if (originDelta !== answered2xx.length + seenUnanswered) fail(`${label}: origin calls ${originDelta} != 2xx ${answered2xx.length} + cut-off-but-forwarded ${seenUnanswered}`);
    Object.assign(info, { keysSent: sent.size, answered2xx: answered2xx.length, unanswered: unanswered.length, cutOffButForwarded: seenUnanswered });
  }
  return info;
}

// ------------------------------------------------------------------------------------------- versions

function versions(worker) {
  const pkg = (path) => {
    try {
      return JSON.parse(readFileSync(path, 'utf8')).version;
    } catch {
      return 'unknown';
    }
  };
  let workerd = 'unknown';
  let workerdPackage = 'unknown';
  if (worker?.runtime?.[0] !== undefined) {
    try {
      const exe = readlinkSync(`/proc/${worker.runtime[0]}/exe`);
      workerd = execFileSync(exe, ['--version'], { encoding: 'utf8' }).trim().replace(/^workerd\s*/, '');
      workerdPackage = pkg(join(dirname(exe), '..', 'package.json'));
    } catch {
      // keep unknown
    }
  }
  return {
    node: process.version,
    wrangler: pkg(join(ROOT, 'node_modules/wrangler/package.json')),
    workerd,
    workerdPackage,
    autocannon: pkg(join(ROOT, 'node_modules/autocannon/package.json')),
  };
}

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  let nproc;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    nproc = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  }
  let load = 'n/a';
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    // no loadavg
  }
  return { nproc, cpuModel: model, loadavgAtStart: load, clkTck: CLK_TCK };
}

// --------------------------------------------------------------------------------------------- modes

async function prime(product, origin) {
  const send = (body) =>
    fetch(`${product.url}${PATH}`, {
      method: 'POST',
      headers: { authorization: AUTH, 'idempotency-key': REPLAY_KEY, 'content-type': 'application/json' },
      body,
    });
  const first = await send(BODY);
  const firstBody = await first.text();
  if (first.status !== 201 || first.headers.get('idempotent-replay') !== null) throw new Error(`priming the replay key: got ${first.status} ${firstBody}`);
  const again = await send(BODY);
  const againBody = await again.text();
  if (again.status !== 201 || again.headers.get('idempotent-replay') !== 'true' || againBody !== firstBody) {
    throw new Error(`the primed key does not replay: ${again.status} ${againBody}`);
  }
  await origin.settle();
  const { count } = await origin.calls(`?key=${REPLAY_KEY}`);
  if (count !== 1) throw new Error(`the primed key reached the origin ${count} times (expected 1)`);
  return firstBody;
}

async function runScenarios(origin, targets) {
  const names = flags.only ? flags.only.split(',').map((s) => s.trim()) : Object.keys(SCENARIOS);
  for (const name of names) if (!(name in SCENARIOS)) throw new Error(`unknown scenario ${name} (known: ${Object.keys(SCENARIOS).join(', ')})`);
  const needsPrime = names.some((n) => SCENARIOS[n].key === 'fixed');
  const primedBody = needsPrime ? await prime(targets.product, origin) : undefined;

  const runs = [];
  for (let rep = 1; rep <= settings.repeats; rep++) {
    // Odd repeats run the scenarios in order, even repeats in reverse, so drift on a noisy machine
    // does not always favour the same scenario.
    const order = rep % 2 === 1 ? names : [...names].reverse();
    for (const name of order) {
      const scenario = SCENARIOS[name];
      const target = targets[scenario.target];
      const label = `${name} #${rep}`;
      const prefix = `${name}-r${rep}-`;
      if (settings.warmupS > 0) {
        const warm = await load(target.url, scenario, { keyPrefix: `${prefix}w-`, durationS: settings.warmupS });
        if (warm.result.requests.total === 0) fail(`${label}: warm-up completed no request`);
      }
      const before = await origin.settle();
      const cpuBefore = cpuSnapshot(target.runtime ? target : undefined, origin);
      const run = await load(target.url, scenario, { keyPrefix: `${prefix}m-`, durationS: settings.durationS, expectedBody: scenario.key === 'fixed' && scenario.expect === 201 ? primedBody : undefined });
      const after = await origin.settle();
      const cpuAfter = cpuSnapshot(target.runtime ? target : undefined, origin);
      assertStable(targets, label);
      const info = await check(label, scenario, run, before, after, origin, `${prefix}m-`);
      const r = run.result;
      const completed = r.requests.total;
      const perReq = (key) => ((cpuAfter[key] - cpuBefore[key]) / CLK_TCK / completed) * 1e6;
      const row = {
        scenario: name,
        repeat: rep,
        completed,
        durationS: r.duration,
        rps: completed / r.duration,
        latencyP50Ms: r.latency.p50,
        latencyP99Ms: r.latency.p99,
        cpuUsPerReq: { runtime: perReq('runtime'), workerd: perReq('workerd'), wranglerNode: perReq('wranglerNode'), origin: perReq('origin') },
        statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([k, v]) => [k, v.count])),
        non2xx: r.non2xx,
        errors: r.errors,
        timeouts: r.timeouts,
        ...info,
      };
      runs.push(row);
      console.log(
        `  ${label.padEnd(24)} ${fmt(row.rps).padStart(6)} req/s  p50 ${fmt(row.latencyP50Ms, 1).padStart(5)} ms  p99 ${fmt(row.latencyP99Ms, 1).padStart(6)} ms  ` +
          `runtime CPU ${fmt(row.cpuUsPerReq.runtime).padStart(5)} µs/req  all workerd ${fmt(row.cpuUsPerReq.workerd).padStart(5)} µs/req  origin calls ${row.originCalls}` +
          (row.answered2xx !== undefined ? ` = ${row.answered2xx} answered 2xx + ${row.cutOffButForwarded} cut off at the end (of ${row.unanswered})` : ''),
      );
    }
  }
  if (needsPrime) {
    const { count } = await origin.calls(`?key=${REPLAY_KEY}`);
    if (count !== 1) fail(`the replay key reached the origin ${count} times over the whole run (expected 1)`);
  }

  const summary = {};
  for (const name of names) {
    const rows = runs.filter((r) => r.scenario === name);
    summary[name] = {
      rps: median(rows.map((r) => r.rps)),
      latencyP50Ms: median(rows.map((r) => r.latencyP50Ms)),
      latencyP99Ms: median(rows.map((r) => r.latencyP99Ms)),
      cpuUsPerReq: Object.fromEntries(['runtime', 'workerd', 'wranglerNode', 'origin'].map((k) => [k, median(rows.map((r) => r.cpuUsPerReq[k]))])),
      non2xx: rows.reduce((a, r) => a + r.non2xx, 0),
      completed: rows.reduce((a, r) => a + r.completed, 0),
      repeats: rows.length,
    };
  }

  // [label, metric, a, b, target op, target]; rows without a target are for information: on a shared
  // 2-core machine CPU per request is steadier than throughput.
  const ratioDefs = [
    ['passthrough_post / floor', 'req/s', 'passthrough_post', 'floor', '>=', 0.95],
    ['passthrough_post / floor', 'runtime CPU/req', 'passthrough_post', 'floor', '<=', null],
    ['passthrough_post_logged / floor', 'req/s', 'passthrough_post_logged', 'floor', '>=', null],
    ['passthrough_post_logged / floor', 'runtime CPU/req', 'passthrough_post_logged', 'floor', '<=', null],
    ['passthrough_get / floor', 'req/s', 'passthrough_get', 'floor', '>=', 0.95],
    ['passthrough_get / floor', 'runtime CPU/req', 'passthrough_get', 'floor', '<=', null],
    ['replay / floor', 'req/s', 'replay', 'floor', '>=', 1.0],
    ['replay / floor', 'runtime CPU/req', 'replay', 'floor', '<=', null],
    ['conflict / floor', 'req/s', 'conflict', 'floor', '>=', 1.0],
    ['conflict / floor', 'runtime CPU/req', 'conflict', 'floor', '<=', null],
    ['first / design_floor_first', 'req/s', 'first', 'design_floor_first', '>=', 1.0],
    ['first / design_floor_first', 'runtime CPU/req', 'first', 'design_floor_first', '<=', 1.0],
    ['first / design_floor_first', 'all-workerd CPU/req', 'first', 'design_floor_first', '<=', null],
  ];
  const pick = (metric, x) => (metric === 'req/s' ? x.rps : metric === 'runtime CPU/req' ? x.cpuUsPerReq.runtime : x.cpuUsPerReq.workerd);
  const ratios = [];
  for (const [label, metric, a, b, op, target] of ratioDefs) {
    if (!summary[a] || !summary[b]) continue;
    const value = pick(metric, summary[a]) / pick(metric, summary[b]);
    // Paired per-repeat ratios show how much of the difference is noise.
    const perRepeat = [];
    for (let rep = 1; rep <= settings.repeats; rep++) {
      const ra = runs.find((r) => r.scenario === a && r.repeat === rep);
      const rb = runs.find((r) => r.scenario === b && r.repeat === rep);
      perRepeat.push(pick(metric, ra) / pick(metric, rb));
    }
    const met = target === null ? null : op === '>=' ? value >= target : value <= target;
    ratios.push({ label, metric, value, perRepeat, op, target, met });
  }
  return { scenarios: names, runs, summary, ratios };
}

async function runScale(origin, targets) {
  const plan = [
    ['design_floor_first', targets.design],
    ['first', targets.product],
  ];
  const stored = new Map(plan.map(([name]) => [name, 0]));
  const rows = [];
  /** Memory and disk of one Worker now. Open objects keep a -wal and -shm file next to their .sqlite. */
  const footprint = (target, keys) => {
    const disk = diskUsage(join(target.persistTo, 'v3', 'do'));
    return {
      rssRuntimeBytes: target.runtime.reduce((a, pid) => a + rssBytes(pid), 0),
      rssAllWorkerdBytes: target.workerd.reduce((a, pid) => a + rssBytes(pid), 0),
      diskBytes: disk.bytes,
      diskAllocatedBytes: disk.allocated,
      diskFiles: disk.files,
      sqliteFiles: disk.sqliteFiles,
      walFiles: disk.walFiles,
      diskBytesPerKey: keys > 0 ? disk.bytes / keys : Number.NaN,
      diskAllocatedPerKey: keys > 0 ? disk.allocated / keys : Number.NaN,
      sqliteBytesPerFile: disk.sqliteFiles > 0 ? disk.sqliteBytes / disk.sqliteFiles : Number.NaN,
    };
  };
  // Warm the isolates with unkeyed writes (nothing stored), then record the empty state.
  for (const [name, target] of plan) {
    if (settings.warmupS > 0) await load(target.url, { ...SCENARIOS.passthrough_post }, { durationS: settings.warmupS });
    await origin.settle();
    const row = { scenario: name, level: 0, storedKeys: 0, hot: footprint(target, 0) };
    rows.push(row);
    console.log(`  ${name.padEnd(20)} empty: RSS runtime ${fmt(mib(row.hot.rssRuntimeBytes), 1)} MiB, v3/do ${row.hot.diskBytes} bytes in ${row.hot.diskFiles} files`);
  }
  for (const level of settings.scaleLevels) {
    const levelRows = [];
    for (const [name, target] of plan) {
      const scenario = SCENARIOS[name];
      const have = stored.get(name);
      const probe = Math.min(settings.scaleProbe, level - have);
      const fill = level - have - probe;
      const label = `${name} @${level}`;
      let fillRps = Number.NaN;
      if (fill > 0) {
        const prefix = `scale-${name}-${level}-fill-`;
        const before = await origin.settle();
        const run = await load(target.url, scenario, { keyPrefix: prefix, amount: fill });
        const after = await origin.settle();
        await check(`${label} fill`, scenario, run, before, after, origin, prefix, { allowInFlight: false });
        fillRps = run.result.requests.total / run.elapsedS;
      }
      const prefix = `scale-${name}-${level}-probe-`;
      const before = await origin.settle();
      const cpuBefore = cpuSnapshot(target, origin);
      const run = await load(target.url, scenario, { keyPrefix: prefix, amount: probe });
      const after = await origin.settle();
      const cpuAfter = cpuSnapshot(target, origin);
      assertStable(targets, label);
      await check(`${label} probe`, scenario, run, before, after, origin, prefix, { allowInFlight: false });
      const { keys } = await origin.calls(`?prefix=${encodeURIComponent(`scale-${name}-`)}`);
      const keyCount = Object.keys(keys).length;
      if (keyCount !== level) fail(`${label}: the origin saw ${keyCount} distinct keys, expected ${level}`);
      stored.set(name, keyCount);
      const r = run.result;
      const completed = r.requests.total;
      const row = {
        scenario: name,
        level,
        storedKeys: keyCount,
        fill,
        fillRps,
        probe,
        rps: completed / run.elapsedS,
        latencyP50Ms: r.latency.p50,
        latencyP99Ms: r.latency.p99,
        cpuUsPerReq: {
          runtime: ((cpuAfter.runtime - cpuBefore.runtime) / CLK_TCK / completed) * 1e6,
          workerd: ((cpuAfter.workerd - cpuBefore.workerd) / CLK_TCK / completed) * 1e6,
        },
        hot: footprint(target, keyCount),
      };
      rows.push(row);
      levelRows.push([row, target]);
      console.log(
        `  ${label.padEnd(26)} probe ${fmt(row.rps).padStart(5)} req/s (fill ${fmt(fillRps)} req/s)  p99 ${fmt(row.latencyP99Ms, 1)} ms  ` +
          `runtime CPU ${fmt(row.cpuUsPerReq.runtime)} µs/req  RSS ${fmt(mib(row.hot.rssRuntimeBytes), 1)} MiB  disk ${fmt(row.hot.diskBytesPerKey)} B/key (${row.hot.walFiles} open WAL files)`,
      );
    }
    // Idle objects are closed after a few seconds (their WAL checkpointed into the .sqlite file and
    // removed): the lasting footprint of a stored key.
    if (settings.scaleIdleS > 0) {
      await sleep(settings.scaleIdleS * 1000);
      for (const [row, target] of levelRows) {
        row.idle = footprint(target, row.storedKeys);
        console.log(
          `  ${`${row.scenario} @${level}`.padEnd(26)} after ${settings.scaleIdleS} s idle: RSS ${fmt(mib(row.idle.rssRuntimeBytes), 1)} MiB  disk ${fmt(row.idle.diskBytesPerKey)} B/key, ` +
            `${fmt(row.idle.sqliteBytesPerFile)} B per .sqlite (${row.idle.walFiles} open WAL files)`,
        );
      }
    }
  }
  return { rows };
}

const PROFILE_DEFAULT = ['floor', 'passthrough_post', 'replay', 'design_floor_first', 'first'];

/** A Chrome DevTools Protocol session with the Worker's isolate, through wrangler dev's inspector proxy. */
async function inspector(port) {
  // The proxy only accepts DevTools origins; http://localhost is one of them.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { Origin: 'http://localhost' } });
  await new Promise((resolveOpen, reject) => {
    ws.onopen = resolveOpen;
    ws.onerror = () => reject(new Error(`cannot open the inspector on port ${port}`));
  });
  let id = 0;
  const pending = new Map();
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    const waiter = pending.get(message.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`${waiter.method}: ${JSON.stringify(message.error)}`));
    else waiter.resolve(message.result);
  };
  return {
    send: (method, params = {}) =>
      new Promise((resolveCall, reject) => {
        pending.set(++id, { resolve: resolveCall, reject, method });
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

/** Self time per function of a V8 CPU profile, in µs per completed request. */
function summarizeProfile(profile, completed) {
  const total = profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0);
  const usPerHit = total > 0 ? (profile.endTime - profile.startTime) / total : 0;
  const byFunction = new Map();
  let idle = 0;
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const self = (node.hitCount ?? 0) * usPerHit;
    if (functionName === '(idle)') {
      idle += self;
      continue;
    }
    const file = url ? url.split('/').pop() : '';
    const key = file ? `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}` : functionName || '(native)';
    byFunction.set(key, (byFunction.get(key) ?? 0) + self);
  }
  const busy = [...byFunction.values()].reduce((a, b) => a + b, 0);
  const top = [...byFunction.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)
    .map(([fn, us]) => ({ fn, usPerReq: us / completed, share: us / busy }));
  return { wallUs: profile.endTime - profile.startTime, busyUsPerReq: busy / completed, idleUs: idle, top };
}

async function runProfile(origin, targets, started) {
  const names = flags.only ? flags.only.split(',').map((s) => s.trim()) : PROFILE_DEFAULT;
  for (const name of names) if (!(name in SCENARIOS) || SCENARIOS[name].target === 'origin') throw new Error(`cannot profile ${name}`);
  const primedBody = names.some((n) => SCENARIOS[n].key === 'fixed') ? await prime(targets.product, origin) : undefined;
  const dir = join(BENCH, 'results');
  mkdirSync(dir, { recursive: true });
  const out = {};
  for (const name of names) {
    const scenario = SCENARIOS[name];
    const target = targets[scenario.target];
    const prefix = `profile-${name}-`;
    if (settings.warmupS > 0) await load(target.url, scenario, { keyPrefix: `${prefix}w-`, durationS: settings.warmupS });
    const session = await inspector(target.inspectorPort);
    let profile;
    let run;
    let before;
    let after;
    try {
      await session.send('Profiler.enable');
      await session.send('Profiler.setSamplingInterval', { interval: 250 });
      before = await origin.settle();
      await session.send('Profiler.start');
      run = await load(target.url, scenario, { keyPrefix: `${prefix}m-`, durationS: settings.durationS, expectedBody: scenario.key === 'fixed' && scenario.expect === 201 ? primedBody : undefined });
      after = await origin.settle();
      ({ profile } = await session.send('Profiler.stop'));
    } finally {
      session.close();
    }
    assertStable(targets, `${name} (profile)`);
    await check(`${name} (profile)`, scenario, run, before, after, origin, `${prefix}m-`);
    const file = join(dir, `${started.toISOString().replace(/[:.]/g, '-')}-${name}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    const completed = run.result.requests.total;
    const summary = summarizeProfile(profile, completed);
    out[name] = { completed, rps: completed / run.result.duration, file, ...summary };
    console.log(`\n  ${name}: ${completed} requests, ${fmt(out[name].rps)} req/s under the profiler; JS-visible busy time ${fmt(summary.busyUsPerReq)} µs/req -> ${file}`);
    for (const t of summary.top.slice(0, 15)) console.log(`    ${fmt(t.usPerReq, 1).padStart(7)} µs/req ${fmt(t.share * 100, 1).padStart(5)}%  ${t.fn}`);
  }
  return out;
}

// --------------------------------------------------------------------------------------------- report

function markdown(report) {
  const { machine: m, versions: v, settings: s } = report;
  const lines = [];
  lines.push(`Product: commit ${report.product.head.slice(0, 12)}${report.product.productSourceDirty ? ' plus uncommitted changes' : ''}. Machine: ${m.nproc} × ${m.cpuModel} (load average at start ${m.loadavgAtStart}). ` +
    `Node ${v.node}, wrangler ${v.wrangler}, workerd ${v.workerd} (npm ${v.workerdPackage}), autocannon ${v.autocannon}.`);
  lines.push(`Settings: ${s.connections} connections, pipelining ${s.pipelining}, ` +
    (s.mode === 'scale' ? `first-time requests in batches (probe: the last ${s.scaleProbe} requests before each level, measured; fill: the ones before, unmeasured except req/s); "hot" right after the probe, "idle" after ${s.scaleIdleS} s without traffic` : s.mode === 'profile' ? `${s.durationS} s per scenario under the V8 sampling profiler (250 µs), after ${s.warmupS} s warm-up` : `${s.durationS} s measured after ${s.warmupS} s warm-up, median of ${s.repeats} interleaved repeats`) +
    `, origin delay ${s.originDelayMs} ms, ${Buffer.byteLength(BODY)}-byte JSON body. Each Worker under \`wrangler dev --ip 127.0.0.1 --log-level warn\` ` +
    `(own --port, --persist-to, --inspector-port), env ${Object.entries(WORKER_ENV).map(([k, x]) => `${k}=${x}`).join(' ')}. ` +
    `CPU = utime+stime from /proc (CLK_TCK ${m.clkTck}) per completed request; "runtime" is the workerd that runs the Worker and its Durable Objects, "all workerd" adds wrangler dev's entry proxy workerd, "wrangler node" is wrangler dev's own Node processes (they receive the Worker's console output). Latency resolution 1 ms.`);
  lines.push('');
  if (report.scenarios) {
    const { summary, ratios } = report.scenarios;
    if (ratios.length > 0) {
      lines.push('| ratio | metric | value | per repeat | target | |');
      lines.push('|---|---|---:|---|---|---|');
    }
    for (const r of ratios) {
      lines.push(`| ${r.label} | ${r.metric} | ${fmt(r.value, 2)}x | ${r.perRepeat.map((x) => fmt(x, 2)).join(', ')} | ${r.target === null ? '–' : `${r.op === '>=' ? '≥' : '≤'} ${r.target.toFixed(2)}x`} | ${r.met === null ? '' : r.met ? 'met' : '**missed**'} |`);
    }
    if (ratios.length > 0) lines.push('');
    lines.push('| scenario | req/s | p50 ms | p99 ms | runtime CPU µs/req | all workerd CPU µs/req | wrangler node CPU µs/req | origin CPU µs/req | non-2xx |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [name, x] of Object.entries(summary)) {
      lines.push(`| ${name} | ${fmt(x.rps)} | ${fmt(x.latencyP50Ms, 1)} | ${fmt(x.latencyP99Ms, 1)} | ${fmt(x.cpuUsPerReq.runtime)} | ${fmt(x.cpuUsPerReq.workerd)} | ${fmt(x.cpuUsPerReq.wranglerNode)} | ${fmt(x.cpuUsPerReq.origin)} | ${x.non2xx} |`);
    }
  }
  if (report.profile) {
    for (const [name, p] of Object.entries(report.profile)) {
      lines.push(`**${name}** (${p.completed} requests; busy ${fmt(p.busyUsPerReq)} µs/req of V8-sampled time in the isolate)`);
      lines.push('');
      lines.push('| µs/req | share | function (bundle file:line) |');
      lines.push('|---:|---:|---|');
      for (const t of p.top.slice(0, 15)) lines.push(`| ${fmt(t.usPerReq, 1)} | ${fmt(t.share * 100, 1)}% | \`${t.fn}\` |`);
      lines.push('');
    }
  }
  if (report.scale) {
    lines.push(`| worker | stored keys | req/s (probe) | req/s (fill) | p50 ms | p99 ms | runtime CPU µs/req | RSS MiB (hot) | RSS MiB (${s.scaleIdleS} s idle) | v3/do bytes/key (hot) | v3/do bytes/key (idle) | bytes per .sqlite (idle) | open WAL files (hot / idle) |`);
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of report.scale.rows) {
      const idle = r.idle ?? {};
      lines.push(
        `| ${r.scenario} | ${r.storedKeys} | ${fmt(r.rps)} | ${fmt(r.fillRps)} | ${fmt(r.latencyP50Ms, 1)} | ${fmt(r.latencyP99Ms, 1)} | ${fmt(r.cpuUsPerReq?.runtime)} | ` +
          `${fmt(mib(r.hot.rssRuntimeBytes), 1)} | ${fmt(mib(idle.rssRuntimeBytes), 1)} | ${fmt(r.hot.diskBytesPerKey)} | ${fmt(idle.diskBytesPerKey)} | ${fmt(idle.sqliteBytesPerFile)} | ${r.hot.walFiles} / ${idle.walFiles ?? 'n/a'} |`,
      );
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------- main

async function main() {
  const started = new Date();
  startDigest = sourceDigest();
  const git = gitDescribe();
  console.log(`idempotency-proxy benchmark (${settings.mode}); product at ${git.head.slice(0, 12)}${git.productSourceDirty ? ' with uncommitted changes in src/ or wrangler.toml' : ''}`);
  const origin = await startOrigin();
  console.log(`origin: ${origin.url} (pid ${origin.pid}, delay ${settings.originDelayMs} ms)`);

  const wanted = new Set();
  if (settings.mode === 'scale') wanted.add('design').add('product');
  else {
    const names = flags.only ? flags.only.split(',').map((x) => x.trim()) : settings.mode === 'profile' ? PROFILE_DEFAULT : Object.keys(SCENARIOS);
    for (const n of names) if (SCENARIOS[n]) wanted.add(SCENARIOS[n].target);
  }
  wanted.delete('origin');
  const configs = {
    floor: join(BENCH, 'floor/wrangler.toml'),
    design: join(BENCH, 'design-floor/wrangler.toml'),
    product: join(ROOT, 'wrangler.toml'),
    productLogged: join(ROOT, 'wrangler.toml'),
  };
  const vars = { product: ['LOG_REQUESTS:false'], productLogged: ['LOG_REQUESTS:true'] };
  const targets = { origin: { url: origin.url } };
  // Started one after the other: wrangler dev's start-up is CPU-heavy on a small machine.
  for (const name of ['floor', 'design', 'product', 'productLogged']) {
    if (!wanted.has(name)) continue;
    const t0 = Date.now();
    targets[name] = await startWorker(name, configs[name], origin.url, vars[name]);
    const w = targets[name];
    console.log(`${name}: ${w.url} ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; workerd runtime pid ${w.runtime.join(',')}, entry proxy pid ${w.entryProxy.join(',') || '-'}`);
    console.log(`  wrangler ${w.args.join(' ')}`);
  }
  const anyWorker = targets.product ?? targets.design ?? targets.floor;
  const report = {
    startedAt: started.toISOString(),
    settings: { ...settings, wranglerFlags: '--ip 127.0.0.1 --port <free> --persist-to <fresh temp dir> --inspector-port <free> --log-level warn --var ORIGIN_URL:<origin> (product: --var LOG_REQUESTS:false, except passthrough_post_logged)', env: WORKER_ENV, bodyBytes: Buffer.byteLength(BODY) },
    machine: machine(),
    versions: versions(anyWorker),
    product: { ...git, sourceDigest: startDigest },
  };
  console.log(`machine: ${report.machine.nproc} × ${report.machine.cpuModel}; node ${report.versions.node}, wrangler ${report.versions.wrangler}, workerd ${report.versions.workerd}`);
  console.log(
    settings.mode === 'scale'
      ? `\nscale: levels ${settings.scaleLevels.join(', ')} stored keys, probe ${settings.scaleProbe} requests, ${settings.connections} connections`
      : settings.mode === 'profile' ? '\nprofile: one run per scenario, V8 sampling profiler attached'
      : `\nscenarios: ${settings.repeats} repeats × (${settings.warmupS} s warm-up + ${settings.durationS} s), ${settings.connections} connections`,
  );

  if (settings.mode === 'scale') report.scale = await runScale(origin, targets);
  else if (settings.mode === 'profile') report.profile = await runProfile(origin, targets, started);
  else report.scenarios = await runScenarios(origin, targets);
  report.failures = failures;
  report.finishedAt = new Date().toISOString();

  const md = markdown(report);
  console.log(`\n${md}\n`);
  if (!flags['no-json']) {
    const dir = join(BENCH, 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${started.toISOString().replace(/[:.]/g, '-')}${settings.mode === 'scale' ? '-scale' : ''}.json`);
    writeFileSync(file, `${JSON.stringify({ ...report, markdown: md }, null, 2)}\n`);
    console.log(`results: ${file}`);
  }
  if (failures.length > 0) {
    console.error(`\n${failures.length} correctness check(s) FAILED:\n- ${failures.join('\n- ')}`);
    return 1;
  }
  console.log('all correctness checks passed');
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  if (!interrupted) console.error(`\nbenchmark aborted: ${error?.stack ?? error}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
