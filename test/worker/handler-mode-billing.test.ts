/**
 * Handler mode makes one billed Durable Object request per first-time write (issue #22): `begin()` returns an
 * `AttemptReport` on which the handler's result is reported, in the same RPC session, so no `complete()` request
 * follows. Counted at the binding's edge (`bindingEdge`), in front of the real objects; only when that session is
 * gone (the object was reset mid-handler) does the report fall back to `complete(attempt)`, a second request.
 */
import { env } from 'cloudflare:workers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../../src/middleware';
import { type RecordMethod, bindingEdge, newKey, resetObject } from './helpers';

/** A handler-mode app on the real objects, counting the RPC calls its Worker makes on their stubs. */
function countedApp(answer: (key: string) => Response | Promise<Response>) {
  const calls: Partial<Record<RecordMethod, number>> = {};
  const namespace = bindingEdge((method, call) => {
    calls[method] = (calls[method] ?? 0) + 1;
    return call();
  });
  let runs = 0;
  const app = new Hono();
  app.use(idempotency({ reporter: false }));
  app.post('*', (c) => {
    runs++;
    return answer(c.req.header('idempotency-key')!);
  });
  const request = (key: string) =>
    Promise.resolve(
      app.request(
        '/x',
        { method: 'POST', headers: { authorization: 'Bearer t', 'idempotency-key': key }, body: 'x' },
        { ...env, IDEMPOTENCY: namespace },
      ),
    );
  return { request, calls, runs: () => runs };
}

describe('handler mode: one Durable Object request per first-time write', () => {
  it("reports the answer in begin()'s session: one begin, no complete, and the answer is stored and replayed", async () => {
    const app = countedApp(() => new Response('made once', { status: 201 }));
    const key = newKey();
    const first = await app.request(key);
    expect([first.status, await first.text()]).toEqual([201, 'made once']);
    expect(app.calls).toEqual({ begin: 1 });
    const replay = await app.request(key);
    expect([replay.headers.get('idempotent-replay'), await replay.text()]).toEqual(['true', 'made once']);
    expect(app.calls).toEqual({ begin: 2 });
    expect(app.runs()).toBe(1);
  });

  it('reports a streamed answer in the same session when it ends', async () => {
    const encoder = new TextEncoder();
    const app = countedApp(
      () =>
        new Response(
          new ReadableStream({
            async pull(controller) {
              await new Promise((resolve) => setTimeout(resolve, 20));
              controller.enqueue(encoder.encode('data: one\n\n'));
              controller.close();
            },
          }),
        ),
    );
    const key = newKey();
    expect(await (await app.request(key)).text()).toBe('data: one\n\n');
    expect(app.calls).toEqual({ begin: 1 });
    expect((await app.request(key)).headers.get('idempotent-replay')).toBe('true');
    expect(app.runs()).toBe(1);
  });

  it('falls back to complete(attempt) when the object was reset mid-handler, and the answer is still stored', async () => {
    const app = countedApp(async (key) => {
      await resetObject(key, 'Bearer t', 'app');
      return new Response('after a reset', { status: 201 });
    });
    const key = newKey();
    expect(await (await app.request(key)).text()).toBe('after a reset');
    expect(app.calls).toEqual({ begin: 1, complete: 1 });
    const replay = await app.request(key);
    expect([replay.headers.get('idempotent-replay'), await replay.text()]).toEqual(['true', 'after a reset']);
    expect(app.runs()).toBe(1);
  });
});
