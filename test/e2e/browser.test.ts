/**
 * A real browser (the headless Chromium of the npm package `@sparticuz/chromium`, driven by puppeteer-core) reads the
 * proxy's answers cross-origin (issue #17): a page served from one origin sends keyed POSTs to the proxy on another
 * (another port), which `IDEMPOTENCY_CORS_ORIGINS` lists. The test origin answers the preflight itself (it owns its
 * CORS policy), so what is proved here is that the browser lets the page read the replay marker, the key's expiry and
 * the problem of a reused key. The browser comes from the lock file (issue #28: nothing installed by hand) and runs
 * with web security on; when it cannot start, this test fails: it never skips.
 */
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import puppeteer, { type Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../scripts/lib/processes.ts';
import { startTestOrigin, type TestOrigin } from '../origin/server.ts';
import { type UnpackedChromium, unpackChromium } from './chromium.ts';
import { newStateDir, originCount, removeDir, type RunningProxy, startProxy } from './harness.ts';

const setup = {} as {
  origin: TestOrigin;
  proxy: RunningProxy;
  stateDir: string;
  page: Server;
  pageUrl: string;
  chromium: UnpackedChromium;
  browser: Browser;
};

beforeAll(async () => {
  // The page's own origin: a tiny server that serves one empty HTML page.
  setup.page = createServer((_, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>page</title>');
  });
  setup.pageUrl = `http://127.0.0.1:${await listen(setup.page)}`;
  setup.chromium = await unpackChromium();
  setup.origin = await startTestOrigin();
  setup.stateDir = newStateDir();
  setup.proxy = await startProxy({
    originUrl: setup.origin.url,
    stateDir: setup.stateDir,
    vars: { IDEMPOTENCY_CORS_ORIGINS: `https://elsewhere.example, ${setup.pageUrl}` },
  });
});

afterAll(async () => {
  await setup.browser?.close();
  await setup.proxy?.stop();
  await setup.origin?.close();
  await new Promise((resolve) => setup.page?.close(resolve));
  if (setup.stateDir) removeDir(setup.stateDir);
  if (setup.chromium) removeDir(setup.chromium.dir);
});

/** What the page could read of one answer. */
interface Seen {
  status: number;
  replay: string | null;
  expires: string | null;
  shouldRetry: string | null;
  body: { code?: string; call?: number };
}

describe('a page on another origin, in headless Chromium', () => {
  it('reads Idempotent-Replay on a replay, and code and x-should-retry of a reused key', async () => {
    const { executablePath, env } = setup.chromium;
    // Not the package's own argument list: it turns web security (CORS) off, which is what this test is about.
    setup.browser = await puppeteer.launch({ executablePath, env, headless: 'shell', args: ['--no-sandbox', '--no-zygote'] });
    const page = await setup.browser.newPage();
    await page.goto(setup.pageUrl);

    const key = randomUUID();
    const path = `/cors/browser-${randomUUID()}`;
    const post = (body: unknown): Promise<Seen> =>
      page.evaluate(
        async (url: string, key: string, body: string) => {
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'Idempotency-Key': key, Authorization: 'Bearer browser-user', 'Content-Type': 'application/json' },
            body,
          });
          return {
            status: res.status,
            replay: res.headers.get('Idempotent-Replay'),
            expires: res.headers.get('Idempotency-Expires'),
            shouldRetry: res.headers.get('x-should-retry'),
            body: (await res.json()) as { code?: string; call?: number },
          };
        },
        `${setup.proxy.url}${path}`,
        key,
        JSON.stringify(body),
      );

    const first = await post({ amount: 500 });
    expect(first).toMatchObject({ status: 200, replay: null, body: { call: 1 } });
    // The origin allowed the page; the proxy exposed the key's expiry on the origin's own answer.
    expect(Date.parse(first.expires ?? '')).toBeGreaterThan(Date.now());

    const second = await post({ amount: 500 });
    expect(second).toMatchObject({ status: 200, replay: 'true', expires: first.expires, body: { call: 1 } });

    const third = await post({ amount: 501 });
    expect(third).toMatchObject({ status: 409, shouldRetry: 'false', body: { code: 'idempotency_key_reused' } });
    expect(await originCount(setup.origin.url, { key })).toBe(1);
  });
});
