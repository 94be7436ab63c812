/**
 * @module
 * The proxy Worker: a Hono app that forwards every request to `ORIGIN_URL`, with the `idempotency()`
 * middleware in origin mode in front, so keyed writes run inside their `IdempotencyRecord` object.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createMiddleware } from 'hono/factory';
import { HTTPException } from 'hono/http-exception';
import { proxy } from 'hono/proxy';
import type { MiddlewareHandler } from 'hono/types';
import { configFor, type ProxyConfig } from './core/config';
import { outcomeResponse } from './core/outcome';
import { problem } from './core/problem';
import { idempotency, type IdempotencyEnv } from './middleware/idempotency';

type AppEnv = { Bindings: Env; Variables: { config: ProxyConfig } };

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

/** Per configuration (so per isolate): the body limit and the idempotency middleware, built once. */
const layers = new WeakMap<ProxyConfig, { limit: MiddlewareHandler; idempotency: MiddlewareHandler<IdempotencyEnv> }>();

function layersFor(config: ProxyConfig) {
  let built = layers.get(config);
  if (built === undefined) {
    const detail = `The request body exceeds MAX_BODY_BYTES (${config.maxBodyBytes} bytes).`;
    built = {
      limit: bodyLimit({ maxSize: config.maxBodyBytes, onError: () => problem('request_too_large', detail) }),
      idempotency: idempotency({
        ttlSeconds: config.ttlMs / 1000,
        timeoutMs: config.originTimeoutMs,
        leaseMs: config.leaseMs,
        maxBodyBytes: config.maxBodyBytes,
        required: config.requireKey,
        ...(config.logRequests ? {} : { reporter: false as const }),
        run: { mode: 'origin', target: (c) => originTarget(config.originUrl, config.originBasePath, c.req.url) },
      }),
    };
    layers.set(config, built);
  }
  return built;
}

const withConfig = createMiddleware<AppEnv>(async (c, next) => {
  const config = configFor(c.env);
  if ('variable' in config) {
    console.error(JSON.stringify({ event: 'configuration_invalid', variable: config.variable, message: config.message }));
    return problem('configuration_invalid', `The proxy is misconfigured: ${config.variable} ${config.message}.`);
  }
  c.set('config', config);
  const { limit, idempotency: protect } = layersFor(config);
  return limit(c, async () => {
    const response = await protect(c as never, next);
    if (response) c.res = response;
  });
});

/**
 * Forwards the request as it is, like a plain reverse proxy (no timeout of its own: the client decides
 * how long to wait for a read); an unreachable origin becomes a problem response.
 */
async function passThrough(request: Request, target: URL): Promise<Response> {
  try {
    return await proxy(target, { raw: request, redirect: 'manual' });
  } catch (error) {
    if (error instanceof HTTPException) throw error;
    return outcomeResponse({ kind: 'origin_unreachable' });
  }
}

/** Builds the proxy app. */
export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use(withConfig);
  app.all('*', (c) => {
    const config = c.var.config;
    return passThrough(c.req.raw, originTarget(config.originUrl, config.originBasePath, c.req.url));
  });
  app.onError((error, c) => {
    if (error instanceof HTTPException) return error.getResponse();
    console.error(JSON.stringify({ event: 'internal_error', method: c.req.method, error: String(error) }));
    return problem('internal_error', 'The proxy failed unexpectedly.');
  });
  return app;
}
