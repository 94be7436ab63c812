/**
 * @module
 * The scenarios: which Worker, which request, and what every answer and the origin's counts must show.
 */

export const AUTH = 'Bearer bench';
export const PATH = '/v1/charges';
export const BODY = JSON.stringify({ amount: 500, currency: 'EUR', customer: 'cus_0001', memo: 'bench' }); // ~60 bytes
export const OTHER_BODY = JSON.stringify({ amount: 501, currency: 'EUR', customer: 'cus_0001', memo: 'bench' });
/** The headers of a keyed POST of {@link BODY} sent with `node:http`. */
export const keyedHeaders = (key: string): Record<string, string | number> => ({
  authorization: AUTH,
  'content-type': 'application/json',
  'idempotency-key': key,
  'content-length': Buffer.byteLength(BODY),
});
export const REPLAY_KEY = 'bench-replay-key';
/** An answer of 128 KiB (bench/origin.ts), over the isolate cache's 64 KiB limit: every replay of it reads the object. */
export const LARGE_PATH = '/v1/trickle?chunks=1&chunk_bytes=131072&interval_ms=0';
/** `IDEMPOTENCY_ENCRYPTION_KEYS` of the sealed slots: one 256-bit key, as a deployment with encryption at rest has. */
export const BENCH_KEYRING = `bench:${Buffer.alloc(32, 7).toString('base64')}`;

/**
 * Which process a scenario runs in. `product`, `product-unlogged`, `product-sealed` and the `-large` ones are
 * long-lived and see no first-time traffic (the platform runs Workers and their objects apart: stateless requests
 * do not share a process with thousands of objects); `product-first`, `product-first-sealed` and `design-first`
 * are started anew, on empty storage, for every run of a first-time scenario. The `-sealed` slots run with
 * {@link BENCH_KEYRING} set; the `-large` ones hold a replay key of {@link LARGE_PATH}.
 */
export type Slot =
  | 'origin'
  | 'floor'
  | 'product'
  | 'product-unlogged'
  | 'product-sealed'
  | 'product-large'
  | 'product-large-sealed'
  | 'product-first'
  | 'product-first-sealed'
  | 'design-first';

export interface Scenario {
  slot: Slot;
  method: 'POST' | 'GET';
  /** Path and query. @default PATH */
  path?: string;
  body: string | undefined;
  /** none: no Idempotency-Key; fixed: the slot's replay key ({@link replayKey}); unique: a new key per request. */
  key: 'none' | 'fixed' | 'unique';
  /** Status of every answer. */
  expect: number;
  /** Idempotent-Replay: true present (true) or absent (false) on every answer. */
  replayed?: boolean;
  /** The problem code every answer carries. */
  problem?: string;
  /** forwarded: one origin call per request; none: no origin call; per-key: each unique key exactly once. */
  originCalls: 'forwarded' | 'none' | 'per-key';
  /** On the product as built from `--baseline-ref` (a product slot only), with a replay key of its own. */
  baseline?: boolean;
}

/** The large replays (below), whose processes differ only in the keyring. */
const LARGE_REPLAY = {
  method: 'POST',
  path: LARGE_PATH,
  body: BODY,
  key: 'fixed',
  expect: 201,
  replayed: true,
  originCalls: 'none',
} as const;

export const SCENARIOS = {
  direct: { slot: 'origin', method: 'POST', body: BODY, key: 'none', expect: 201, originCalls: 'forwarded' },
  floor: { slot: 'floor', method: 'POST', body: BODY, key: 'none', expect: 201, originCalls: 'forwarded' },
  passthrough_post: { slot: 'product', method: 'POST', body: BODY, key: 'none', expect: 201, originCalls: 'forwarded' },
  passthrough_get: { slot: 'product', method: 'GET', body: undefined, key: 'none', expect: 200, originCalls: 'forwarded' },
  replay: { slot: 'product', method: 'POST', body: BODY, key: 'fixed', expect: 201, replayed: true, originCalls: 'none' },
  // Encryption at rest (issue #20): `replay` here and `first` below with the answers sealed, each next to its
  // plaintext twin in a repeat's order, so that both run under the same conditions (a replay run right after a
  // first-time one shares the disk with the stopped process's cleanup). A hot key's replay is answered from the
  // isolate's cache, which holds the opened answer; `first_sealed` seals the headers and body once per key.
  replay_sealed: { slot: 'product-sealed', method: 'POST', body: BODY, key: 'fixed', expect: 201, replayed: true, originCalls: 'none' },
  conflict: {
    slot: 'product',
    method: 'POST',
    body: OTHER_BODY,
    key: 'fixed',
    expect: 409,
    problem: 'idempotency_key_reused',
    originCalls: 'none',
  },
  // The product's replay with LOG_REQUESTS=false. The shipped logging writes no line for a replay, so this should
  // cost what `replay` costs: the check that logging as shipped adds nothing to the commonest keyed request.
  replay_unlogged: { slot: 'product-unlogged', method: 'POST', body: BODY, key: 'fixed', expect: 201, replayed: true, originCalls: 'none' },
  design_floor_first: {
    slot: 'design-first',
    method: 'POST',
    body: BODY,
    key: 'unique',
    expect: 201,
    replayed: false,
    originCalls: 'per-key',
  },
  first: { slot: 'product-first', method: 'POST', body: BODY, key: 'unique', expect: 201, replayed: false, originCalls: 'per-key' },
  first_sealed: {
    slot: 'product-first-sealed',
    method: 'POST',
    body: BODY,
    key: 'unique',
    expect: 201,
    replayed: false,
    originCalls: 'per-key',
  },
  // Replays that read the object, and so open a sealed row, on every request: a 128 KiB answer is never cached.
  // Opt-in (`--only`), to keep the default run short.
  replay_large: { ...LARGE_REPLAY, slot: 'product-large' },
  replay_large_sealed: { ...LARGE_REPLAY, slot: 'product-large-sealed' },
} as const satisfies Record<string, Scenario>;

export type ScenarioName = keyof typeof SCENARIOS;
export const SCENARIO_NAMES = Object.keys(SCENARIOS) as ScenarioName[];
/** Run only when `--only` names them. */
export const OPT_IN: readonly ScenarioName[] = ['replay_large', 'replay_large_sealed'];
export const DEFAULT_SCENARIOS = SCENARIO_NAMES.filter((name) => !OPT_IN.includes(name));
export const PROFILE_DEFAULT: ScenarioName[] = ['floor', 'passthrough_post', 'replay', 'design_floor_first', 'first'];

export const scenario = (name: ScenarioName): Scenario => SCENARIOS[name];

/** Checks `names` against the known scenarios. */
export function scenarioNames(names: readonly string[]): ScenarioName[] {
  for (const name of names) if (!(name in SCENARIOS)) throw new Error(`unknown scenario ${name} (known: ${SCENARIO_NAMES.join(', ')})`);
  return names as ScenarioName[];
}

/** The key the fixed-key scenarios of a slot use (each process is primed with its own; the baseline's too). */
export const replayKey = (slot: Slot, baseline = false): string => `${REPLAY_KEY}-${slot}${baseline ? '-baseline' : ''}`;

/** The request headers of a scenario (without a unique key). */
export function requestHeaders(s: Scenario): Record<string, string> {
  const headers: Record<string, string> = { authorization: AUTH };
  if (s.body !== undefined) headers['content-type'] = 'application/json';
  if (s.key === 'fixed') headers['idempotency-key'] = replayKey(s.slot, s.baseline);
  return headers;
}

/**
 * Stores the replay key of fixed-key scenario `s` in the product process at `url` (one origin call, to its path) and
 * checks that it replays; returns the stored body, which every replay must repeat.
 */
export async function prime(
  url: string,
  s: Scenario,
  originCount: (key: string) => Promise<number>,
  settle: () => Promise<number>,
): Promise<string> {
  const headers = requestHeaders({ ...SCENARIOS.replay, slot: s.slot, baseline: s.baseline === true });
  const send = (): Promise<Response> => fetch(`${url}${s.path ?? PATH}`, { method: 'POST', headers, body: BODY });
  const first = await send();
  const firstBody = await first.text();
  if (first.status !== 201 || first.headers.get('idempotent-replay') !== null)
    throw new Error(`priming the replay key: got ${first.status} ${firstBody}`);
  const again = await send();
  const againBody = await again.text();
  if (again.status !== 201 || again.headers.get('idempotent-replay') !== 'true' || againBody !== firstBody) {
    throw new Error(`the primed key does not replay: ${again.status} ${againBody}`);
  }
  await settle();
  const count = await originCount(replayKey(s.slot, s.baseline));
  if (count !== 1) throw new Error(`the primed key reached the origin ${count} times (expected 1)`);
  return firstBody;
}
