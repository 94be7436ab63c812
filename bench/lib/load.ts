/**
 * @module
 * Drives a scenario with autocannon and checks every answer and the origin's counts while measuring.
 * A failed check is recorded with {@link fail} (printed as `FAIL:`; the run exits 1 at the end).
 */
import autocannon from 'autocannon';
import type { Settings } from './cli.ts';
import type { Origin } from './origin.ts';
import { PATH, requestHeaders, type Scenario } from './scenarios.ts';

export const failures: string[] = [];
export function fail(message: string): void {
  failures.push(message);
  console.error(`FAIL: ${message}`);
}

export interface LoadRun {
  result: autocannon.Result;
  /** key -> status (0 until answered), for 'unique' scenarios. */
  sent: Map<string, number>;
  bad: { status: Map<number, number>; replayHeader: number; body: number; examples: string[] };
  /** Seconds from the start to the last answer (exact, unlike autocannon's whole-second duration). */
  elapsedS: number;
}

export interface LoadOptions {
  keyPrefix: string;
  durationS?: number;
  amount?: number;
  /** Every 2xx answer must have exactly this body. */
  expectedBody?: string | undefined;
}

const headerValue = (headers: Record<string, unknown>, name: string): string | undefined => {
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return Array.isArray(v) ? v.join(', ') : String(v);
  return undefined;
};

/**
 * One autocannon run. Every request goes through a requests[] entry with onResponse (so every scenario
 * pays the same client-side cost); 'unique' scenarios get a new Idempotency-Key per request from
 * setupRequest, remembered per connection context so each response is matched to its key.
 */
export async function load(
  url: string,
  s: Scenario,
  settings: Settings,
  { keyPrefix, durationS, amount, expectedBody }: LoadOptions,
): Promise<LoadRun> {
  const sent = new Map<string, number>();
  const bad: LoadRun['bad'] = { status: new Map(), replayHeader: 0, body: 0, examples: [] };
  let seq = 0;
  let lastResponseAt = 0;
  const request: autocannon.Request = {
    method: s.method,
    path: s.path ?? PATH,
    headers: requestHeaders(s),
    ...(s.body !== undefined ? { body: s.body } : {}),
    onResponse(status, body, context, headers) {
      lastResponseAt = performance.now();
      const key = (context as { key?: string }).key;
      if (key !== undefined) sent.set(key, status);
      if (status !== s.expect) {
        bad.status.set(status, (bad.status.get(status) ?? 0) + 1);
        if (bad.examples.length < 3) bad.examples.push(`${status} ${String(body).slice(0, 200)}`);
        return;
      }
      if (s.replayed !== undefined && (headerValue(headers as Record<string, unknown>, 'idempotent-replay') === 'true') !== s.replayed)
        bad.replayHeader++;
      if (s.problem !== undefined && !String(body).includes(`"code":"${s.problem}"`)) bad.body++;
      if (expectedBody !== undefined && body !== expectedBody) bad.body++;
    },
  };
  if (s.key === 'unique') {
    request.setupRequest = (req, context) => {
      const key = `${keyPrefix}${++seq}`;
      (context as { key?: string }).key = key;
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
    ...(amount !== undefined ? { amount } : { duration: durationS ?? settings.durationS }),
    requests: [request],
  });
  // autocannon ends a run on its 1 s sampling tick, so its duration is whole seconds after an `amount`
  // run; the time to the last response is exact.
  const elapsedS = lastResponseAt > 0 ? (lastResponseAt - startedAt) / 1000 : Number.NaN;
  return { result, sent, bad, elapsedS };
}

export interface CheckInfo {
  originCalls: number;
  inFlightAtEnd: number;
  keysSent?: number;
  answered2xx?: number;
  unanswered?: number;
  cutOffButForwarded?: number;
}

/** Checks one measured run against the scenario's expectations and the origin's counts. */
export async function check(
  label: string,
  s: Scenario,
  run: LoadRun,
  originBefore: number,
  originAfter: number,
  origin: Origin,
  keyPrefix: string,
  allowInFlight: number,
): Promise<CheckInfo> {
  const { result, sent, bad } = run;
  const completed = result.requests.total;
  const originDelta = originAfter - originBefore;
  const info: CheckInfo = { originCalls: originDelta, inFlightAtEnd: result.requests.sent - completed - result.errors };
  if (bad.status.size > 0)
    fail(
      `${label}: expected every status ${s.expect}, got ${JSON.stringify(Object.fromEntries(bad.status))}; e.g. ${bad.examples.join(' | ')}`,
    );
  if (bad.replayHeader > 0) fail(`${label}: ${bad.replayHeader} responses with Idempotent-Replay ${s.replayed ? 'missing' : 'present'}`);
  if (bad.body > 0) fail(`${label}: ${bad.body} responses with an unexpected body`);
  if (result.errors > 0) fail(`${label}: autocannon reported ${result.errors} errors (${result.timeouts} timeouts)`);
  if (completed === 0) fail(`${label}: no request completed`);

  if (s.originCalls === 'none') {
    if (originDelta !== 0) fail(`${label}: the origin was called ${originDelta} times (expected 0)`);
  } else if (s.originCalls === 'forwarded') {
    // Every answered request reached the origin; requests cut off at the end may or may not have.
    if (originDelta < completed || originDelta > result.requests.sent)
      fail(`${label}: origin calls ${originDelta} not within [completed ${completed}, sent ${result.requests.sent}]`);
  } else {
    // Exact per-key check: every key the origin saw was sent by this run and seen exactly once; every
    // key answered 2xx was seen; keys seen but not answered are requests cut off at the end.
    const keys = await origin.keys(keyPrefix);
    const seenKeys = Object.keys(keys);
    const seenCalls = Object.values(keys).reduce((a, b) => a + b, 0);
    const duplicated = seenKeys.filter((k) => keys[k] !== 1);
    const unknown = seenKeys.filter((k) => !sent.has(k));
    const answered2xx = [...sent].filter(([, status]) => status >= 200 && status < 300).map(([k]) => k);
    const missing = answered2xx.filter((k) => keys[k] !== 1);
    const unanswered = [...sent].filter(([, status]) => status === 0).map(([k]) => k);
    const seenUnanswered = unanswered.filter((k) => keys[k] === 1).length;
    if (duplicated[0] !== undefined)
      fail(`${label}: ${duplicated.length} keys reached the origin more than once (e.g. ${duplicated[0]}: ${keys[duplicated[0]]})`);
    if (unknown.length > 0) fail(`${label}: the origin saw ${unknown.length} keys this run never sent`);
    if (missing.length > 0) fail(`${label}: ${missing.length} keys answered 2xx never reached the origin (e.g. ${missing[0]})`);
    if (seenCalls !== originDelta) fail(`${label}: ${originDelta} origin calls in the window, but ${seenCalls} carried this run's keys`);
    if (answered2xx.length !== result['2xx'])
      fail(`${label}: matched ${answered2xx.length} 2xx responses to keys, autocannon counted ${result['2xx']}`);
    const allowed = allowInFlight + result.errors;
    if (unanswered.length > allowed)
      fail(`${label}: ${unanswered.length} requests unanswered (at most ${allowed} may be cut off at the end)`);
    if (originDelta !== answered2xx.length + seenUnanswered)
      fail(`${label}: origin calls ${originDelta} != 2xx ${answered2xx.length} + cut-off-but-forwarded ${seenUnanswered}`);
    Object.assign(info, {
      keysSent: sent.size,
      answered2xx: answered2xx.length,
      unanswered: unanswered.length,
      cutOffButForwarded: seenUnanswered,
    });
  }
  return info;
}
