// The demo origin for `npm start`: the seed's balance ledger, `POST /api/v1/economy/adjust`.
// It is deliberately NOT idempotent (every call moves the balance), so the proxy's effect is visible.
//
//   POST /api/v1/economy/adjust   { "user_id": "123", "delta": 500, "reason": "Tournament prize" }
//        → 200 { "adjustment_id", "user_id", "delta", "balance" }, 422 on a bad body, 401 without Authorization
//   GET  /api/v1/economy/balance/<user_id>  → 200 { "user_id", "balance", "adjustments" }
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

/** Starts the ledger on 127.0.0.1:`port`; resolves to the server once it listens. */
export function startDemoOrigin(port) {
  const balances = new Map();
  const counts = new Map();
  const server = createServer(async (req, res) => {
    const send = (status, value) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const url = new URL(req.url ?? '/', 'http://demo');
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    if (!req.headers.authorization) return send(401, { error: 'missing_authorization' });

    const balanceMatch = /^\/api\/v1\/economy\/balance\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && balanceMatch) {
      const user = decodeURIComponent(balanceMatch[1]);
      return send(200, { user_id: user, balance: balances.get(user) ?? 0, adjustments: counts.get(user) ?? 0 });
    }
    if (req.method === 'POST' && url.pathname === '/api/v1/economy/adjust') {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return send(422, { error: 'invalid_json' });
      }
      if (typeof body?.user_id !== 'string' || !Number.isInteger(body?.delta)) {
        return send(422, { error: 'validation_failed', detail: 'user_id (string) and delta (integer) are required' });
      }
      const balance = (balances.get(body.user_id) ?? 0) + body.delta;
      balances.set(body.user_id, balance);
      counts.set(body.user_id, (counts.get(body.user_id) ?? 0) + 1);
      console.log(`[demo origin] adjust user=${body.user_id} delta=${body.delta} -> balance=${balance}`);
      return send(200, { adjustment_id: randomUUID(), user_id: body.user_id, delta: body.delta, balance });
    }
    return send(404, { error: 'not_found' });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.DEMO_ORIGIN_PORT ?? 8788);
  await startDemoOrigin(port);
  console.log(`[demo origin] listening on http://127.0.0.1:${port}`);
}
