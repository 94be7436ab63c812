/**
 * @module
 * A small Idempotency-Key layer in plain Node, written for the tests of `idempotency-check`: a reverse proxy in
 * front of an upstream that keeps what the checks observe (answers kept per credential and key for a day, 409 for
 * another body, keys of 1-128 visible characters, 5xx and other refusals not kept, a result whose body broke off
 * held as lost, streams kept byte-exact, duplicates in flight joined, retry advice and `Idempotency-Expires`), and
 * that can be given one of the bugs real layers have. Its key store is asynchronous, as a remote one is: every
 * operation takes {@link STORE_LATENCY_MS}.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listen } from '../../scripts/lib/processes.ts';
import { isResultStatus } from '../../src/check/origin.ts';

/**
 * One bug for each check (real layers have each of them):
 * - `check-then-set`: looks the key up, then stores it in a second store operation (no atomic set-if-absent)
 * - `stores-5xx`: keeps 5xx answers too
 * - `ignores-body`: compares method and path only
 * - `reruns-replay`: a replay runs the upstream again and returns the kept status with the new body
 * - `unmarked`: a replay carries no `Idempotent-Replay: true`
 * - `keys-reads`: a GET with a key is handled like a write
 * - `long-keys`: takes keys of up to 256 characters
 * - `global-keys`: keys are not per credential
 * - `forgets-broken`: a result whose body broke off frees its key
 * - `advises-retry`: a key reused for another request is refused with `x-should-retry: true`
 * - `no-age`: a replay carries its stored `Date` and `Idempotency-Expires` but no `Age`
 */
export type Bug =
  | 'check-then-set'
  | 'stores-5xx'
  | 'ignores-body'
  | 'reruns-replay'
  | 'unmarked'
  | 'keys-reads'
  | 'long-keys'
  | 'global-keys'
  | 'forgets-broken'
  | 'advises-retry'
  | 'no-age';

export const STORE_LATENCY_MS = 50;
const TTL_MS = 86_400_000;
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const HOP = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade']);
const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

interface Kept {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

interface Entry {
  readonly fingerprint: string;
  readonly created: number;
  state: 'running' | 'kept' | 'lost';
  kept?: Kept;
  /** Resolves when the first request's answer has ended (kept, lost, or freed). */
  readonly done: Promise<void>;
  settle(): void;
}

export interface Layer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startLayer(upstream: string, bug: Bug | null = null): Promise<Layer> {
  const map = new Map<string, Entry>();
  const later = <T>(value: () => T): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(value()), STORE_LATENCY_MS));
  const store = {
    get: (id: string) => {
      const value = map.get(id);
      return later(() => value);
    },
    set: (id: string, entry: Entry) => later(() => void map.set(id, entry)),
    /** Atomic: the entry now under `id`, or `entry` stored. */
    setIfAbsent: (id: string, entry: Entry) => {
      const existing = map.get(id);
      if (existing === undefined) map.set(id, entry);
      return later(() => existing);
    },
    delete: (id: string) => void map.delete(id),
  };

  const refuse = (res: ServerResponse, status: number, code: string, retry: boolean): void => {
    const body = JSON.stringify({ type: 'about:blank', title: code, status, code });
    const advice = String(retry);
    const after = retry ? { 'retry-after': '1', 'retry-after-ms': '1000' } : {};
    res.writeHead(status, {
      'content-type': 'application/problem+json',
      'x-should-retry': advice,
      'stripe-should-retry': advice,
      ...after,
    });
    res.end(body);
  };
  const expiry = (entry: Entry): string => new Date(entry.created + TTL_MS).toUTCString();
  const call = (req: IncomingMessage, body: Buffer): Promise<Response> => {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) if (!HOP.has(name) && typeof value === 'string') headers.set(name, value);
    return fetch(`${upstream}${req.url}`, { method: req.method!, headers, body: WRITES.has(req.method!) ? new Uint8Array(body) : null });
  };
  const keptHeaders = (res: Response): Record<string, string> => {
    const headers: Record<string, string> = {};
    res.headers.forEach((value, name) => {
      if (!HOP.has(name) && name !== 'content-encoding') headers[name] = value;
    });
    return headers;
  };

  /** Answers with a kept answer (its body, or another one), marked as a replay. */
  const answerKept = (res: ServerResponse, entry: Entry, body: Buffer): void => {
    const kept = entry.kept!;
    const age = String(Math.ceil((Date.now() - entry.created) / 1000));
    const extra = isResultStatus(kept.status) ? { 'idempotency-expires': expiry(entry) } : {};
    const mark = bug === 'unmarked' ? {} : { 'idempotent-replay': 'true' };
    res.writeHead(kept.status, { ...kept.headers, ...extra, ...mark, ...(bug === 'no-age' ? {} : { age }) }).end(body);
  };
  const replay = async (req: IncomingMessage, res: ServerResponse, entry: Entry, body: Buffer): Promise<void> => {
    const again = bug === 'reruns-replay' ? Buffer.from(await (await call(req, body)).arrayBuffer()) : entry.kept!.body;
    answerKept(res, entry, again);
  };

  const execute = async (req: IncomingMessage, res: ServerResponse, id: string, entry: Entry, body: Buffer): Promise<void> => {
    let answer: Response;
    try {
      answer = await call(req, body);
    } catch {
      store.delete(id);
      entry.settle();
      return refuse(res, 502, 'origin_unreachable', true);
    }
    const keep = bug === 'stores-5xx' ? answer.status !== 401 && answer.status !== 403 : isResultStatus(answer.status);
    const headers = keptHeaders(answer);
    res.writeHead(answer.status, isResultStatus(answer.status) ? { ...headers, 'idempotency-expires': expiry(entry) } : headers);
    const chunks: Buffer[] = [];
    try {
      if (answer.body !== null) {
        const reader = answer.body.getReader();
        for (let part = await reader.read(); !part.done; part = await reader.read()) {
          chunks.push(Buffer.from(part.value));
          res.write(part.value);
        }
      }
    } catch {
      // The body broke off: a result ran, and is held as lost; anything else frees the key.
      if (keep && bug !== 'forgets-broken') entry.state = 'lost';
      else store.delete(id);
      entry.settle();
      res.destroy();
      return;
    }
    if (keep) {
      entry.kept = { status: answer.status, headers, body: Buffer.concat(chunks) };
      entry.state = 'kept';
    } else store.delete(id);
    entry.settle();
    res.end();
  };

  const server = createServer(async (req, res) => {
    const key = req.headers['idempotency-key'];
    const early = bug === 'check-then-set' && typeof key === 'string' ? `${sha256(req.headers.authorization ?? '')}:${key}` : null;
    const before = early === null ? undefined : await store.get(early);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    if (!(WRITES.has(req.method!) || (bug === 'keys-reads' && req.method === 'GET')) || key === undefined) {
      const answer = await call(req, body);
      res.writeHead(answer.status, keptHeaders(answer)).end(Buffer.from(await answer.arrayBuffer()));
      return;
    }
    const longest = bug === 'long-keys' ? 256 : 128;
    if (typeof key !== 'string' || !/^[\x21-\x7e]+$/.test(key) || key.length > longest)
      return refuse(res, 400, 'idempotency_key_invalid', false);
    const id = `${bug === 'global-keys' ? '' : sha256(req.headers.authorization ?? '')}:${key}`;
    const fingerprint = sha256(`${req.method} ${req.url}${bug === 'ignores-body' ? '' : ` ${sha256(body)}`}`);
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const entry: Entry = { fingerprint, created: Date.now(), state: 'running', done, settle };
    let existing: Entry | undefined;
    if (bug === 'check-then-set') {
      existing = before;
      if (existing === undefined) await store.set(id, entry);
    } else existing = await store.setIfAbsent(id, entry);
    if (existing === undefined) return execute(req, res, id, entry, body);
    if (existing.fingerprint !== fingerprint) return refuse(res, 409, 'idempotency_key_reused', bug === 'advises-retry');
    if (existing.state === 'running') {
      // A duplicate in flight joins the first request's answer, once it has ended.
      await existing.done;
      const state = existing.state as Entry['state'];
      if (state === 'kept') return answerKept(res, existing, existing.kept!.body);
      if (state === 'running' || map.get(id) !== existing) return refuse(res, 409, 'idempotency_key_in_progress', true);
    }
    if (existing.state === 'lost') return refuse(res, 502, 'origin_response_lost', false);
    return replay(req, res, existing, body);
  });
  server.keepAliveTimeout = 120_000;
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
