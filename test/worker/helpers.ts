/** Helpers shared by the workerd tests: send through the proxy, ask the real origin what it saw. */
import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { Hono } from 'hono';
import { expect, inject } from 'vitest';
import { idempotency, type IdempotencyOptions } from '../../src/middleware';
import { recordName } from '../../src/record/stub';
import { proxyFor } from '../../src/proxy/app';
import type { AttemptLimits, AttemptSpec } from '../../src/record/api';
import type { IdempotencyRecord } from '../../src/record/record';
import { sha256Hex } from '../../src/shared/bytes';
import type { Outcome, StoredResponse } from '../../src/record/api';
import { isStored } from '../../src/middleware/answer';
import { releaseAt } from '../origin/control';

export { whole } from '../origin/control';

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
export function sendWith(vars: Vars, path: string, options: SendOptions = {}): Promise<Response> {
  return sendTo(vars, `https://proxy.test${path}`, options);
}

/** Variables and bindings to put over the test bindings. */
export type Vars = Partial<Record<keyof Env, unknown>> & Record<string, unknown>;

/** {@link sendWith} to a full URL (the request's own URL matters when ORIGIN_URL is "request"). */
export function sendTo(vars: Vars, url: string, options: SendOptions = {}): Promise<Response> {
  const bindings = envWith(vars);
  return proxyFor(bindings).fetch(new Request(url, requestInit(options)), bindings);
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

/** A fresh id for the origin's `/hold/<id>/...` paths, which answer only once {@link release} lets them. */
export const newHold = (): string => crypto.randomUUID();

/** Lets every request the origin holds on `id` (`/hold/<id>/...`, `?hold=<id>`, `?pause=<id>`) go on (and any later one at once). */
export const release = (id: string): Promise<void> => releaseAt(originUrl, id);

/** The RPC methods of the object. */
export type RecordMethod = 'execute' | 'begin' | 'complete' | 'inspect' | 'purge';

/**
 * The real `IDEMPOTENCY` namespace, with every RPC call the Worker makes on its stubs passed through
 * `intercept(method, call)`: to count calls, or to stand in for a platform error (overloaded, retryable) that
 * local workerd cannot produce. `call()` makes the real call. This is the binding's edge; the objects are real.
 */
export function bindingEdge(
  intercept: (method: RecordMethod, call: () => Promise<unknown>) => Promise<unknown>,
): DurableObjectNamespace<IdempotencyRecord> {
  const real = env.IDEMPOTENCY;
  const methods = new Set<string>(['execute', 'begin', 'complete', 'inspect', 'purge']);
  return {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = real.get(id) as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      return new Proxy(stub, {
        get: (target, property) =>
          typeof property === 'string' && methods.has(property)
            ? (...args: unknown[]) => intercept(property as RecordMethod, () => target[property]!(...args))
            : Reflect.get(target, property),
      });
    },
  } as unknown as DurableObjectNamespace<IdempotencyRecord>;
}

/**
 * The stub of the Durable Object that holds `(scope, key)` for the proxy (or, with `namespace` and `kind`, for
 * an app or another kind of scope).
 */
export async function recordStub(key: string, scope = 'Bearer test-token', namespace = 'proxy', kind = 'headers:authorization') {
  return env.IDEMPOTENCY.get(env.IDEMPOTENCY.idFromName(recordName(namespace, kind, await sha256Hex(scope), key)));
}

/** The stored record row of `(auth, key)` without its body, or `undefined` when the object holds none. */
export async function storedRecord(key: string, scope = 'Bearer test-token', namespace = 'proxy', kind = 'headers:authorization') {
  return runInDurableObject(await recordStub(key, scope, namespace, kind), (_, state) => {
    type Row = { state: string; attempt: string; lease_until: number; expires_at: number; status: number | null; chunks: number };
    const stored = state.storage.kv.get<Row>('record');
    if (stored === undefined) return undefined;
    const { state: s, attempt, lease_until, expires_at, status, chunks } = stored;
    return { state: s, attempt, lease_until, expires_at, status, chunks };
  });
}

/** Polls `condition` every 25 ms until it holds; gives up, naming `what`, after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, what = 'the condition', timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  error: { type: string; code: string; message: string };
}

/**
 * Asserts that `res` is the problem document of `code` (RFC 9457: content type, status, `type`, a title
 * and a detail, never cached; with the `error` member SDKs read, saying the same) and returns its body.
 */
export async function expectProblem(res: Response, status: number, code: string): Promise<ProblemBody> {
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  expect(res.headers.get('cache-control')).toBe('no-store');
  const body = (await res.json()) as ProblemBody;
  expect(body).toMatchObject({ status, code, type: `tag:idempotency-proxy,2026:${code}` });
  expect(body.error).toEqual({ type: 'idempotency_error', code, message: body.detail });
  expect(res.status).toBe(status);
  expect(body.title.length).toBeGreaterThan(0);
  expect(body.detail.length).toBeGreaterThan(0);
  return body;
}

/** The `code` of a problem document, or the status as a string for any other answer. */
export async function codeOf(res: Response): Promise<string> {
  return res.headers.get('content-type') === 'application/problem+json' ? ((await res.json()) as ProblemBody).code : String(res.status);
}

/** An `execute()` argument for a POST of `path` at the test origin, with `key` and the default test credential. */
export function attemptSpec(key: string, path: string, overrides: Partial<AttemptLimits> & { maxBodyBytes?: number } = {}): AttemptSpec {
  const { maxBodyBytes = 1024 * 1024, ...limits } = overrides;
  return {
    fingerprint: `fp:${path}`,
    timeoutMs: 3000,
    leaseMs: 4000,
    ttlMs: 60_000,
    ...limits,
    origin: {
      method: 'POST',
      url: `${originUrl}${path}`,
      headers: [
        ['idempotency-key', key],
        ['authorization', 'Bearer test-token'],
      ],
      body: new TextEncoder().encode('body').buffer as ArrayBuffer,
      maxBodyBytes,
    },
  };
}

/** Resets the object as a deploy or crash would: in-memory state is lost, storage stays. */
export async function resetObject(key: string, scope?: string, namespace?: string): Promise<void> {
  await runInDurableObject(await recordStub(key, scope, namespace), (_, state) => {
    try {
      state.abort('test reset');
    } catch {
      // abort() throws to unwind the caller; the reset has happened.
    }
  }).catch(() => undefined);
}

/** A Hono app in handler mode whose one handler gives `answer()` and counts its runs; `request(key)` POSTs to it. */
export function answering(answer: () => Response | Promise<Response>, options: IdempotencyOptions = {}) {
  let runs = 0;
  const app = new Hono();
  app.use(idempotency({ reporter: false, ...options }));
  app.post('*', () => {
    runs++;
    return answer();
  });
  const request = (key: string) =>
    Promise.resolve(app.request('/x', { method: 'POST', headers: { authorization: 'Bearer t', 'idempotency-key': key }, body: 'x' }, env));
  return { request, runs: () => runs };
}

/** An outcome whose response, if any, has been read to its end (for a streamed one: once its record is stored). */
export type ReadOutcome = Exclude<Outcome, { kind: 'response' }> | (Extract<Outcome, { kind: 'response' }> & { response: StoredResponse });

/** Reads the response of an object's outcome to its end, whether it was read back from storage or is still streaming. */
export async function readOutcome(returned: unknown): Promise<ReadOutcome> {
  // The RPC stub's types lose the header tuples; the value is an Outcome.
  const outcome = returned as Outcome;
  if (outcome.kind !== 'response' || isStored(outcome.response)) return outcome as ReadOutcome;
  const body = await new Response(outcome.response.body).arrayBuffer();
  return { ...outcome, response: { ...outcome.response, body } };
}

/**
 * Makes the object's storage refuse every KV write from now on (until the object is reset), as a full disk would:
 * `put` and `delete` of `state.storage.kv` throw. The record store holds that same KV handle, so it sees the refusal.
 */
export function refuseKvWrites(state: DurableObjectState, message: string): void {
  const refuse = () => {
    throw new Error(message);
  };
  Object.defineProperty(state.storage.kv, 'put', { value: refuse, configurable: true });
  Object.defineProperty(state.storage.kv, 'delete', { value: refuse, configurable: true });
}

/** The object's body chunk rows (`body_chunk`) in order, none when the table was never made. */
export function chunkRows(state: DurableObjectState): ArrayBuffer[] {
  const sql = state.storage.sql;
  if (sql.exec(`SELECT name FROM sqlite_master WHERE name = 'body_chunk'`).toArray().length === 0) return [];
  return sql
    .exec<{ data: ArrayBuffer }>(`SELECT data FROM body_chunk ORDER BY seq`)
    .toArray()
    .map((row) => row.data);
}

/** A fresh random 256-bit key in base64, for `IDEMPOTENCY_ENCRYPTION_KEYS`. */
export const newSecret = (): string => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));

/**
 * Sets (or, with `undefined`, removes) `IDEMPOTENCY_ENCRYPTION_KEYS` on the env of the live object of `key`: a keyring
 * bound for the whole worker project would change what every other test stores and reads. A reset brings the bound
 * env back, so set it again before every call.
 */
export async function useKeyring(key: string, keys: string | undefined): Promise<void> {
  await runInDurableObject(await recordStub(key), (instance) => {
    const own = instance as unknown as { env: Record<string, unknown> };
    own.env = { ...own.env, IDEMPOTENCY_ENCRYPTION_KEYS: keys };
  });
}

/** Sets the keyring, then runs a POST of `path` under `key` through the real object (and origin), its answer read whole. */
export async function runWithKeyring(key: string, keys: string | undefined, path: string): Promise<ReadOutcome> {
  await useKeyring(key, keys);
  return readOutcome(await (await recordStub(key)).execute(attemptSpec(key, path, { maxBodyBytes: 4 * 1024 * 1024 })));
}
