/** Helpers shared by the workerd tests: send through the proxy, ask the real origin what it saw. */
import { env, exports } from 'cloudflare:workers';
import { inject } from 'vitest';
import { recordName, sha256Hex } from '../../src/core/fingerprint';
import { createApp } from '../../src/app';
import type { IdempotencyRecord } from '../../src/core/record';

export const originUrl = inject('originUrl');

export interface SendOptions {
  method?: string;
  key?: string | null;
  auth?: string | null;
  body?: BodyInit | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A fresh, unique key. */
export const newKey = (): string => crypto.randomUUID();

function requestInit({ method = 'POST', key, auth = 'Bearer test-token', body, headers = {}, signal }: SendOptions): RequestInit {
  const init: RequestInit = { method, headers: { ...headers }, redirect: 'manual' };
  const h = init.headers as Record<string, string>;
  if (key != null) h['idempotency-key'] = key;
  if (auth != null) h['authorization'] = auth;
  if (body !== undefined) init.body = body;
  if (signal) init.signal = signal;
  return init;
}

/** Sends a request through the proxy Worker (the real `fetch` handler, as `SELF.fetch`). */
export function send(path: string, options: SendOptions = {}): Promise<Response> {
  return exports.default.fetch(`https://proxy.test${path}`, requestInit(options));
}

/**
 * Sends a request to a fresh proxy app with some variables overridden (same bindings otherwise).
 * Also used where the service-binding transport of `exports.default` would drop an empty header.
 */
export function sendWith(vars: Partial<Record<keyof Env, unknown>> & Record<string, unknown>, path: string, options: SendOptions = {}): Promise<Response> {
  return Promise.resolve(createApp().request(`https://proxy.test${path}`, requestInit(options), envWith(vars)));
}

const merged = new WeakMap<object, object>();

/**
 * The bindings with `vars` on top, the same object for the same `vars` object: like workerd's `env`,
 * so configuration (and the layers built from it) is resolved once per `vars`.
 */
function envWith(vars: object): object {
  let result = merged.get(vars);
  if (result === undefined) {
    result = { ...env, ...vars };
    merged.set(vars, result);
  }
  return result;
}

/** How many times the origin was called with this Idempotency-Key. */
export async function originCalls(key: string): Promise<number> {
  const res = await fetch(`${originUrl}/__calls?key=${encodeURIComponent(key)}`);
  return ((await res.json()) as { count: number }).count;
}

/** How many times the origin was called on this exact path. */
export async function originPathCalls(path: string): Promise<number> {
  const res = await fetch(`${originUrl}/__calls?path=${encodeURIComponent(path)}`);
  return ((await res.json()) as { count: number }).count;
}

/** Total calls the origin has received (all keys). */
export async function originTotal(): Promise<number> {
  const res = await fetch(`${originUrl}/__calls`);
  return ((await res.json()) as { total: number }).total;
}

type ExecuteSpec = Parameters<DurableObjectStub<IdempotencyRecord>['execute']>[0];

/**
 * The real `IDEMPOTENCY` namespace with every `execute()` call the Worker makes passed through
 * `intercept`, which gets the spec and the real call (to count calls, or to fail some first).
 */
export function interceptExecute(intercept: (spec: ExecuteSpec, execute: (spec: ExecuteSpec) => Promise<unknown>) => Promise<unknown>) {
  const real = env.IDEMPOTENCY;
  return {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = real.get(id);
      return { execute: (spec: ExecuteSpec) => intercept(spec, (s) => stub.execute(s)) };
    },
  };
}

/** The stub of the Durable Object that holds `(auth, key)`. */
export async function recordStub(key: string, auth = 'Bearer test-token') {
  return env.IDEMPOTENCY.get(env.IDEMPOTENCY.idFromName(recordName(await sha256Hex(auth), key)));
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
}

/** Asserts nothing and returns the parsed problem body (content type checked by the caller). */
export async function problemOf(res: Response): Promise<ProblemBody> {
  return (await res.json()) as ProblemBody;
}
