/**
 * @module
 * The workload of a fault-schedule run, all drawn from one seed: the proxy's configuration (routes that set the three
 * `on_unknown` policies and a short TTL, short timeouts, a small body limit, an admin token), the key space (a few keys
 * shared by three credentials, two or three bodies each), and what each client sends next: which key, which body,
 * which origin behaviour, whether it reads the answer to its end, resends it, or purges the key first.
 */
import { createHash } from 'node:crypto';
import { CONTROL_PREFIX } from '../../src/check/origin.ts';
import type { RouteSpec } from './history.ts';
import type { Random } from './random.ts';

export const TIMEOUT_MS = 1000;
export const LEASE_MS = 3000;
export const MAX_BODY_BYTES = 64 * 1024;
export const ADMIN_TOKEN = 'torture-admin-token-0123456789abcdef';
export const API_PREFIX = '/_idempotency';
/** The TTL of the policy routes: long enough for many duplicates, short enough that keys run again during a run. */
const TTL_MS = 30_000;

/**
 * The routes, each with its own policy. `short` expires its keys after 2 s, before an attempt's 3 s lease ends, and
 * waits for an answer's head as long as the lease.
 */
export const ROUTES: readonly RouteSpec[] = [
  { name: 'retry', prefix: '/t/retry/', policy: 'retry', ttlMs: TTL_MS, timeoutMs: TIMEOUT_MS },
  { name: 'hold', prefix: '/t/hold/', policy: 'hold', ttlMs: TTL_MS, timeoutMs: TIMEOUT_MS },
  { name: 'reconcile', prefix: '/t/reconcile/', policy: 'reconcile', ttlMs: TTL_MS, timeoutMs: TIMEOUT_MS },
  { name: 'short', prefix: '/t/short/', policy: 'retry', ttlMs: 2000, timeoutMs: LEASE_MS },
];

/** The proxy's variables for the run (on top of wrangler.toml's). */
export function proxyVars(originUrl: string): Record<string, unknown> {
  return {
    ORIGIN_URL: originUrl,
    ORIGIN_TIMEOUT_MS: String(TIMEOUT_MS),
    ORIGIN_LEASE_MS: String(LEASE_MS),
    MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    IDEMPOTENCY_ADMIN_TOKEN: ADMIN_TOKEN,
    IDEMPOTENCY_API_PREFIX: API_PREFIX,
    LOG_REQUESTS: 'false',
    IDEMPOTENCY_TTL_SECONDS: String(TTL_MS / 1000),
    IDEMPOTENCY_ROUTES: [
      { pattern: '/t/retry/*', on_unknown: 'retry' },
      { pattern: '/t/hold/*', on_unknown: 'hold' },
      { pattern: '/t/reconcile/*', on_unknown: 'reconcile', reconcile_url: `${CONTROL_PREFIX}reconcile/{key}` },
      { pattern: '/t/short/*', ttl_seconds: ROUTES[3]!.ttlMs / 1000, timeout_ms: ROUTES[3]!.timeoutMs },
    ],
  };
}

export const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

export interface Credential {
  readonly label: string;
  readonly authorization: string;
  /** Hex SHA-256 of the whole `Authorization` value: the proxy's scope, and what an admin purge names. */
  readonly scope: string;
}

/** Three credentials that share every key string. */
export const CREDENTIALS: readonly Credential[] = ['a', 'b', 'c'].map((label) => {
  const authorization = `Bearer torture-${label}`;
  return { label, authorization, scope: sha256(authorization) };
});

export interface Key {
  readonly key: string;
  readonly route: RouteSpec;
  readonly path: string;
  /** The request bodies this key is sent with: the same key with another body must conflict. */
  readonly bodies: readonly Buffer<ArrayBuffer>[];
}

/** The key space: `count` keys, spread over the routes, with two or three bodies each. */
export function keySpace(random: Random, count: number): Key[] {
  const routes = random.shuffle(Array.from({ length: count }, (_, i) => ROUTES[i % ROUTES.length]!));
  return routes.map((route, i) => {
    const key = `k${String(i).padStart(2, '0')}`;
    const bodies = Array.from({ length: random.int(2, 3) }, (_, variant) =>
      Buffer.from(JSON.stringify({ key, variant, amount: random.int(1, 99_999) })),
    );
    return { key, route, path: `${route.prefix}${key}`, bodies };
  });
}

/** The origin behaviour of one send (a resend draws its own). */
export function drawBehaviour(random: Random, route: RouteSpec): string {
  const kind = random.weighted([
    ['fast', 30],
    ['slow', 16],
    ['status', 18],
    ['reset-before-status', 5],
    ['reset-mid-body', 5],
    ['sse', 12],
    ['big', 5],
    ['beyond-lease', 2],
  ] as const);
  const delay = () => (random.chance(0.3) ? `:${random.int(50, 1500)}` : '');
  switch (kind) {
    case 'fast':
      return 'fast';
    case 'slow':
      // On the short route, answers that end after the key's 2 s TTL and before the 3 s lease.
      return `slow:${route.name === 'short' && random.chance(0.5) ? random.int(1900, 2900) : random.int(20, 1500)}`;
    case 'status':
      return `status:${random.pick([201, 202, 400, 404, 409, 422, 500, 502, 503, 408, 429, 401, 403])}${random.chance(0.2) ? `:${random.int(100, 1300)}` : ''}`;
    case 'reset-before-status':
    case 'reset-mid-body':
      return `${kind}${delay()}`;
    case 'sse':
      return `sse:${random.int(2, 6)}:${random.int(20, 500)}`;
    case 'big':
      return `big:${random.int(70, 200) * 1024}${random.chance(0.3) ? ':chunked' : ''}`;
    case 'beyond-lease':
      return random.chance(0.5) ? `slow:${random.int(LEASE_MS + 100, LEASE_MS + 1500)}` : `sse:8:${random.int(420, 600)}`;
  }
}

/** How a client treats one answer: read it whole, or abort after some bytes, or give up after some time. */
export interface ClientPlan {
  readonly abortAfterBytes: number | null;
  readonly giveUpMs: number | null;
}

export function drawPlan(random: Random): ClientPlan {
  const r = random.next();
  if (r < 0.08) return { abortAfterBytes: random.int(0, 300), giveUpMs: null };
  if (r < 0.12) return { abortAfterBytes: null, giveUpMs: random.int(50, 2500) };
  return { abortAfterBytes: null, giveUpMs: null };
}

/** What a client does next. */
export type Story =
  | { readonly kind: 'write'; readonly credential: Credential; readonly key: Key; readonly variant: number; readonly resends: number }
  /** Purge the key of the client's last write, then send that write again. */
  | { readonly kind: 'purge' }
  /** A keyed write with a body over `MAX_BODY_BYTES`: refused with 413, the origin never called. */
  | { readonly kind: 'oversize'; readonly credential: Credential; readonly key: Key };

export function drawStory(random: Random, keys: readonly Key[]): Story {
  const kind = random.weighted([
    ['write', 90],
    ['purge', 8],
    ['oversize', 2],
  ] as const);
  const credential = random.pick(CREDENTIALS);
  const key = random.pick(keys);
  if (kind === 'purge') return { kind };
  if (kind === 'oversize') return { kind, credential, key };
  // Most sends use the key's first body, so that resends and other clients' sends meet as duplicates.
  const variant = random.chance(0.75) ? 0 : random.int(1, key.bodies.length - 1);
  let resends = 0;
  while (resends < 4 && random.chance(0.45)) resends++;
  return { kind, credential, key, variant, resends };
}

/** A body one byte to 1 KiB over the limit. */
export const oversizeBody = (random: Random): Buffer<ArrayBuffer> => Buffer.alloc(MAX_BODY_BYTES + random.int(1, 1024), 0x78);
