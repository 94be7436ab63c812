/**
 * @module
 * Replaying a stored answer. One of a single part (at most 1 MiB, kept in the record) is read and opened whole. One
 * whose body is in chunk rows is streamed from storage part by part as its reader pulls: each
 * part is read, and opened when sealed, only when it is asked for, so a reader that stops reading holds one part,
 * never the whole answer; at most as many such streams as the object's {@link Readers} allow are open at once.
 *
 * Each pull checks that the record is still the one replayed: a purge, an expiry or a new attempt meanwhile breaks the
 * stream (its reader gets a body that ends in an error), never another answer's bytes.
 */
import type { Readers } from './live';
import type { Outcome } from './api';
import { type Keyring, openHead, openPart, openResponse } from './seal';
import type { RecordRow, RecordStore } from './storage';

/** What opens a record's sealed parts: the keyring (if any) and the record's name. */
export interface Opening {
  readonly keys: Keyring | undefined;
  readonly name: string | undefined;
}

/** The answer to a stored record that cannot be read, logged with the id of the key it was sealed with. */
function unreadable(keyId: string): Outcome {
  console.error(JSON.stringify({ event: 'record_unreadable', key_id: keyId }));
  return { kind: 'record_unreadable' };
}

/**
 * The answer of the complete record `row`, read synchronously with the decision (only opening awaits). One that no
 * configured key opens, or that misses a part, is `record_unreadable`; a streamed one past `readers` is `busy`.
 */
export async function replay(store: RecordStore, row: RecordRow, { keys, name }: Opening, readers: Readers): Promise<Outcome> {
  if (row.chunks === 0) {
    const response = await openResponse(keys, name, row.attempt, store.whole(row));
    if ('unreadable' in response) return unreadable(response.unreadable);
    return { kind: 'response', replayed: true, response, expiresAt: row.expires_at, createdAt: row.created_at };
  }
  const head = store.head(row);
  const complete = store.chunkCount() === row.chunks;
  const opened = await openHead(keys, name, row.attempt, head);
  if ('unreadable' in opened) return unreadable(opened.unreadable);
  if (!complete) return unreadable(head.keyId ?? 'plaintext');
  const release = readers.take();
  if (release === undefined) return { kind: 'busy', retryAfterMs: 1000 };
  const body = streamParts(store, row, (index, part) => openPart(keys, name, row.attempt, head, index, part), release);
  return { kind: 'response', replayed: true, response: { ...opened, body }, expiresAt: row.expires_at, createdAt: row.created_at };
}

/** Opens body part `index` as stored (sealed or not); `undefined` when it does not open. */
export type PartOpener = (index: number, part: Uint8Array) => Promise<Uint8Array | undefined>;

/**
 * The body of the complete record `row` (`chunks` > 0), streamed from `store`.
 *
 * @param release - called once the stream has ended, broken or been cancelled (its reader slot)
 */
function streamParts(store: RecordStore, row: RecordRow, open: PartOpener, release: () => void): ReadableStream<Uint8Array> {
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
