/**
 * @module
 * The proxy Worker: a Hono app that forwards every request to its origin, with the `idempotency()` middleware
 * in origin mode in front (per route, when `IDEMPOTENCY_ROUTES` sets routes), so keyed writes run inside their
 * `IdempotencyRecord` object. One app is built per configuration (per `env` object, so per isolate), never per
 * request: every route's middleware is built once.
 */
import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { type Answers, type IdempotencyEnv, KeyLookups, type ResolvedOptions, createIdempotency } from '../middleware';
import { ConfigError, type ProxyConfig, type ProxyVars, answersOf, readConfig } from './config';
import { reject } from '../shared/problem';
import { directForwarding, passThrough } from './forward';
import { keysApi } from './keys';
import { looped, originTarget, pathAndQuery, pathnameOf, reservedPath, viaWith } from './target';

/** How the requests of one route (or of no route) are handled. */
interface Policy {
  /** The idempotency layer (a pass-through for `mode = "off"`). */
  readonly protect: MiddlewareHandler<ProxyEnv>;
  /** The body limit of requests that are forwarded as they are. */
  readonly limit: MiddlewareHandler;
}

/** The app's env: the middleware's, and the policy of the route that matched. */
type ProxyEnv = { Bindings: IdempotencyEnv['Bindings']; Variables: IdempotencyEnv['Variables'] & { policy?: Policy } };

/** The proxy of one configuration: how it answers, and its key lookups (for the `IdempotencyService` entrypoint). */
export interface Proxy {
  /** Answers a request: forwarded directly when nothing else is needed, else through the app. */
  fetch(request: Request, env: ProxyVars, ctx?: ExecutionContext): Promise<Response>;
  /** Lookups and purges of its records; `undefined` when the configuration is invalid ({@link error}). */
  readonly keys: KeyLookups | undefined;
  readonly error: ConfigError | undefined;
}

/** The app of a valid configuration. */
function createProxy(config: ProxyConfig, keys: KeyLookups): Hono<ProxyEnv> {
  const app = new Hono<ProxyEnv>();
  const { answers } = config.resolved;
  const policy = (options: ResolvedOptions, off: boolean): Policy => ({
    protect: off ? (_, next) => next() : createIdempotency(options),
    limit: bodyLimit({
      maxSize: options.maxBodyBytes,
      onError: (c) =>
        answers.problem({ code: 'request_too_large', detail: `The request body exceeds ${options.maxBodyBytes} bytes.` }, c.req.raw),
    }),
  });
  const global = policy(config.resolved, false);

  const { origin } = config;
  if (origin.mode === 'request') {
    // Only the hosts this proxy serves, by scheme, host and port: where the runtime takes Host from the client
    // (self-hosted workerd), any other would make it fetch a host (or a port, or plain http) of the client's choosing.
    app.use((c, next) => {
      if (!origin.hosts.has(new URL(c.req.url).origin))
        reject('host_not_allowed', 'This proxy does not serve the host of this request; nothing was forwarded.');
      return next();
    });
  }
  // The key API answers itself: nothing under its prefix is ever forwarded, nor anything an origin could read as
  // under it (//_idempotency, /_IDEMPOTENCY, /_idempotency;x): those carry the admin token as well as the API does.
  if (config.apiPrefix !== undefined) {
    const anonymous =
      config.resolved.allowAnonymous || config.routes.some((route) => route.mode !== 'off' && route.resolved.allowAnonymous);
    const admin = config.disabled.find((error) => error.variables.includes('IDEMPOTENCY_ADMIN_TOKEN')) ?? config.adminToken;
    app.route(config.apiPrefix, keysApi(config.apiPrefix, keys, config.resolved, admin, anonymous));
    const reserved = reservedPath(config.apiPrefix);
    app.use((c, next) => {
      if (reserved(pathnameOf(pathAndQuery(c.req.url))))
        reject('path_invalid', 'The path could be read as the key API in another spelling; it is not forwarded.');
      return next();
    });
  }

  if (origin.mode === 'request') {
    // Forwarding to the request's own URL reaches the zone's origin server in production, but anywhere a
    // request could come back here (wrangler dev, a misrouted zone) the mark breaks the loop.
    app.use(async (c, next) => {
      if (looped(c.req.raw))
        return answers.problem(
          { code: 'loop_detected', detail: 'This request has already passed through this proxy; it was not forwarded again.' },
          c.req.raw,
        );
      c.req.raw = new Request(c.req.raw, { headers: markedHeaders(c.req.raw) });
      return next();
    });
  }
  // The first route that matches (pattern and method) decides; a request that matches none follows the globals.
  for (const route of config.routes) {
    const chosen = policy(route.resolved, route.mode === 'off');
    app.on([...route.resolved.methods], route.pattern, async (c, next) => {
      if (c.get('policy') === undefined) c.set('policy', chosen);
      await next();
    });
  }
  // The target is computed where a request is sent (the object's origin call, the pass-through): a path that
  // could leave ORIGIN_URL's base path is refused there, before anything is stored or forwarded.
  app.use((c, next) => (c.get('policy') ?? global).protect(c, next));
  // Requests the idempotency layer passes on (reads, writes without a key or credential) get here.
  app.all(
    '*',
    (c, next) => (c.get('policy') ?? global).limit(c, next),
    (c) => passThrough(c.req.raw, originTarget(config.origin, c.req.url), answers),
  );
  app.onError((error, c) => answers.error(error, c.req.raw));
  return app;
}

/**
 * The request's headers with this proxy's `Via` entry, and without `via` among the names in `Connection`: those
 * headers are dropped before forwarding, and a client could otherwise remove the loop guard's own entry.
 */
function markedHeaders(request: Request): Headers {
  const headers = new Headers(request.headers);
  headers.set('via', viaWith(request));
  const connection = headers.get('connection');
  if (connection !== null) {
    const kept = connection.split(',').filter((name) => name.trim() !== '' && name.trim().toLowerCase() !== 'via');
    if (kept.length === 0) headers.delete('connection');
    else headers.set('connection', kept.join(','));
  }
  return headers;
}

/** The app of an invalid configuration: every request gets `configuration_invalid`. */
function misconfigured(error: ConfigError, answers: Answers): Hono {
  const app = new Hono();
  app.all('*', (c) => {
    console.error(JSON.stringify({ event: 'configuration_invalid', variables: error.variables, message: error.message }));
    return answers.problem({ code: 'configuration_invalid', detail: `The proxy is misconfigured: ${error.message}.` }, c.req.raw);
  });
  return app;
}

const proxies = new WeakMap<object, Proxy>();

/**
 * The proxy for an `env`, built once per `env` object (workerd hands the same object to every request of an
 * isolate, so configuration is read and checked once, not per request).
 *
 * @param env - the Worker's bindings and variables
 * @returns the proxy; for an invalid configuration, an app that answers `configuration_invalid`
 */
export function proxyFor(env: ProxyVars): Proxy {
  let built = proxies.get(env);
  if (built === undefined) {
    try {
      const config = readConfig(env);
      // Once per configuration (per isolate): the feature is off, and its own routes say why.
      for (const error of config.disabled)
        console.error(
          JSON.stringify({ event: 'configuration_invalid', variables: error.variables, message: error.message, disabled: true }),
        );
      const keys = new KeyLookups(config.resolved);
      const app = createProxy(config, keys);
      const direct = directForwarding(config);
      const fetch: Proxy['fetch'] = direct
        ? (request, env, ctx) => direct(request) ?? Promise.resolve(app.fetch(request, env, ctx))
        : (request, env, ctx) => Promise.resolve(app.fetch(request, env, ctx));
      built = { fetch, keys, error: undefined };
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      const app = misconfigured(error, answersOf(env));
      built = { fetch: (request, env, ctx) => Promise.resolve(app.fetch(request, env, ctx)), keys: undefined, error };
    }
    proxies.set(env, built);
  }
  return built;
}

/** The proxy Worker's fetch handler. */
export const proxyWorker = {
  fetch: (request, env, ctx) => proxyFor(env).fetch(request, env, ctx),
} satisfies ExportedHandler<Env>;
