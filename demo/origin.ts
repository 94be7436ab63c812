/**
 * @module
 * The demo origin for `npm start`: the seed's balance ledger, `POST /api/v1/economy/adjust`.
 * It is deliberately NOT idempotent (every call moves the balance), so the proxy's effect is visible.
 *
 *   POST /api/v1/economy/adjust   { "user_id": "123", "delta": 500, "reason": "Tournament prize" }
 *        → 200 { "adjustment_id", "user_id", "delta", "balance" }, 422 on a bad body, 401 without Authorization
 *   GET  /api/v1/economy/balance/<user_id>  → 200 { "user_id", "balance", "adjustments" }
 *
 * Run on its own: `node demo/origin.ts` (port from DEMO_ORIGIN_PORT, default 8788).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { listen } from '../scripts/lib/processes.ts';

/** Starts the ledger on 127.0.0.1:`port` (the proxy's wrangler.toml points ORIGIN_URL at 8788); resolves once it listens. */
export async function startDemoOrigin(port: number): Promise<Server> {
  const balances = new Map<string, number>();
  const counts = new Map<string, number>();
  const server = createServer(async (req, res) => {
    const send = (status: number, value: unknown): ServerResponse => {
      res.writeHead(status, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(value));
    };
    const url = new URL(req.url ?? '/', 'http://demo');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (!req.headers.authorization) return send(401, { error: 'missing_authorization' });

    const balanceMatch = /^\/api\/v1\/economy\/balance\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && balanceMatch?.[1] !== undefined) {
      const user = decodeURIComponent(balanceMatch[1]);
      return send(200, { user_id: user, balance: balances.get(user) ?? 0, adjustments: counts.get(user) ?? 0 });
    }
    if (req.method === 'POST' && url.pathname === '/api/v1/economy/adjust') {
      let body: { user_id?: unknown; delta?: unknown } | null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
      } catch {
        return send(422, { error: 'invalid_json' });
      }
      if (typeof body?.user_id !== 'string' || typeof body.delta !== 'number' || !Number.isInteger(body.delta)) {
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
  await listen(server, '127.0.0.1', port);
  return server;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env['DEMO_ORIGIN_PORT'] ?? 8788);
  await startDemoOrigin(port);
  console.log(`[demo origin] listening on http://127.0.0.1:${port}`);
}
