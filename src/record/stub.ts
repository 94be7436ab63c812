/**
 * @module
 * The Worker's side of the RPC seam: how a Worker reaches the object of a key. A key's record name; the namespace
 * that holds it (the Durable Object binding, inside its jurisdiction if one is set, after the configuration the objects
 * read from the same env is checked); the object of a name, placed by the location hint; calls to it with a fresh stub
 * per try, retried only when the platform says so (`retryable` and not `overloaded`); and the hash that names it in log
 * lines. Shared by the middleware and the key lookups.
 *
 * Retrying `execute()` is safe because the object is idempotent by construction: a repeated call joins, replays, or
 * reports the attempt in progress (a retry that joins the attempt its first try started is answered as a replay).
 * `begin()` is never retried (see the middleware).
 */
import type { IdempotencyRecord } from './record';
import { keyringError } from './seal';
import { reject } from '../shared/problem';

/** Options for {@link callDurableObject}. */
export interface RetryOptions {
  /** Total tries, the first included. @default 3 */
  readonly attempts?: number;
  /** Base delay of the jittered exponential backoff, in ms. @default 50 */
  readonly baseDelayMs?: number;
}

interface PlatformError {
  retryable?: boolean;
  overloaded?: boolean;
}

/** Whether the platform marked `error` safe to retry. */
export function isRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { retryable, overloaded } = error as PlatformError;
  return retryable === true && overloaded !== true;
}

/**
 * Calls `call` with a fresh stub each time (a stub can be left broken by an error) and retries
 * retryable failures with full-jitter backoff.
 *
 * @param makeStub - returns a new stub; called once per try
 * @param call - the RPC to make
 * @throws the last error when it is not retryable or the tries are used up
 */
async function callDurableObject<S, R>(
  makeStub: () => S,
  call: (stub: S) => Promise<R>,
  { attempts = 3, baseDelayMs = 50 }: RetryOptions = {},
): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(makeStub());
    } catch (error) {
      if (attempt >= attempts || !isRetryable(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * baseDelayMs * 2 ** attempt));
    }
  }
}

/**
 * The Durable Object name of a key. The JSON array keeps the parts apart whatever they contain, so a key
 * used by the proxy and by an app, or under two kinds of scope, can never name the same object.
 *
 * @param namespace - who uses the record: `proxy`, or an app's `namespace` option
 * @param kind - {@link Scope.kind}
 * @param scopeHash - hex SHA-256 of the scope
 * @param key - the normalised key
 * @param host - with `hostScoped`, the request's host: a fifth part, so names without it never change
 */
export const recordName = (namespace: string, kind: string, scopeHash: string, key: string, host?: string): string =>
  JSON.stringify(host === undefined ? [namespace, kind, scopeHash, key] : [namespace, kind, scopeHash, key, host]);

/** The `key_hash` of log lines: the first 16 hex digits of the record's Durable Object id. */
export const keyHashOf = (id: DurableObjectId): string => id.toString().slice(0, 16);

/** The data residency regions of Durable Objects: objects created in one never leave it. */
export const JURISDICTIONS = ['eu', 'fedramp', 'fedramp-high', 'us'] as const satisfies readonly DurableObjectJurisdiction[];
/** Where new objects may be placed. */
export const LOCATION_HINTS = [
  'wnam',
  'enam',
  'sam',
  'weur',
  'eeur',
  'apac',
  'apac-ne',
  'apac-se',
  'oc',
  'afr',
  'me',
] as const satisfies readonly DurableObjectLocationHint[];

/** How to reach the records. */
export interface RecordsOptions {
  readonly binding: string;
  readonly jurisdiction: DurableObjectJurisdiction | undefined;
  readonly locationHint: DurableObjectLocationHint | undefined;
  readonly retry: RetryOptions;
  /** The key header, named in the detail of `idempotency_unavailable`. */
  readonly headerName: string;
}

/** A stub of one record's object. */
export type RecordStub = DurableObjectStub<IdempotencyRecord>;

/** Where one record lives. */
export interface RecordRef {
  readonly namespace: DurableObjectNamespace<IdempotencyRecord>;
  readonly id: DurableObjectId;
}

/**
 * Why the configuration the objects read from `env` cannot work (`IDEMPOTENCY_ENCRYPTION_KEYS`), or `null`; checked
 * once per `env` object (workerd hands every request of an isolate the same one).
 */
const objectConfig = new WeakMap<object, string | null>();

function objectConfigError(env: Readonly<Record<string, unknown>>): string | null {
  let error = objectConfig.get(env);
  if (error === undefined) {
    error = keyringError(env['IDEMPOTENCY_ENCRYPTION_KEYS']) ?? null;
    objectConfig.set(env, error);
  }
  return error;
}

/** The records of one configuration. */
export class Records {
  readonly #options: RecordsOptions;
  /** The jurisdiction's namespace, per binding object (one per isolate). */
  readonly #scoped = new WeakMap<object, DurableObjectNamespace<IdempotencyRecord>>();

  constructor(options: RecordsOptions) {
    this.#options = options;
  }

  /**
   * The namespace that holds the records. The configuration the objects read from the same env is checked first: an
   * object that could not store an answer must never run the write (in handler mode, the app's handler).
   *
   * @throws a `configuration_invalid` rejection when the binding is missing, the runtime has no jurisdictions, or
   *   `IDEMPOTENCY_ENCRYPTION_KEYS` is malformed (named, never shown)
   */
  namespace(bindings: object): DurableObjectNamespace<IdempotencyRecord> {
    // Bindings are read by the names the options give them.
    const env = bindings as Readonly<Record<string, unknown>>;
    const { binding, jurisdiction } = this.#options;
    const refused = objectConfigError(env);
    if (refused !== null) return reject('configuration_invalid', `The idempotency layer is misconfigured: ${refused}.`);
    const namespace = env[binding] as DurableObjectNamespace<IdempotencyRecord> | undefined;
    if (namespace === undefined) return reject('configuration_invalid', `The Durable Object binding ${binding} is missing.`);
    if (jurisdiction === undefined) return namespace;
    let scoped = this.#scoped.get(namespace);
    if (scoped === undefined) {
      try {
        scoped = namespace.jurisdiction(jurisdiction);
      } catch (cause) {
        return this.#noJurisdiction(cause);
      }
      this.#scoped.set(namespace, scoped);
    }
    return scoped;
  }

  /**
   * Local workerd has no jurisdictions. Never fall back to an unpinned namespace: a record stored outside the
   * jurisdiction is exactly what the setting forbids.
   */
  #noJurisdiction(cause: unknown): never {
    return reject(
      'configuration_invalid',
      `A jurisdiction is set (the jurisdiction option, IDEMPOTENCY_JURISDICTION of the proxy), but this runtime cannot create Durable Objects in one (local workerd does not implement them). Nothing was stored and the origin was not called.`,
      { cause },
    );
  }

  /**
   * Where the record `name` lives: its namespace (in the jurisdiction) and its object's id.
   *
   * @throws a `configuration_invalid` rejection, as {@link namespace}
   */
  locate(env: object, name: string): RecordRef {
    const namespace = this.namespace(env);
    try {
      return { namespace, id: namespace.idFromName(name) };
    } catch (cause) {
      // A runtime may refuse the jurisdiction only here, when a name is first used in it.
      if (this.#options.jurisdiction === undefined) throw cause;
      return this.#noJurisdiction(cause);
    }
  }

  /**
   * Calls the record's object, with a fresh stub per try, retrying only errors the platform marks retryable
   * (never an overloaded object).
   *
   * @param retry - overrides the configured retries (`{ attempts: 1 }` for calls that must not repeat)
   * @throws an `idempotency_unavailable` rejection when the object cannot be reached or fails
   */
  call<R>({ namespace, id }: RecordRef, fn: (stub: RecordStub) => Promise<R>, retry = this.#options.retry): Promise<R> {
    const { locationHint, headerName } = this.#options;
    const stub = () => (locationHint === undefined ? namespace.get(id) : namespace.get(id, { locationHint }));
    return callDurableObject(stub, fn, retry).catch((cause: unknown) =>
      reject('idempotency_unavailable', `The idempotency store could not be reached or failed. Retry later with the same ${headerName}.`, {
        cause,
        retryAfterSeconds: 1,
      }),
    );
  }
}
