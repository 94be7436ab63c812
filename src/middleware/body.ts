/**
 * @module
 * The one read of a keyed request's body: bounded, up front, before anything is decided. A body is fingerprinted and
 * sent to the object whole, so it is read once here, and the request is rebuilt from the bytes for whoever reads it
 * next (the app's handler), as `hono/body-limit` rebuilds it from its counting stream.
 */
import { concatBytes } from '../shared/bytes';

/** What reading a body gave: its bytes, or why there are none. */
export type BodyRead =
  /** The body, whole (empty for a request without one). */
  | { readonly bytes: ArrayBuffer }
  /** Longer than the limit, declared so or read so: nothing more is read. */
  | 'too_large'
  /** It ended before its declared length, or failed while it was read: the client's broken request. */
  | 'broken';

/**
 * Reads `request`'s body, at most `maxBytes` of it. A declared `Content-Length` over the limit is refused before a
 * byte is read; a body of declared length within it is read whole by the runtime (as `hono/body-limit` leaves it);
 * a body of undeclared length is read until it passes the limit, then cancelled.
 *
 * @returns the bytes, `too_large` or `broken`; never throws
 * @example
 * ```ts
 * const read = await readBody(c.req.raw, 10 * 1024 * 1024);
 * if (read === 'too_large') return tooLarge(); // 413
 * ```
 */
export async function readBody(request: Request, maxBytes: number): Promise<BodyRead> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > maxBytes) return 'too_large';
  if (request.body === null) return { bytes: new ArrayBuffer(0) };
  if (declared !== null && !request.headers.has('transfer-encoding')) {
    // One native read: reading the stream chunk by chunk here cost every small keyed request more CPU (bench: a hot
    // key's replays and conflicts, +15%). The length is checked again, for a body longer than its header says.
    try {
      const bytes = await request.arrayBuffer();
      return bytes.byteLength > maxBytes ? 'too_large' : { bytes };
    } catch {
      return 'broken';
    }
  }
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        return 'too_large';
      }
      chunks.push(value);
    }
  } catch {
    return 'broken';
  }
  return { bytes: concatBytes(chunks) };
}
