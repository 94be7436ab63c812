/**
 * @module
 * Turning an answer (from the origin, or from the app's own handler) into a {@link Settled} result:
 * the whole body read up to a limit, end-to-end headers kept as pairs. Used by the object (proxy mode)
 * and by the middleware (handler mode).
 */
import { concatBytes } from './bytes';
import { storableHeaders } from './headers';
import { type Settled, isResultStatus } from './outcome';

/** Stored header lists larger than this are refused like an oversized body. */
const MAX_HEADERS_BYTES = 256 * 1024;

/**
 * Reads a response completely (at most `maxBodyBytes`) into a storable result.
 *
 * @param response - the answer to capture; its body is consumed
 * @param maxBodyBytes - larger bodies give `response_too_large`
 * @param decoded - whether the body bytes are already decoded (true for `fetch()` answers, where
 *   `content-encoding` is then dropped); false keeps `content-encoding` for bytes served as they are
 * @returns the response; `response_lost` when a result's body breaks off (its status says the write ran);
 *   `response_too_large` for a result too large to store; `origin_unreachable` when a 5xx or transient answer is
 *   too large or breaks off (not results: the key is freed, so nothing must claim the request ran)
 * @throws never for a failing body: only for what a `Response` itself refuses
 */
export async function captureResponse(response: Response, maxBodyBytes: number, decoded: boolean): Promise<Settled> {
  const { status } = response;
  let body: ArrayBuffer | undefined;
  try {
    body = await readLimited(response, maxBodyBytes);
  } catch {
    return isResultStatus(status) ? { kind: 'response_lost', status } : { kind: 'origin_unreachable' };
  }
  const headers = storableHeaders(response.headers, decoded);
  if (body === undefined || JSON.stringify(headers).length > MAX_HEADERS_BYTES) {
    return isResultStatus(status) ? { kind: 'response_too_large', status } : { kind: 'origin_unreachable' };
  }
  return { kind: 'response', response: { status: response.status, headers, body } };
}

/** The whole body, or `undefined` as soon as it is known to exceed `max` bytes. */
async function readLimited(response: Response, max: number): Promise<ArrayBuffer | undefined> {
  if (response.body === null) return new ArrayBuffer(0);
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > max) {
    await response.body.cancel();
    return undefined;
  }
  if (declared <= max && response.headers.get('content-encoding') === null) {
    // A declared, unencoded length is enforced by the runtime for fetched bodies, so the body can be read
    // in one go; the check below still covers a handler's Response that declares less than it has.
    const body = await response.arrayBuffer();
    return body.byteLength > max ? undefined : body;
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of response.body) {
    size += part.byteLength;
    if (size > max) return undefined; // leaving the loop cancels the stream
    parts.push(part);
  }
  return concatBytes(parts);
}
