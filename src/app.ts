/**
 * @module
 * The proxy Worker: a Hono app that forwards every request to `ORIGIN_URL` and runs keyed writes
 * through their `IdempotencyRecord` Durable Object.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createMiddleware } from 'hono/factory';
import { HTTPException } from 'hono/http-exception';
import { proxy } from 'hono/proxy';
import type { MiddlewareHandler } from 'hono/types';
import { configFor, type ProxyConfig } from './core/config';
import { fingerprintRequest, hashCredential } from './core/fingerprint';
import { forwardableHeaders } from './core/headers';
import { describeKeyError, parseIdempotencyKey } from './core/key';
import { type Outcome, outcomeResponse } from './core/outcome';
import { problem } from './core/problem';
import { callDurableObject } from './core/retry';

/** Methods whose requests are made idempotent; every other method passes through. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * A credential the proxy will scope keys by: visible ASCII, spaces and tabs (RFC 9110 §11.4 credentials
 * are token68 or auth-params), with at least one visible character.
 */
const WELL_FORMED_CREDENTIALS = /^[\t\x20-\x7e]*[\x21-\x7e][\t\x20-\x7e]*$/;

type AppEnv = { Bindings: Env; Variables: { config: ProxyConfig } };

/** The Durable Object name for a key: only the credential's hash goes into it. */
export const recordName = (credentialHash: string, key: string): string => `${credentialHash}:${key}`;

/**
 * The origin URL for a request: origin base + the request's path and query. The path is assigned
 * through the URL setter, so `//host`, `..` or an absolute-form request target can never change
 * the origin's scheme, host or port.
 */
export function originTarget(origin: URL, basePath: string, requestUrl: string): URL {
  const incoming = new URL(requestUrl);
  const target = new URL(origin.href);
  target.pathname = basePath + incoming.pathname;
  target.search = incoming.search;
  // Unreachable by construction; kept so that a future change cannot silently proxy elsewhere.
  if (target.origin !== origin.origin) throw new Error('request target escaped the origin');
  return target;
}

const bodyLimits = new WeakMap<ProxyConfig, MiddlewareHandler>();

const withConfig = createMiddleware<AppEnv>(async (c, next) => {
  const config = configFor(c.env);
  if ('variable' in config) {
    console.error({ event: 'configuration_invalid', variable: config.variable, message: config.message });
    return problem('configuration_invalid', `The proxy is misconfigured: ${config.variable} ${config.message}.`);
  }
  c.set('config', config);
  let limit = bodyLimits.get(config);
  if (limit === undefined) {
    const detail = `The request body exceeds MAX_BODY_BYTES (${config.maxBodyBytes} bytes).`;
    limit = bodyLimit({ maxSize: config.maxBodyBytes, onError: () => problem('request_too_large', detail) });
    bodyLimits.set(config, limit);
  }
  return limit(c, next);
});

/** Forwards the request as it is; failures become problem responses. */
async function passThrough(request: Request, target: URL, config: ProxyConfig): Promise<Response> {
  try {
    return await proxy(target, { raw: request, redirect: 'manual', signal: AbortSignal.timeout(config.originTimeoutMs) });
  } catch (error) {
    if (error instanceof HTTPException) throw error;
    return outcomeResponse(error instanceof Error && error.name === 'TimeoutError' ? { kind: 'origin_timeout' } : { kind: 'origin_unreachable' });
  }
}

/** Builds the proxy app. */
export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use(withConfig);

  app.all('*', async (c) => {
    const config = c.var.config;
    const request = c.req.raw;
    const target = originTarget(config.originUrl, config.originBasePath, request.url);
    if (!IDEMPOTENT_METHODS.has(request.method)) return passThrough(request, target, config);

    const rawKey = request.headers.get('idempotency-key');
    if (rawKey === null) {
      if (config.requireKey) {
        return problem('idempotency_key_missing', `${request.method} requests must carry an Idempotency-Key header (REQUIRE_IDEMPOTENCY_KEY is on).`);
      }
      return passThrough(request, target, config);
    }
    const parsed = parseIdempotencyKey(rawKey);
    if (!parsed.ok) return problem('idempotency_key_invalid', describeKeyError(parsed.error));

    // Keys are scoped per credential; without one there is no scope to store under (no shared
    // anonymous scope), so the request is forwarded as it is.
    const authorization = request.headers.get('authorization');
    if (authorization === null) return passThrough(request, target, config);
    if (!WELL_FORMED_CREDENTIALS.test(authorization)) {
      return problem('authorization_invalid', 'The Authorization header is empty or contains control characters or non-ASCII bytes.');
    }

    let body: ArrayBuffer;
    try {
      body = await request.arrayBuffer();
    } catch {
      return problem('request_body_invalid', 'The request body ended before its declared length or could not be read.');
    }
    if (body.byteLength > config.maxBodyBytes) {
      return problem('request_too_large', `The request body exceeds MAX_BODY_BYTES (${config.maxBodyBytes} bytes).`);
    }

    const headers = forwardableHeaders(request.headers);
    for (const pair of headers) if (pair[0] === 'idempotency-key') pair[1] = parsed.key;
    const [credential, fingerprint] = await Promise.all([
      hashCredential(authorization),
      fingerprintRequest(request.method, target.pathname + target.search, body),
    ]);
    const namespace = c.env.IDEMPOTENCY;
    const id = namespace.idFromName(recordName(credential, parsed.key));
    try {
      const outcome = await callDurableObject(
        () => namespace.get(id),
        async (stub) =>
          (await stub.execute({
            fingerprint,
            timeoutMs: config.originTimeoutMs,
            leaseMs: config.leaseMs,
            ttlMs: config.ttlMs,
            origin: {
              method: request.method,
              url: target.href,
              headers,
              body: request.body === null ? null : body,
              maxBodyBytes: config.maxBodyBytes,
            },
          })) as Outcome,
      );
      return outcomeResponse(outcome);
    } catch (error) {
      console.error({ event: 'idempotency_unavailable', error: String(error) });
      return problem('idempotency_unavailable', 'The idempotency store could not be reached or failed. Retry later with the same Idempotency-Key.', 1);
    }
  });

  app.onError((error, c) => {
    if (error instanceof HTTPException) return error.getResponse();
    console.error({ event: 'internal_error', method: c.req.method, error: String(error) });
    return problem('internal_error', 'The proxy failed unexpectedly.');
  });
  return app;
}
