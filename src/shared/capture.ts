/**
 * @module
 * Turning an answer (from the origin, or from the app's own handler) into a {@link Settled} result while it
 * streams: its head (status, end-to-end headers as pairs) at once, its body captured up to a limit by a
 * {@link LiveBody}. Used by the object (proxy mode) and by the middleware (handler mode).
 */
import { type HeaderList, storableHeaders } from './headers';
import { type Captured, LiveBody } from './live';
import { type Settled, isResultStatus } from '../record/api';

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
