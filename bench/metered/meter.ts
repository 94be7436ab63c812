/**
 * @module
 * Counts what the platform bills a Durable Object class for, without changing the class: {@link metered}
 * subclasses it so that the `ctx` its constructor receives is instrumented, and wraps every method of its
 * prototype (its RPC methods and `alarm`). The runtime checks that `super()` gets a real
 * `DurableObjectState` (a Proxy is refused), so the real `ctx` is passed with an own `storage` property
 * that shadows the original: a wrapper of the real storage whose `sql` is a wrapper of the real SQL handle.
 *
 * - Durable Object requests: one per RPC method call and per alarm invocation.
 * - SQLite rows: every cursor `ctx.storage.sql.exec()` returns is kept until the method that created it
 *   (or the next one, for cursors of the constructor) has settled, or until the counters are read, whichever
 *   comes first; its `rowsRead` / `rowsWritten` are added then, once it has been consumed (the cursor is
 *   returned to the class unchanged). Counting at a read too matters: a streamed answer is stored after
 *   `execute()` has returned, and nothing else may call that object again.
 * - The synchronous KV API (`ctx.storage.kv`), billed as rows of its hidden table (pricing page): one row
 *   written per `put()` and per `delete()`, one row read per `get()`, one per entry `list()` yields.
 * - `setAlarm()` (one row written each, per the pricing page) and `deleteAll()` calls.
 * - Bytes stored: `sql.databaseSize` of each object after its latest call.
 *
 * Every object of a class runs in the same isolate as the Worker here (one workerd process), so the
 * counters are plain module state, read and reset through the Worker's `/__meter` route.
 */

import { type Counters, emptyCounters } from './counters';

const counters = new Map<string, Counters>();
const sizes = new Map<string, Map<string, number>>();

function countersFor(kind: string): Counters {
  let c = counters.get(kind);
  if (c === undefined) counters.set(kind, (c = emptyCounters()));
  return c;
}

/** Every counter, by kind (`product`, `design`). */
export function snapshot(): Record<string, Counters> {
  for (const meter of live) countPending(meter);
  const out: Record<string, Counters> = {};
  for (const [kind, c] of counters) {
    const objectSizes = [...(sizes.get(kind)?.values() ?? [])];
    out[kind] = { ...c, methods: { ...c.methods }, objects: objectSizes.length, bytesStored: objectSizes.reduce((a, b) => a + b, 0) };
  }
  return out;
}

export function reset(): void {
  counters.clear();
  sizes.clear();
}

/** Per object: the wrapped state, its real SQL handle, and the cursors not counted yet. */
interface Meter {
  kind: string;
  id: string;
  sql: SqlStorage;
  pending: { rowsRead: number; rowsWritten: number }[];
}

const meters = new WeakMap<object, Meter>();
/** Every meter with cursors not counted yet (removed once flushed, so objects are not kept alive by it). */
const live = new Set<Meter>();

/** A proxy for a native object whose methods need their real `this`, with some members replaced. */
function wrap<T extends object>(target: T, replace: Record<string, unknown>): T {
  return new Proxy(target, {
    get(t, property) {
      if (typeof property === 'string' && property in replace) return replace[property];
      const value: unknown = Reflect.get(t, property, t);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(t) : value;
    },
  });
}

/**
 * Instruments `ctx` for the class: counts setAlarm/deleteAll and keeps every SQL cursor. `alarmInMs`, when
 * set, brings every alarm forward to that many ms from now (used only to observe expiry in a short run).
 */
function meteredState(ctx: DurableObjectState, kind: string, alarmInMs: number | undefined): DurableObjectState {
  const storage = ctx.storage;
  const meter: Meter = { kind, id: ctx.id.toString(), sql: storage.sql, pending: [] };
  const sql = wrap(storage.sql, {
    exec: (query: string, ...bindings: unknown[]) => {
      const cursor = storage.sql.exec(query, ...bindings);
      meter.pending.push(cursor);
      live.add(meter);
      return cursor;
    },
  });
  const kv = wrap(storage.kv, {
    get: (key: string) => {
      countersFor(kind).rowsRead++;
      return storage.kv.get(key);
    },
    put: (key: string, value: unknown) => {
      countersFor(kind).rowsWritten++;
      storage.kv.put(key, value);
    },
    delete: (key: string) => {
      countersFor(kind).rowsWritten++;
      return storage.kv.delete(key);
    },
    list: (options?: SyncKvListOptions) => {
      const entries = [...storage.kv.list(options)];
      countersFor(kind).rowsRead += entries.length;
      return entries[Symbol.iterator]();
    },
  });
  const meteredStorage = wrap(storage, {
    sql,
    kv,
    setAlarm: (time: number | Date, options?: DurableObjectSetAlarmOptions) => {
      countersFor(kind).setAlarm++;
      return storage.setAlarm(alarmInMs === undefined ? time : Date.now() + alarmInMs, options);
    },
    deleteAll: (options?: DurableObjectPutOptions) => {
      countersFor(kind).deleteAll++;
      return storage.deleteAll(options);
    },
  });
  Object.defineProperty(ctx, 'storage', { value: meteredStorage, configurable: true, enumerable: true });
  meters.set(ctx, meter);
  return ctx;
}

/** Adds the rows of every pending cursor of the object (the counters of a cursor need no I/O, so any request may read them). */
function countPending(meter: Meter): void {
  const c = countersFor(meter.kind);
  for (const cursor of meter.pending) {
    c.rowsRead += cursor.rowsRead;
    c.rowsWritten += cursor.rowsWritten;
  }
  meter.pending = [];
  live.delete(meter);
}

/** Adds the rows of every pending cursor of the object, and records its size (inside a call of the object only). */
function flush(meter: Meter): void {
  countPending(meter);
  let objectSizes = sizes.get(meter.kind);
  if (objectSizes === undefined) sizes.set(meter.kind, (objectSizes = new Map()));
  objectSizes.set(meter.id, meter.sql.databaseSize);
}

// A mixin base (TypeScript requires `...args: any[]`); the instance type is left open because `ctx` is a
// protected member of `DurableObject`.
type DurableObjectClass = new (...args: any[]) => object;

/** `Base` with a metered `ctx` and every prototype method counted as one Durable Object request. */
export function metered<T extends DurableObjectClass>(
  Base: T,
  kind: string,
  options: { alarmInMs?: (env: Record<string, unknown>) => number | undefined } = {},
): T {
  const Metered = class extends Base {
    constructor(...args: any[]) {
      const [ctx, env] = args as [DurableObjectState, Record<string, unknown>];
      super(meteredState(ctx, kind, options.alarmInMs?.(env)), env);
    }
  };
  for (const name of Object.getOwnPropertyNames(Base.prototype)) {
    const method: unknown = Object.getOwnPropertyDescriptor(Base.prototype, name)?.value;
    if (name === 'constructor' || typeof method !== 'function') continue;
    Object.defineProperty(Metered.prototype, name, {
      configurable: true,
      writable: true,
      value: async function (this: object, ...args: unknown[]): Promise<unknown> {
        const c = countersFor(kind);
        c.doRequests++;
        c.methods[name] = (c.methods[name] ?? 0) + 1;
        const meter = meters.get((this as { ctx: DurableObjectState }).ctx);
        try {
          return await (method as (...a: unknown[]) => Promise<unknown>).apply(this, args);
        } finally {
          if (meter) flush(meter);
        }
      },
    });
  }
  return Metered;
}
