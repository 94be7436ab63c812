/**
 * @module
 * A minimal Chrome DevTools Protocol client (for `Profiler.*`) and a summary of V8 CPU profiles.
 */

export interface Session {
  send<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  close(): void;
}

/** Opens a DevTools session on `url` (workerd's inspector, or wrangler dev's inspector proxy). */
export async function inspect(url: string): Promise<Session> {
  // wrangler's inspector proxy only accepts DevTools origins; http://localhost is one of them.
  const ws = new WebSocket(url, { headers: { Origin: 'http://localhost' } } as unknown as string[]);
  await new Promise<void>((resolveOpen, reject) => {
    ws.onopen = () => resolveOpen();
    ws.onerror = () => reject(new Error(`cannot open the inspector at ${url}`));
  });
  let id = 0;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; method: string }>();
  ws.onmessage = (event: MessageEvent) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: unknown };
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (waiter === undefined || message.id === undefined) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`${waiter.method}: ${JSON.stringify(message.error)}`));
    else waiter.resolve(message.result);
  };
  return {
    send: <T>(method: string, params: Record<string, unknown> = {}) =>
      new Promise<T>((resolveCall, reject) => {
        pending.set(++id, { resolve: resolveCall as (value: unknown) => void, reject, method });
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

export interface CpuProfile {
  nodes: { hitCount?: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  wallUs: number;
  busyUsPerReq: number;
  idleUs: number;
  top: { fn: string; usPerReq: number; share: number }[];
}

/** Self time per function of a V8 CPU profile, in µs per completed request. */
export function summarizeProfile(profile: CpuProfile, completed: number): ProfileSummary {
  const total = profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0);
  const usPerHit = total > 0 ? (profile.endTime - profile.startTime) / total : 0;
  const byFunction = new Map<string, number>();
  let idle = 0;
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const self = (node.hitCount ?? 0) * usPerHit;
    if (functionName === '(idle)') {
      idle += self;
      continue;
    }
    const file = url ? url.split('/').pop() : '';
    const key = file ? `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}` : functionName || '(native)';
    byFunction.set(key, (byFunction.get(key) ?? 0) + self);
  }
  const busy = [...byFunction.values()].reduce((a, b) => a + b, 0);
  const top = [...byFunction.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)
    .map(([fn, us]) => ({ fn, usPerReq: us / completed, share: us / busy }));
  return { wallUs: profile.endTime - profile.startTime, busyUsPerReq: busy / completed, idleUs: idle, top };
}
