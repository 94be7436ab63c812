import { describe, expect, it } from 'vitest';
import { newKey, originCalls, send } from './helpers';

describe('proxy: first call and replay', () => {
  it('runs the origin once and replays the stored response with Idempotent-Replay: true', async () => {
    const key = newKey();
    const body = JSON.stringify({ user_id: '123', delta: 500 });
    const first = await send('/echo/adjust', { key, body, headers: { 'content-type': 'application/json' } });
    expect(first.status).toBe(200);
    expect(first.headers.get('idempotent-replay')).toBeNull();
    const firstBody = await first.text();

    const second = await send('/echo/adjust', { key, body, headers: { 'content-type': 'application/json' } });
    expect(second.status).toBe(200);
    expect(second.headers.get('idempotent-replay')).toBe('true');
    expect(await second.text()).toBe(firstBody);
    expect(await originCalls(key)).toBe(1);
  });
});
