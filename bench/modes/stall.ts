/**
 * @module
 * `--stall` (issue #29, findings 4 and 5): what readers that stop reading cost the runtime. The origin sends an
 * answer of `--stall-mib` MiB; `--stall-readers` clients ask for it under one key and then read nothing more (each
 * pauses its socket once the response head arrived), and the runtime's RSS is sampled every 20 ms for
 * `--stall-hold` seconds: the peak over the RSS just before, per case, median of `--repeats` runs, each on a new
 * process with empty storage.
 * - `live`: the first request and `readers - 1` duplicates that join its answer while the origin still sends it
 *   (over about 2 s);
 * - `replay`: the answer is stored first (read whole by one client), then `readers` replays of it.
 *
 * Answers other than the body (a reader refused with a problem) are read and counted by status.
 */
import { Agent, type ClientRequest, type IncomingMessage, request } from 'node:http';
import { fmt, median, mib } from '../lib/env.ts';
import { fail } from '../lib/load.ts';
import { type Bench, startTarget, stopTarget } from '../lib/measure.ts';
import { rssBytes } from '../lib/proc.ts';
import { BODY, keyedHeaders } from '../lib/scenarios.ts';
import type { Target } from '../lib/targets.ts';

export type StallCase = 'live' | 'replay';
const CASES: StallCase[] = ['live', 'replay'];

export interface StallRow {
  case: StallCase;
  repeat: number;
  baselineBytes: number;
  peakBytes: number;
  /** Status of each reader's answer: how many got the body, how many a problem. */
  statuses: Record<string, number>;
}

export interface StallResult {
  readers: number;
  answerBytes: number;
  holdS: number;
  rows: StallRow[];
  /** Median of (peak - baseline) per case, in bytes. */
  summary: Record<StallCase, { addedBytes: number; perRepeat: number[]; statuses: Record<string, number> }>;
}

const CHUNK = 32 * 1024;
/** The live answer arrives over about this long, so that every duplicate joins it while it still streams. */
const LIVE_MS = 2000;

/** The trickle of `bytes` (bench/origin.ts) in 32 KiB chunks over `overMs`. */
const tricklePath = (bytes: number, overMs: number): string => {
  const chunks = Math.ceil(bytes / CHUNK);
  return `/v1/trickle?chunks=${chunks}&chunk_bytes=${CHUNK}&interval_ms=${Math.floor(overMs / chunks)}`;
};

interface Reader {
  req: ClientRequest;
  /** The answer's head; a problem's body is read whole, an answer's body is left unread. */
  head: Promise<IncomingMessage>;
}

/** A keyed POST whose answer is not read past its head (a problem's body is read). */
function stalled(base: string, agent: Agent, path: string, key: string): Reader {
  let req!: ClientRequest;
  const head = new Promise<IncomingMessage>((resolve, reject) => {
    req = request(
      `${base}${path}`,
      {
        method: 'POST',
        agent,
        headers: keyedHeaders(key),
      },
      (res) => {
        if (res.statusCode === 200 || res.statusCode === 201) res.pause();
        else res.resume();
        resolve(res);
      },
    );
    req.on('error', reject);
    req.end(BODY);
  });
  head.catch(() => {});
  return { req, head };
}

/** A keyed POST read to its end. */
function whole(base: string, path: string, key: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'POST', headers: keyedHeaders(key) }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(BODY);
  });
}

const rss = (target: Target): number => target.runtime.reduce((sum, pid) => sum + rssBytes(pid), 0);

/** Samples `target`'s RSS every 20 ms for `ms`; returns the peak. */
async function peakOver(target: Target, ms: number): Promise<number> {
  let peak = rss(target);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    peak = Math.max(peak, rss(target));
  }
  return peak;
}

async function runCase(bench: Bench, kind: StallCase, repeat: number): Promise<StallRow> {
  const { settings } = bench;
  const bytes = settings.stallMib * 1024 * 1024;
  const target = await startTarget(bench, 'product', `product-stall-${kind}-r${repeat}`, {
    vars: { MAX_BODY_BYTES: String(bytes + 1024 * 1024) },
  });
  // One connection per reader: a paused response holds its connection.
  const agent = new Agent({ keepAlive: false, maxSockets: settings.stallReaders + 1 });
  const readers: Reader[] = [];
  try {
    // Warm-up: the isolate and the object class are loaded before the baseline.
    const warm = await whole(target.url, tricklePath(CHUNK, 0), `stall-warm-${kind}-${repeat}`);
    if (warm.status !== 201) fail(`stall ${kind} #${repeat}: warm-up answered ${warm.status}`);
    const key = `stall-${kind}-r${repeat}`;
    let path = tricklePath(bytes, LIVE_MS);
    if (kind === 'replay') {
      path = tricklePath(bytes, 0);
      const first = await whole(target.url, path, key);
      if (first.status !== 201 || first.bytes !== bytes)
        fail(`stall replay #${repeat}: the first answer was ${first.status}, ${first.bytes} bytes`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    const baselineBytes = rss(target);
    const peak = peakOver(target, settings.stallHoldS * 1000);
    const first = stalled(target.url, agent, path, key);
    readers.push(first);
    // Duplicates of a live answer join once its head has arrived (its body still streaming).
    if (kind === 'live') await first.head;
    for (let i = readers.length; i < settings.stallReaders; i++) readers.push(stalled(target.url, agent, path, key));
    const peakBytes = await peak;
    const statuses: Record<string, number> = {};
    for (const reader of readers) {
      const status = String((await reader.head).statusCode ?? 0);
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
    console.log(
      `  stall ${kind} #${repeat}: RSS ${fmt(mib(baselineBytes), 1)} MiB before, peak ${fmt(mib(peakBytes), 1)} MiB (+${fmt(mib(peakBytes - baselineBytes), 1)} MiB); answers ${JSON.stringify(statuses)}`,
    );
    return { case: kind, repeat, baselineBytes, peakBytes, statuses };
  } finally {
    for (const reader of readers) reader.req.destroy();
    agent.destroy();
    await stopTarget(bench, target);
  }
}

export async function runStall(bench: Bench): Promise<StallResult> {
  const { settings } = bench;
  console.log(
    `\nstall: ${settings.stallReaders} readers that stop reading, an answer of ${settings.stallMib} MiB, RSS sampled for ${settings.stallHoldS} s; ${settings.repeats} repeats`,
  );
  const rows: StallRow[] = [];
  for (let rep = 1; rep <= settings.repeats; rep++) for (const kind of CASES) rows.push(await runCase(bench, kind, rep));
  const summary = Object.fromEntries(
    CASES.map((kind) => {
      const mine = rows.filter((r) => r.case === kind);
      const perRepeat = mine.map((r) => r.peakBytes - r.baselineBytes);
      const statuses: Record<string, number> = {};
      for (const r of mine) for (const [s, n] of Object.entries(r.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
      return [kind, { addedBytes: median(perRepeat), perRepeat, statuses }];
    }),
  ) as StallResult['summary'];
  return { readers: settings.stallReaders, answerBytes: settings.stallMib * 1024 * 1024, holdS: settings.stallHoldS, rows, summary };
}
