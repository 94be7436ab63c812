/**
 * @module
 * The stream scenario (issue #19): the origin trickles a 1 MiB answer over about 1 s, and one request at a time
 * measures when its first and last body bytes arrive, sent to the origin directly, through the floor, and through
 * the product as a first-time keyed POST and then its replay. Medians over `--repeats` interleaved repeats; the
 * product's first byte is compared with the floor's (issue #19's target: within +10 ms at p50). With `--baseline-ref`,
 * the product as built from that commit serves a first-time request and its replay too (`first@baseline`,
 * `replay@baseline`), on a process and connection of its own, after this build's in each repeat.
 *
 * One request at a time, not autocannon: the question is when bytes arrive, not how many requests fit in a second,
 * and concurrent trickles would measure the machine's two cores instead.
 */
import { createHash } from 'node:crypto';
import { Agent, request } from 'node:http';
import { assertStable, fmt, median } from '../lib/env.ts';
import { fail } from '../lib/load.ts';
import { type Bench, startTarget, stopTarget } from '../lib/measure.ts';
import { BODY, keyedHeaders } from '../lib/scenarios.ts';

/** The name `--only` selects it by. */
export const STREAM = 'stream';

/** The origin's trickle (bench/origin.ts): 32 chunks of 32 KiB, one every 31 ms, the last at about 961 ms. */
export const TRICKLE = { chunks: 32, chunkBytes: 32 * 1024, intervalMs: 31 };
const TRICKLE_PATH = `/v1/trickle?chunks=${TRICKLE.chunks}&chunk_bytes=${TRICKLE.chunkBytes}&interval_ms=${TRICKLE.intervalMs}`;
const TRICKLE_BYTES = TRICKLE.chunks * TRICKLE.chunkBytes;
/** Added first byte over the floor's that issue #19 accepts, at p50. */
export const TTFB_TARGET_MS = 10;

type Always = 'direct' | 'floor' | 'first' | 'replay';
export type StreamRequest = Always | 'first@baseline' | 'replay@baseline';
const REQUESTS: Always[] = ['direct', 'floor', 'first', 'replay'];
const BASELINE_REQUESTS: StreamRequest[] = ['first@baseline', 'replay@baseline'];
const isReplay = (request: StreamRequest): boolean => request.startsWith('replay');

export interface Timing {
  status: number;
  replayed: boolean;
  /** Milliseconds from sending the request to its response headers, first body byte, last body byte. */
  headersMs: number;
  ttfbMs: number;
  ttlbMs: number;
  bytes: number;
  sha256: string;
}

export interface StreamRow extends Timing {
  request: StreamRequest;
  repeat: number;
}

export interface StreamSummary {
  ttfbMs: number;
  ttlbMs: number;
  headersMs: number;
  perRepeatTtfbMs: number[];
  perRepeatTtlbMs: number[];
}

export interface StreamResult {
  trickle: typeof TRICKLE & { bytes: number };
  rows: StreamRow[];
  summary: Record<Always, StreamSummary> & Partial<Record<StreamRequest, StreamSummary>>;
  /** The product's first-time first byte within {@link TTFB_TARGET_MS} of the floor's. */
  ttfbTargetMet: boolean;
}

/** One POST of the trickle to `base` with Idempotency-Key `key`, timed from the moment it is sent. */
function timed(base: string, agent: Agent, key: string, timeoutMs: number): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let t0 = 0;
    let headersMs = Number.NaN;
    let ttfbMs = Number.NaN;
    let bytes = 0;
    const req = request(
      `${base}${TRICKLE_PATH}`,
      {
        method: 'POST',
        agent,
        headers: keyedHeaders(key),
      },
      (res) => {
        headersMs = performance.now() - t0;
        res.on('data', (chunk: Buffer) => {
          if (bytes === 0) ttfbMs = performance.now() - t0;
          bytes += chunk.length;
          hash.update(chunk);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            replayed: res.headers['idempotent-replay'] === 'true',
            headersMs,
            ttfbMs,
            ttlbMs: performance.now() - t0,
            bytes,
            sha256: hash.digest('hex'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${base}: the trickle stalled for ${timeoutMs} ms`)));
    t0 = performance.now();
    req.end(BODY);
  });
}

/** The bytes the origin trickles (see bench/origin.ts): chunk i is `chunkBytes` bytes of the value i mod 256. */
function expectedSha256(): string {
  const hash = createHash('sha256');
  for (let i = 0; i < TRICKLE.chunks; i++) hash.update(Buffer.alloc(TRICKLE.chunkBytes, i % 256));
  return hash.digest('hex');
}

export async function runStream(bench: Bench): Promise<StreamResult> {
  const { settings, origin } = bench;
  const expected = expectedSha256();
  console.log(
    `\nstream: ${settings.repeats} repeats, the origin trickling ${TRICKLE.chunks} × ${TRICKLE.chunkBytes} bytes every ${TRICKLE.intervalMs} ms, one request at a time`,
  );
  const floor = await startTarget(bench, 'floor', 'floor-stream');
  const product = await startTarget(bench, 'product', 'product-stream');
  const baseline = bench.baseline === undefined ? undefined : await startTarget(bench, 'baseline', 'product-stream-baseline');
  const requests = [...REQUESTS, ...(baseline ? BASELINE_REQUESTS : [])];
  // One keep-alive connection per target, opened by the warm-up: no request's time includes a TCP handshake.
  const agent = (): Agent => new Agent({ keepAlive: true, maxSockets: 1 });
  const productAgent = agent();
  const baselineAgent = agent();
  const base: Partial<Record<StreamRequest, [string, Agent]>> = {
    direct: [origin.url, agent()],
    floor: [floor.url, agent()],
    first: [product.url, productAgent],
    replay: [product.url, productAgent],
    ...(baseline ? { 'first@baseline': [baseline.url, baselineAgent], 'replay@baseline': [baseline.url, baselineAgent] } : {}),
  };
  // A replay repeats its first-time request's key; the origin and the floor get keys of their own, so the
  // origin's count per key tells the product's calls apart.
  const keyOf = (prefix: string, request: StreamRequest): string => `${prefix}-${request.replace('replay', 'first')}`;
  const send = (request: StreamRequest, key: string): Promise<Timing> => timed(...base[request]!, key, settings.timeoutS * 1000);
  const rows: StreamRow[] = [];
  const check = (label: string, request: StreamRequest, t: Timing): void => {
    if (t.status !== 201) fail(`${label}: status ${t.status} (expected 201)`);
    if (t.bytes !== TRICKLE_BYTES || t.sha256 !== expected)
      fail(`${label}: ${t.bytes} bytes (sha256 ${t.sha256.slice(0, 12)}), not the origin's ${TRICKLE_BYTES}`);
    if (t.replayed !== isReplay(request)) fail(`${label}: Idempotent-Replay ${t.replayed ? 'present' : 'missing'}`);
  };
  try {
    for (const request of requests) await send(request, keyOf('stream-warm', request));
    for (let rep = 1; rep <= settings.repeats; rep++) {
      // The replay follows its first-time request; otherwise odd repeats in order, even ones reversed (as the scenarios).
      const groups: StreamRequest[][] = [['direct'], ['floor'], ['first', 'replay'], ...(baseline ? [BASELINE_REQUESTS] : [])];
      for (const group of rep % 2 === 1 ? groups : [...groups].reverse()) {
        for (const request of group) {
          const label = `stream ${request} #${rep}`;
          const t = await send(request, keyOf(`stream-r${rep}`, request));
          check(label, request, t);
          rows.push({ request, repeat: rep, ...t });
          console.log(
            `  ${label.padEnd(30)} headers ${fmt(t.headersMs, 1).padStart(7)} ms  first byte ${fmt(t.ttfbMs, 1).padStart(7)} ms  last byte ${fmt(t.ttlbMs, 1).padStart(7)} ms`,
          );
        }
      }
      assertStable(bench.digest, bench.live, `stream #${rep}`);
      await origin.settle(100);
      for (const first of requests.filter((request) => request.startsWith('first'))) {
        const calls = await origin.count(keyOf(`stream-r${rep}`, first));
        if (calls !== 1)
          fail(`stream #${rep}: the ${first} key reached the origin ${calls} times over its request and replay (expected 1)`);
      }
    }
  } finally {
    for (const [, a] of Object.values(base)) a.destroy();
    if (baseline) await stopTarget(bench, baseline);
    await stopTarget(bench, product);
    await stopTarget(bench, floor);
  }
  const summary = Object.fromEntries(
    requests.map((request) => {
      const mine = rows.filter((r) => r.request === request);
      const perRepeatTtfbMs = mine.map((r) => r.ttfbMs);
      const perRepeatTtlbMs = mine.map((r) => r.ttlbMs);
      return [
        request,
        {
          ttfbMs: median(perRepeatTtfbMs),
          ttlbMs: median(perRepeatTtlbMs),
          headersMs: median(mine.map((r) => r.headersMs)),
          perRepeatTtfbMs,
          perRepeatTtlbMs,
        },
      ];
    }),
  ) as StreamResult['summary'];
  return {
    trickle: { ...TRICKLE, bytes: TRICKLE_BYTES },
    rows,
    summary,
    ttfbTargetMet: summary.first.ttfbMs - summary.floor.ttfbMs <= TTFB_TARGET_MS,
  };
}
