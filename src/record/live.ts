/**
 * @module
 * An answer while it arrives (from the origin, or from the app's own handler): its head (status, end-to-end headers as
 * pairs) at once, and its body read once from its source, captured for the record up to a limit, and streamed to the
 * first client and to the duplicates that join, each from its first byte; how it ended, as a `Settled` result. Used by
 * the object (proxy mode) and by the middleware (handler mode).
 *
 * Invariants:
 * - The source is read by one pump, as fast as it sends, whoever reads: a client that goes away or reads slowly
 *   neither stops the capture nor makes it buffer more. The captured chunks are the one copy of the bytes; each
 *   reader walks them by index and is handed the same chunk, never a copy of its own: a reader that does not read is
 *   pulled only as far as its connection takes (the runtime's streams are flow-controlled end to end).
 * - Past the limit the capture stops (the answer is too large to store) and the rest goes to the first reader
 *   only, one chunk at a time as it reads (back-pressure): memory stays at the limit plus one chunk. Joiners'
 *   streams then break where the capture stopped; their retries are answered from the record.
 * - If the first reader goes away past the limit, the source is cancelled: nobody needs the rest.
 * - Joiners are bounded ({@link Readers}): past the bound, `join` gives no stream (the caller waits for the record).
 * - {@link LiveBody.stop} (the attempt's lease has ended) cancels the source wherever the pump is, even waiting for a
 *   first reader that stalls past the limit, and breaks every reader: the capture ends as `broken`.
 */
import type { Settled } from './api';
import { concatBytes } from '../shared/bytes';
import { type HeaderList, storableHeaders } from '../shared/headers';
import { isResultStatus } from '../shared/status';

/** How a body's capture ended: `whole` with every byte, `too_large` past the limit, `broken` when the source failed. */
export type Captured =
  { readonly kind: 'whole'; readonly body: ArrayBuffer } | { readonly kind: 'too_large' } | { readonly kind: 'broken' };

/**
 * The streams of one object's answers open at once (duplicates joining a live answer, replays streamed from storage),
 * at most `max`: each holds at most a chunk or a part in flight, so together they hold a bounded amount of memory.
 */
export class Readers {
  readonly max: number;
  #open = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** How many are open now. */
  get open(): number {
    return this.#open;
  }

  /** A slot, released by calling what is returned (once is enough; more is harmless), or `undefined` when all are taken. */
  take(): (() => void) | undefined {
    if (this.#open >= this.max) return undefined;
    this.#open += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open -= 1;
    };
  }
}

/** The body of an answer while it arrives: one pump reads it, captures it up to a limit, and serves its readers. */
export class LiveBody {
  readonly #max: number;
  readonly #chunks: Uint8Array[] = [];
  #size = 0;
  /** `open` while every byte is captured; `too_large` once capture stopped; `broken` when the source failed. */
  #state: 'open' | 'too_large' | 'broken' = 'open';
  /** Set once the source has ended (or was cancelled), whether or not the capture stopped before. */
  #ended = false;
  /** Set by {@link stop}: the source is cancelled and every reader breaks. */
  #stopped = false;
  /** Past the limit: the chunk waiting for the first reader, and how to tell the pump it was taken. */
  #overflow: { readonly chunk: Uint8Array; readonly taken: () => void } | undefined;
  #firstGone = false;
  #firstTaken = false;
  /** The pump's reader of the source, while it reads. */
  #source: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** Resolved (and replaced) whenever readers may have something new. */
  #changed!: Promise<void>;
  #notify!: () => void;
  /** How the capture ended; settles once the source has ended (or, past the limit, the first reader went away). */
  readonly ended: Promise<Captured>;

  /**
   * @param source - the body; `null` reads as empty
   * @param max - the most bytes captured
   * @param storable - `false` when the answer cannot be stored anyway (its headers are too large): capture stops at once
   */
  constructor(source: ReadableStream<Uint8Array> | null, max: number, storable = true) {
    this.#max = max;
    // Nothing of an answer that cannot be stored is captured, not even an empty body: it is too large from the start.
    if (!storable) this.#state = 'too_large';
    this.#rearm();
    this.ended = this.#pump(source);
  }

  /**
   * `open` while every byte so far is captured (a joiner can be given them all); `too_large` once the capture stopped
   * at the limit; `broken` once the source failed.
   */
  get capture(): 'open' | 'too_large' | 'broken' {
    return this.#state;
  }

  /**
   * The stream for the client whose request ran the attempt (taken once, unless abandoned).
   *
   * @param closing - the stream ends only once this has settled (the record is stored): a client that has read the
   *   whole answer can count on its retry being a replay
   */
  first(closing: Promise<unknown> = Promise.resolve()): ReadableStream<Uint8Array> {
    if (this.#firstTaken || this.#firstGone) throw new Error('the first reader was already taken or abandoned');
    this.#firstTaken = true;
    return this.#reader(true, closing, () => {});
  }

  /**
   * Says that no first reader will come (or that it went away): past the limit the source is then cancelled instead
   * of waiting for it. Until then, the bytes past the limit wait for the first reader.
   */
  abandon(): void {
    this.#firstGone = true;
    // A pump waiting for the gone reader to take a chunk past the limit goes on (and cancels the source).
    const overflow = this.#overflow;
    this.#overflow = undefined;
    overflow?.taken();
  }

  /**
   * Ends the capture where it is (the attempt's lease has ended): the source is cancelled, wherever the pump is, and
   * every reader's stream breaks. The capture ends as `broken` unless it had already ended.
   */
  stop(): void {
    if (this.#ended || this.#stopped) return;
    this.#stopped = true;
    this.#state = 'broken';
    // Nobody is given these bytes any more: the memory goes with them.
    this.#chunks.length = 0;
    void this.#source?.cancel(new Error('the attempt ended')).catch(() => {});
    this.abandon();
    this.#wake();
  }

  /**
   * A stream for a duplicate that joins: every captured byte from the first, then the rest as it arrives; `undefined`
   * when `readers` has no slot left (the slot is released when the stream ends, breaks or is cancelled).
   *
   * @param closing - as for {@link first}
   */
  join(closing: Promise<unknown> = Promise.resolve(), readers?: Readers): ReadableStream<Uint8Array> | undefined {
    const release = readers === undefined ? () => {} : readers.take();
    return release === undefined ? undefined : this.#reader(false, closing, release);
  }

  #rearm(): void {
    this.#changed = new Promise((resolve) => (this.#notify = resolve));
  }

  #wake(): void {
    this.#notify();
    this.#rearm();
  }

  async #pump(source: ReadableStream<Uint8Array> | null): Promise<Captured> {
    if (source === null) {
      this.#ended = true;
      return this.#state === 'too_large' ? { kind: 'too_large' } : { kind: 'whole', body: new ArrayBuffer(0) };
    }
    const reader = source.getReader();
    this.#source = reader;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (this.#stopped) throw new Error('the attempt ended');
        if (done) break;
        // A byte stream refuses an empty chunk; it carries nothing anyway.
        if (value.byteLength === 0) continue;
        if (this.#state === 'open' && this.#size + value.byteLength <= this.#max) {
          this.#chunks.push(value);
          this.#size += value.byteLength;
          this.#wake();
          continue;
        }
        this.#state = 'too_large';
        if (this.#firstGone) {
          await reader.cancel().catch(() => {});
          break;
        }
        await new Promise<void>((taken) => {
          this.#overflow = { chunk: value, taken };
          this.#wake();
        });
        if (this.#stopped) throw new Error('the attempt ended');
      }
    } catch {
      this.#state = 'broken';
      this.#wake();
      return { kind: 'broken' };
    } finally {
      this.#source = undefined;
    }
    this.#ended = true;
    this.#wake();
    if (this.#state === 'too_large') return { kind: 'too_large' };
    const body = concatBytes(this.#chunks);
    // The readers still behind walk the whole body from now on: one copy of the bytes, not two.
    let offset = 0;
    this.#chunks.forEach((chunk, index) => {
      this.#chunks[index] = new Uint8Array(body, offset, chunk.byteLength);
      offset += chunk.byteLength;
    });
    return { kind: 'whole', body };
  }

  /**
   * A reader's stream. Not a byte stream: one would take over (detach) each buffer it is given, so every reader would
   * need its own copy of every chunk; this one hands every reader the same chunk, which nobody writes to.
   */
  #reader(first: boolean, closing: Promise<unknown>, release: () => void): ReadableStream<Uint8Array> {
    let next = 0;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          for (;;) {
            const chunk = this.#chunks[next];
            if (chunk !== undefined) {
              next += 1;
              controller.enqueue(chunk);
              return;
            }
            if (this.#state === 'broken') {
              release();
              return controller.error(new Error("the origin's answer broke off"));
            }
            if (this.#state === 'too_large') {
              // Joiners cannot be given the rest; the first reader gets it, one chunk at a time.
              if (!first) {
                release();
                return controller.error(new Error('the answer is too large to share'));
              }
              const overflow = this.#overflow;
              if (overflow !== undefined) {
                this.#overflow = undefined;
                controller.enqueue(overflow.chunk);
                overflow.taken();
                return;
              }
            }
            if (this.#ended) {
              await Promise.allSettled([closing]);
              release();
              return controller.close();
            }
            await this.#changed;
          }
        },
        cancel: () => {
          release();
          if (first) this.abandon();
        },
      },
      // Pulled only when its consumer asks: nothing is read ahead for a reader that does not read.
      { highWaterMark: 0 },
    );
  }
}

/** Stored header lists larger than this are refused like an oversized body. */
const MAX_HEADERS_BYTES = 256 * 1024;

/** An answer whose head has arrived: what to send now, its body as it streams, and how it will have ended. */
export interface LiveAnswer {
  readonly status: number;
  readonly headers: HeaderList;
  readonly body: LiveBody;
  /**
   * The answer as a result, once its body has ended: the response; `response_lost` when a result's body breaks off
   * (its status says the write ran); `response_too_large` for a result too large to store; `origin_unreachable` when a
   * 5xx or transient answer is too large or breaks off (not results: the key is freed, so nothing must claim it ran).
   */
  readonly settled: Promise<Settled>;
}

/**
 * Starts capturing `response`.
 *
 * @param response - the answer; its body is consumed
 * @param maxBodyBytes - larger bodies (declared or read) are not stored
 * @param decoded - whether the body bytes are already decoded (true for `fetch()` answers, where
 *   `content-encoding` is then dropped); false keeps `content-encoding` for bytes served as they are
 * @throws never for a failing body: only for what a `Response` itself refuses
 */
export function liveAnswer(response: Response, maxBodyBytes: number, decoded: boolean): LiveAnswer {
  const { status } = response;
  const headers = storableHeaders(response.headers, decoded);
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  // Known too large before a byte is read: the body still reaches the first client, but nothing is captured.
  const storable = !(declared > maxBodyBytes) && JSON.stringify(headers).length <= MAX_HEADERS_BYTES;
  const body = new LiveBody(response.body, maxBodyBytes, storable);
  return { status, headers, body, settled: body.ended.then((captured) => settledOf(status, headers, captured)) };
}

function settledOf(status: number, headers: HeaderList, captured: Captured): Settled {
  if (captured.kind === 'whole') return { kind: 'response', response: { status, headers, body: captured.body } };
  if (!isResultStatus(status)) return { kind: 'origin_unreachable' };
  return captured.kind === 'broken' ? { kind: 'response_lost', status } : { kind: 'response_too_large', status };
}

/** Reads a response completely (at most `maxBodyBytes`) into a storable result, for nobody to stream; see {@link liveAnswer}. */
export function captureResponse(response: Response, maxBodyBytes: number, decoded: boolean): Promise<Settled> {
  const live = liveAnswer(response, maxBodyBytes, decoded);
  // No first reader: past the limit the source is cancelled rather than waited on.
  live.body.abandon();
  return live.settled;
}
