/**
 * @module
 * A per-isolate cache of completed records, so that replays and conflicts on a hot key do not need a
 * Durable Object round trip.
 *
 * Why this is safe: a completed record never changes before it expires. The object only ever replaces a
 * record that has expired, so an entry that is served before the `expiresAt` the object reported
 * (minus a margin for clock differences between machines) says exactly what the object would say. Only records read back from storage are cached
 * (never a response still being stored), and only small ones.
 */
import type { StoredResponse } from '../shared/outcome';

interface Entry {
  readonly fingerprint: string;
  readonly response: StoredResponse;
  readonly expiresAt: number;
  readonly bytes: number;
}

/**
 * Entries are dropped this long before the expiry the object reported: the object may run on another
 * machine, whose clock can differ slightly from this isolate's.
 */
const CLOCK_MARGIN_MS = 5_000;

/** Largest body cached; larger replays always come from the object. */
const MAX_ENTRY_BYTES = 64 * 1024;

/** Least-recently-used cache of completed records by object name, bounded in bytes. */
export class ReplayCache {
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;

  /** @param maxBytes - total size of the cached bodies and headers */
  constructor(private readonly maxBytes = 8 * 1024 * 1024) {}

  /** The completed record for `name`, if cached and not expired at `now`. */
  get(name: string, now: number): Pick<Entry, 'fingerprint' | 'response'> | undefined {
    const entry = this.#entries.get(name);
    if (entry === undefined) return undefined;
    this.#entries.delete(name);
    if (entry.expiresAt - CLOCK_MARGIN_MS <= now) {
      this.#bytes -= entry.bytes;
      return undefined;
    }
    this.#entries.set(name, entry); // most recently used last
    return entry;
  }

  /** Remembers a completed record read from storage, which stays valid until `expiresAt`. */
  set(name: string, fingerprint: string, response: StoredResponse, expiresAt: number): void {
    const bytes = response.body.byteLength + JSON.stringify(response.headers).length + name.length;
    if (bytes > MAX_ENTRY_BYTES) return;
    const previous = this.#entries.get(name);
    if (previous !== undefined) {
      this.#entries.delete(name);
      this.#bytes -= previous.bytes;
    }
    this.#entries.set(name, { fingerprint, response, expiresAt, bytes });
    this.#bytes += bytes;
    for (const [oldest, entry] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= entry.bytes;
    }
  }
}
