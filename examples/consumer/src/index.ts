/**
 * A consumer Worker. In your own project the import is `from 'idempotency-proxy'`.
 *
 * - `/via-service/<path>`: forwarded to the proxy through the service binding (the proxy's origin runs).
 * - `/local/adjust`: this Worker's own handler, made idempotent by `idempotency()` with the proxy's
 *   Durable Object class (bound by `script_name`). `GET /local/runs` tells how often the handler ran.
 */
import { Hono } from 'hono';
import { idempotency, type IdempotencyRecord } from 'idempotency-proxy';

interface ConsumerEnv {
  IDEMPOTENCY_SERVICE: Fetcher;
  IDEMPOTENCY: DurableObjectNamespace<IdempotencyRecord>;
}

let runs = 0;
const app = new Hono<{ Bindings: ConsumerEnv }>();

app.all('/via-service/*', (c) => {
  const url = new URL(c.req.url);
  url.pathname = url.pathname.slice('/via-service'.length);
  return c.env.IDEMPOTENCY_SERVICE.fetch(new Request(url, c.req.raw));
});

app.use('/local/*', idempotency({ binding: 'IDEMPOTENCY' }));
app.post('/local/adjust', async (c) => {
  runs++;
  const { delta } = await c.req.json<{ delta: number }>();
  return c.json({ delta, run: runs }, 201);
});
app.get('/local/runs', (c) => c.json({ runs }));

export default app;
