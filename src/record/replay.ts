/**
 * @module
 * Replaying a stored answer whose body is in chunk rows (over 1 MiB) from storage, part by part as its reader pulls
 * (issue #29, finding 4): each part is read, and opened when sealed, only when it is asked for, so a reader that stops
 * reading holds one part, never the whole answer (which used to be read, opened and copied whole for every replay).
 * An answer of one part (at most 1 MiB, kept in the record) is still replayed whole.
 *
 * Each pull checks that the record is still the one replayed: a purge, an expiry or a new attempt meanwhile breaks the
 * stream (its reader gets a body that ends in an error), never another answer's bytes.
 */
import type { RecordRow, RecordStore } from './storage';

/** Opens body part `index` as stored (sealed or not); `undefined` when it does not open. */
export type PartOpener = (index: number, part: Uint8Array) => Promise<Uint8Array | undefined>;

/**
 * The body of the complete record `row` (`chunks` > 0), streamed from `store`.
 *
 * @param release - called once the stream has ended, broken or been cancelled (its reader slot)
 */
export function streamParts(store: RecordStore, row: RecordRow, open: PartOpener, release: () => void): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull: async (controller) => {
        const now = store.read();
        const stored = now?.attempt === row.attempt && now.state === 'complete' ? store.chunk(next) : undefined;
        if (stored === undefined) {
          release();
          return controller.error(new Error('the stored answer was purged or replaced while it was replayed'));
        }
        const part = await open(next, stored);
        if (part === undefined) {
          release();
          console.error(JSON.stringify({ event: 'record_unreadable', key_id: row.key_id ?? 'plaintext', part: next }));
          return controller.error(new Error('a part of the stored answer cannot be read'));
        }
        next += 1;
        controller.enqueue(part);
        if (next === row.chunks) {
          release();
          controller.close();
        }
      },
      cancel: release,
    },
    // Read from storage only when its reader asks for more.
    { highWaterMark: 0 },
  );
}
