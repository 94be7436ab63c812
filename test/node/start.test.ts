/**
 * Issue #28: `npm start` with the demo origin moved (`DEMO_ORIGIN_PORT`, the advice when 8788 is busy) points the
 * proxy's `ORIGIN_URL` at it too; it used to move only the demo origin, and every request then got 502.
 */
import { describe, expect, it } from 'vitest';
import { demoOriginPort, portBusyMessage, wranglerDevArgs } from '../../scripts/lib/start-args.ts';

describe('npm start', () => {
  it('points ORIGIN_URL at a demo origin moved by DEMO_ORIGIN_PORT', () => {
    const demo = demoOriginPort({ DEMO_ORIGIN_PORT: '9911' });
    expect(demo).toEqual({ port: 9911, moved: true });
    expect(wranglerDevArgs(['--port', '8790'], demo)).toEqual(['dev', '--var', 'ORIGIN_URL:http://127.0.0.1:9911', '--port', '8790']);
  });

  it('leaves wrangler.toml’s ORIGIN_URL alone for the default port, and an ORIGIN_URL the user names', () => {
    expect(wranglerDevArgs([], demoOriginPort({}))).toEqual(['dev']);
    const moved = demoOriginPort({ DEMO_ORIGIN_PORT: '9911' });
    expect(wranglerDevArgs(['--var', 'ORIGIN_URL:https://api.example.com'], moved)).toEqual([
      'dev',
      '--var',
      'ORIGIN_URL:https://api.example.com',
    ]);
  });

  it('says, when the port is taken, that DEMO_ORIGIN_PORT moves ORIGIN_URL too', () => {
    expect(portBusyMessage(8788, 'EADDRINUSE')).toContain('DEMO_ORIGIN_PORT=<port> npm start: ORIGIN_URL then points there too');
  });
});
