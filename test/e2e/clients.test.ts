/**
 * Real API SDKs through the proxy under `wrangler dev` (issue #17): stripe-node and a Stainless-generated SDK
 * (`orb-billing`), each with its own retry rules (read in their sources: stripe-node retries connection errors,
 * timeouts, 409 and 5xx unless `Stripe-Should-Retry: false`; Stainless SDKs retry 408, 409, 429 and 5xx unless
 * `x-should-retry: false`). Each SDK talks to a counting relay in front of the proxy, so every attempt that leaves
 * the SDK is counted by something the SDK does not control.
 */
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import Orb from 'orb-billing';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../scripts/lib/processes.ts';
import { startTestOrigin, type TestOrigin } from '../origin/server.ts';
import { newStateDir, originCount, release, removeDir, type RunningProxy, startProxy, until } from './harness.ts';

/** A relay in front of a proxy that counts the requests it passes on, by Idempotency-Key. */
interface Relay {
  readonly port: number;
  readonly url: string;
  attempts(key: string): number;
  /** The keys seen for a path, in order of arrival. */
  keysFor(path: string): string[];
  close(): Promise<void>;
}

async function startRelay(target: () => string): Promise<Relay> {
  const seen: { key: string; path: string }[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const key = String(req.headers['idempotency-key'] ?? '');
    seen.push({ key, path: req.url ?? '' });
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers))
      if (name !== 'host' && name !== 'connection' && value !== undefined) headers.set(name, String(value));
    try {
      const answer = await fetch(`${target()}${req.url}`, {
        method: req.method ?? 'GET',
        headers,
        body: chunks.length === 0 ? null : Buffer.concat(chunks),
      });
      const body = Buffer.from(await answer.arrayBuffer());
      const out: Record<string, string> = {};
      // fetch decoded the body and knows its length: the relay sends what it read.
      answer.headers.forEach((value, name) => {
        if (name !== 'content-encoding' && name !== 'content-length') out[name] = value;
      });
      res.writeHead(answer.status, out);
      res.end(body);
    } catch {
      res.destroy();
    }
  });
  // A client that gave up (a timeout) closes its socket; the relay's own fetch goes on, as a proxy's would.
  server.on('clientError', (_, socket) => socket.destroy());
  const port = await listen(server);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    attempts: (key) => seen.filter((entry) => entry.key === key).length,
    keysFor: (path) => seen.filter((entry) => entry.path === path).map((entry) => entry.key),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const setup = {} as {
  origin: TestOrigin;
  /** The default problem format (orb-billing, and stripe-node since #28). */
  problems: RunningProxy;
  /** IDEMPOTENCY_ERROR_FORMAT=error_object (stripe-node). */
  errorObjects: RunningProxy;
  stateDirs: string[];
  toProblems: Relay;
  toErrorObjects: Relay;
};
// Small enough for the padded answer of /sdk/0/5000 not to be stored.
const VARS = { MAX_BODY_BYTES: '2000' };

beforeAll(async () => {
  setup.origin = await startTestOrigin();
  setup.stateDirs = [newStateDir(), newStateDir()];
  [setup.problems, setup.errorObjects] = await Promise.all([
    startProxy({ originUrl: setup.origin.url, stateDir: setup.stateDirs[0]!, vars: VARS }),
    startProxy({ originUrl: setup.origin.url, stateDir: setup.stateDirs[1]!, vars: { ...VARS, IDEMPOTENCY_ERROR_FORMAT: 'error_object' } }),
  ]);
  setup.toProblems = await startRelay(() => setup.problems.url);
  setup.toErrorObjects = await startRelay(() => setup.errorObjects.url);
});

afterAll(async () => {
  await setup.toProblems?.close();
  await setup.toErrorObjects?.close();
  await Promise.all([setup.problems?.stop(), setup.errorObjects?.stop()]);
  await setup.origin?.close();
  for (const dir of setup.stateDirs ?? []) removeDir(dir);
});

/** The error a promise rejects with. */
async function rejection(promise: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Record<string, unknown>;
  }
  throw new Error('expected the SDK to raise an error');
}

describe('stripe-node (maxNetworkRetries), IDEMPOTENCY_ERROR_FORMAT=error_object', () => {
  const stripe = (timeout = 20_000, maxNetworkRetries = 3) => {
    const { port } = setup.toErrorObjects;
    return new Stripe('sk_test_e2e', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries, timeout });
  };

  it('times out before the origin answers, retries with its own key, and gets the object of the one origin run', async () => {
    const hold = randomUUID();
    // The origin holds its answer until the SDK has timed out and retried.
    const path = `/v1/sdk/0/0/stripe-timeout-${randomUUID()}?hold=${hold}`;
    const request = stripe(800, 8).rawRequest('POST', path, { amount: 500 });
    await until(() => setup.toErrorObjects.keysFor(path).length > 1, 'the SDK to time out and retry');
    await release(setup.origin.url, hold);
    const object = (await request) as unknown as { id: string; call: number };
    const keys = setup.toErrorObjects.keysFor(path);
    // It did time out and retry, every time with the same key of its own.
    expect(keys.length).toBeGreaterThan(1);
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(/^stripe-node-retry-/);
    expect(await originCount(setup.origin.url, { key: keys[0]! })).toBe(1);
    expect(object).toMatchObject({ object: 'sdk_object', call: 1 });
    expect(object.id).toMatch(/^obj_/);
  });

  it('raises a 409 idempotency error for a reused key, after exactly one attempt', async () => {
    const key = randomUUID();
    const path = `/v1/sdk/0/0/stripe-reused-${randomUUID()}`;
    await stripe().rawRequest('POST', path, { amount: 500 }, { idempotencyKey: key });
    const error = await rejection(stripe().rawRequest('POST', path, { amount: 501 }, { idempotencyKey: key }));
    // stripe-node names its error class after the status (StripeAPIError for a 409); the envelope's type is kept.
    expect(error).toBeInstanceOf(Stripe.errors.StripeError);
    expect(error).toMatchObject({ statusCode: 409, rawType: 'idempotency_error', code: 'idempotency_key_reused' });
    expect(setup.toErrorObjects.attempts(key)).toBe(2);
    expect(await originCount(setup.origin.url, { key })).toBe(1);
  });

  it('gets an answer too large to store once, then raises a 502 response_too_large after exactly one attempt', async () => {
    const key = randomUUID();
    const path = `/v1/sdk/0/5000/stripe-large-${randomUUID()}`;
    // The first answer streams through whole; only its retries hear it cannot be replayed.
    expect(await stripe().rawRequest('POST', path, {}, { idempotencyKey: key })).toMatchObject({ object: 'sdk_object', call: 1 });
    const error = await rejection(stripe().rawRequest('POST', path, {}, { idempotencyKey: key }));
    expect(error).toMatchObject({ statusCode: 502, code: 'response_too_large' });
    expect(setup.toErrorObjects.attempts(key)).toBe(2);
    expect(await originCount(setup.origin.url, { key })).toBe(1);
  });
});

describe('stripe-node, with the default problem documents (#28)', () => {
  it('raises a 409 for a reused key rather than taking the problem for the created object', async () => {
    const { port } = setup.toProblems;
    const stripe = new Stripe('sk_test_e2e', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 3 });
    const key = randomUUID();
    const path = `/v1/sdk/0/0/stripe-default-${randomUUID()}`;
    await stripe.rawRequest('POST', path, { amount: 500 }, { idempotencyKey: key });
    const error = await rejection(stripe.rawRequest('POST', path, { amount: 501 }, { idempotencyKey: key }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeError);
    expect(error).toMatchObject({ statusCode: 409, rawType: 'idempotency_error', code: 'idempotency_key_reused' });
    expect(setup.toProblems.attempts(key)).toBe(2);
    expect(await originCount(setup.origin.url, { key })).toBe(1);
  });
});

describe('orb-billing, a Stainless-generated SDK (maxRetries), problem documents', () => {
  const orb = (timeout = 20_000, maxRetries = 3) => new Orb({ apiKey: 'orb-e2e', baseURL: setup.toProblems.url, timeout, maxRetries });

  it('times out before the origin answers, retries with its own key, and gets the object of the one origin run', async () => {
    const hold = randomUUID();
    // The origin holds its answer until the SDK has timed out and retried.
    const path = `/sdk/0/0/orb-timeout-${randomUUID()}?hold=${hold}`;
    const request = orb(800, 8).post(path, { body: { amount: 500 } });
    await until(() => setup.toProblems.keysFor(path).length > 1, 'the SDK to time out and retry');
    await release(setup.origin.url, hold);
    const object = (await request) as { id: string; call: number };
    const keys = setup.toProblems.keysFor(path);
    expect(keys.length).toBeGreaterThan(1);
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(/^stainless-node-retry-/);
    expect(await originCount(setup.origin.url, { key: keys[0]! })).toBe(1);
    expect(object).toMatchObject({ object: 'sdk_object', call: 1 });
  });

  it('raises a 409 for a reused key, after exactly one attempt', async () => {
    const key = randomUUID();
    const path = `/sdk/0/0/orb-reused-${randomUUID()}`;
    await orb().post(path, { body: { amount: 500 }, idempotencyKey: key });
    const error = await rejection(orb().post(path, { body: { amount: 501 }, idempotencyKey: key }));
    expect(error).toBeInstanceOf(Orb.ConflictError);
    expect(error).toMatchObject({ status: 409, error: { code: 'idempotency_key_reused' } });
    expect(setup.toProblems.attempts(key)).toBe(2);
    expect(await originCount(setup.origin.url, { key })).toBe(1);
  });

  it('gets an answer too large to store once, then raises a 502 response_too_large after exactly one attempt', async () => {
    const key = randomUUID();
    const path = `/sdk/0/5000/orb-large-${randomUUID()}`;
    expect(await orb().post(path, { body: {}, idempotencyKey: key })).toMatchObject({ object: 'sdk_object', call: 1 });
    const error = await rejection(orb().post(path, { body: {}, idempotencyKey: key }));
    expect(error).toMatchObject({ status: 502, error: { code: 'response_too_large' } });
    expect(setup.toProblems.attempts(key)).toBe(2);
    expect(await originCount(setup.origin.url, { key })).toBe(1);
  });
});
