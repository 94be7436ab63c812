/**
 * @module
 * A per-isolate cache of completed records, so that replays and conflicts on a hot key do not need a
 * Durable Object round trip.
 *
 * Why this is safe: a completed record changes only when it expires or an operator purges it. An entry is
 * served only before the expiry the object reported (minus a margin for clock differences between
 * machines), and only for {@link MAX_AGE_MS} after it was read: a purge reaches the isolate that served it at
 * once ({@link ReplayCache.delete}) and every other isolate within that bound. Only records read back from
 * storage are cached (never a response still being stored), and only small ones.
 */
import type { StoredResponse } from '../record/api';
import { responseInit } from './answer';

/** What a Worker learned of a stored record: enough to answer a conflict, and a replay when it has the response. */
export interface Learned {
  readonly fingerprint: string;
  /** The stored response (absent when only a conflict revealed the record). */
  readonly response?: StoredResponse | undefined;
  /** The log lines' `key_hash` of the record (from its object id). */
  readonly keyHash: string;
  /** When the record expires, ms since the epoch. */
  readonly expiresAt: number;
  /** When the record was created (a replay's `Age` counts from it, at send time), if known. */
  readonly createdAt?: number | undefined;
}

/** A cached record: what a replay or a conflict needs, prepared once. */
export interface CachedRecord extends Learned {
  /** The replay's status and headers (`Idempotent-Replay`, `Idempotency-Expires`), built once and copied by every replay. */
  readonly init: ResponseInit | undefined;
}

interface Entry extends CachedRecord {
  /** When the entry stops being served. */
  readonly until: number;
  readonly bytes: number;
}

/**
 * Entries are dropped this long before the expiry the object reported: the object may run on another
 * machine, whose clock can differ slightly from this isolate's.
 */
const CLOCK_MARGIN_MS = 5_000;
/** How long an entry is served after it was read from the object: the longest a purge elsewhere goes unseen. */
export const MAX_AGE_MS = 10_000;
/** Largest body cached; larger replays always come from the object. */
const MAX_ENTRY_BYTES = 64 * 1024;
/**
 * What an entry costs beyond its body, headers and strings: the map slot, the objects and the buffer
 * header. Counted so that many tiny entries cannot hold much more memory than the budget says.
 */
const ENTRY_OVERHEAD_BYTES = 512;

/** Least-recently-used cache of completed records by object name, bounded in bytes and in entries. */
export class ReplayCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxBytes: number;
  readonly #maxEntries: number;
  #bytes = 0;

  /**
   * @param maxBytes - memory budget, every entry counted with its fixed overhead
   * @param maxEntries - most entries held at once
   */
  constructor(maxBytes = 8 * 1024 * 1024, maxEntries = 4096) {
    this.#maxBytes = maxBytes;
    this.#maxEntries = maxEntries;
  }

  /** Memory counted for the entries held now, in bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** How many entries are held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The completed record for `name`, if cached and still servable at `now`. */
  get(name: string, now: number): CachedRecord | undefined {
    const entry = this.#entries.get(name);
    if (entry === undefined) return undefined;
    this.#remove(name, entry);
    if (entry.until <= now) return undefined;
    this.#add(name, entry); // most recently used last
    return entry;
  }

  /**
   * Remembers a stored record read back at `now`, which stays as it is until it expires unless purged. What only
   * a conflict revealed (no response) never replaces what a replay brought for the same fingerprint.
   */
  set(name: string, record: Learned, now: number): void {
    const { fingerprint, response, keyHash, expiresAt } = record;
    const previous = this.#entries.get(name);
    if (response === undefined && previous?.response !== undefined && previous.fingerprint === fingerprint && previous.until > now) return;
    const headers = response === undefined ? 0 : response.body.byteLength + 2 * JSON.stringify(response.headers).length;
    const bytes = ENTRY_OVERHEAD_BYTES + headers + 2 * (name.length + fingerprint.length + keyHash.length);
    if (bytes > MAX_ENTRY_BYTES) return;
    const until = Math.min(expiresAt - CLOCK_MARGIN_MS, now + MAX_AGE_MS);
    if (until <= now) return;
    this.delete(name);
    this.#add(name, { ...record, init: response && responseInit(response, true, expiresAt), until, bytes });
    for (const [oldest, entry] of this.#entries) {
      if (this.#bytes <= this.#maxBytes && this.#entries.size <= this.#maxEntries) break;
      this.#remove(oldest, entry);
    }
  }

  /** Forgets `name` (its record was purged). */
  delete(name: string): void {
    const entry = this.#entries.get(name);
    if (entry !== undefined) this.#remove(name, entry);
  }

  #add(name: string, entry: Entry): void {
    this.#entries.set(name, entry);
    this.#bytes += entry.bytes;
  }

  #remove(name: string, entry: Entry): void {
    this.#entries.delete(name);
    this.#bytes -= entry.bytes;
  }
}

/** The cache every middleware of this isolate shares (records are named uniquely per namespace and scope). */
export const isolateReplays = new ReplayCache();
