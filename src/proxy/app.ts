/**
 * @module
 * The proxy Worker: a Hono app that forwards every request to `ORIGIN_URL`, with the `idempotency()`
 * middleware in origin mode in front, so keyed writes run inside their `IdempotencyRecord` object.
 * One app is built per configuration (per `env` object, so per isolate), never per request.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { proxy } from 'hono/proxy';
import { idempotency } from '../middleware/idempotency';
import { outcomeResponse } from '../shared/outcome';
import { problem } from '../shared/problem';
import { ConfigError, type ProxyConfig, type ProxyVars, readConfig } from './config';

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

/** The app of a valid configuration. */
function createProxy(config: ProxyConfig): Hono {
  const target = (url: string) => originTarget(config.origin, config.basePath, url);
  const { maxBodyBytes } = config.resolved;
  const app = new Hono();
  app.use(
    idempotency({
      ...config.options,
      ...(config.logRequests ? {} : { reporter: false as const }),
      run: { mode: 'origin', target: (c) => target(c.req.url) },
    }),
  );
  // Requests the middleware passes on (reads, writes without a key or credential) get here.
  const limit = bodyLimit({
    maxSize: maxBodyBytes,
    onError: () => problem('request_too_large', `The request body exceeds ${maxBodyBytes} bytes.`),
  });
  app.all('*', limit, (c) => passThrough(c.req.raw, target(c.req.url)));
  app.onError((error, c) => {
    if (error instanceof HTTPException) return error.getResponse();
    console.error(JSON.stringify({ event: 'internal_error', method: c.req.method, error: String(error) }));
    return problem('internal_error', 'The proxy failed unexpectedly.');
  });
  return app;
}

/** The app of an invalid configuration: every request gets `configuration_invalid`. */
function misconfigured(error: ConfigError): Hono {
  const app = new Hono();
  app.all('*', () => {
    console.error(JSON.stringify({ event: 'configuration_invalid', variables: error.variables, message: error.message }));
    return problem('configuration_invalid', `The proxy is misconfigured: ${error.message}.`);
  });
  return app;
}

const apps = new WeakMap<object, Hono>();

/**
 * The proxy app for an `env`, built once per `env` object (workerd hands the same object to every
 * request of an isolate, so configuration is read and checked once, not per request).
 *
 * @param env - the Worker's bindings and variables
 * @returns the app; for an invalid configuration, one that answers `configuration_invalid`
 */
export function proxyFor(env: ProxyVars): Hono {
  let app = apps.get(env);
  if (app === undefined) {
    try {
      app = createProxy(readConfig(env));
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      app = misconfigured(error);
    }
    apps.set(env, app);
  }
  return app;
}

/** The proxy Worker's fetch handler. */
export const proxyWorker = {
  fetch: (request, env, ctx) => proxyFor(env).fetch(request, env, ctx),
} satisfies ExportedHandler<Env>;
