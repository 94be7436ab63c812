/**
 * @module
 * Forwarding a request to the origin as it is: the path of most requests (reads, writes without a key). It costs
 * one `fetch` and, usually, returns the origin's own response object.
 */
import { endToEnd, passThroughHeaders } from '../shared/headers';
import { type Answers, untouched } from '../middleware';
import { Rejection } from '../shared/problem';
import type { ProxyConfig } from './config';
import { originTarget, pathAndQuery, pathnameOf, reservedPath } from './target';

/**
 * Forwards the request as it is, like a plain reverse proxy: the end-to-end headers (those the request's
 * `Connection` names dropped, as for keyed writes), the body streamed, redirects returned, no timeout of its own
 * (the client decides how long to wait for a read). An unreachable origin becomes a problem response.
 */
export async function passThrough(request: Request, target: string, answers: Answers): Promise<Response> {
  let response: Response;
  try {
    const headers = passThroughHeaders(request.headers);
    response = await fetch(target, { method: request.method, headers, body: request.body, redirect: 'manual' });
  } catch {
    return answers.unreachable(target, request);
  }
  return endToEnd(response);
}

/**
 * For configurations without routes, `request` mode or pass-through log lines: the forwarding of requests the
 * idempotency layer passes on untouched (its own `untouched` test) that need nothing else of the app. Such a
 * request is forwarded at once; any other (under the key API prefix, a body over the limit or of undeclared
 * length, a path the app refuses) is left to the app, which answers it exactly as before.
 *
 * @returns the forwarding function, or `undefined` when every request must go through the app
 */
export function directForwarding(config: ProxyConfig): ((request: Request) => Promise<Response> | undefined) | undefined {
  const { origin, routes, logRequests, resolved, apiPrefix } = config;
  if (routes.length > 0 || origin.mode !== 'url' || logRequests === 'all') return undefined;
  const reserved = apiPrefix === undefined ? undefined : reservedPath(apiPrefix);
  return (request) => {
    if (!untouched(resolved, request.method, request.headers)) return undefined;
    const length = request.headers.get('content-length');
    if (length === null ? request.body !== null : Number(length) > resolved.maxBodyBytes) return undefined;
    if (reserved !== undefined) {
      // The app routes on the decoded path (/%5Fidempotency is the key API there too): an encoded path is its to
      // judge, and so is any spelling of the prefix (//_idempotency, /_IDEMPOTENCY), which it refuses.
      const path = pathAndQuery(request.url);
      if (encodedPath(path) || reserved(pathnameOf(path))) return undefined;
    }
    let target: string;
    try {
      target = originTarget(origin, request.url);
    } catch (error) {
      if (error instanceof Rejection) return undefined;
      throw error;
    }
    return passThrough(request, target, resolved.answers);
  };
}

/** Whether the path (before any query) holds a percent-encoded octet. */
function encodedPath(pathAndQuery: string): boolean {
  const percent = pathAndQuery.indexOf('%');
  if (percent === -1) return false;
  const query = pathAndQuery.indexOf('?');
  return query === -1 || percent < query;
}
