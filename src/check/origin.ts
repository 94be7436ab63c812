/**
 * @module
 * A recording test origin: a Node HTTP server on 127.0.0.1 that stands for the API behind an idempotency layer and
 * records every execution it performs, so that a checker can count executions exactly and compare every answer a
 * client got with the one execution that produced it. Node builtins only, no relative import: the fault-schedule run
 * (`scripts/torture/`) uses it in-process, and the `idempotency-check` command can serve it as its test origin.
 *
 * Every request outside {@link CONTROL_PREFIX} is an execution. Its behaviour is chosen per request by the
 * {@link BEHAVIOUR_HEADER} header (absent: `fast`), which a layer in front forwards as an end-to-end header and which
 * is no part of a request's identity, so a retry may ask for another behaviour:
 * - `fast`: 200 at once; `slow:<ms>`: 200 after `<ms>`; `status:<code>[:<ms>]`: `<code>` (after `<ms>`)
 * - `reset-before-status[:<ms>]`: reads the request, then closes the connection without a status line
 * - `reset-mid-body[:<ms>]`: sends the status line, headers and half the body, then closes the connection
 * - `sse:<n>:<ms>`: `text/event-stream`, `<n>` events, one every `<ms>` (the first at once)
 * - `big:<bytes>[:chunked]`: 200 with `<bytes>` of body, its length declared unless `chunked`
 * - `hold:<id>`: 200 once {@link RecordingOrigin.release} (or `POST /_origin/release/<id>`) releases `<id>`
 *
 * Every answer carries the execution's unique id: in {@link EXECUTION_HEADER}, in the JSON body, in each SSE event and
 * in the bytes of a big body. The origin records, per execution: when it started and ended, method, path,
 * `Idempotency-Key`, the SHA-256 of the credential (the scope headers' value, as the proxy hashes it) and of the
 * request body, the behaviour, the status, the SHA-256 and length of the full answer and of the bytes it really sent,
 * and how the answer ended.
 *
 * What ran: the write of an execution takes effect when its status is a result (below 500, and not 401, 403, 408,
 * 425 or 429, as the proxy's contract counts results), whether or not its answer arrived. `GET
 * /_origin/reconcile/<key>` answers truthfully from these records, for the credential it carries: 200 describing the
 * latest execution of (credential, key) when that one ran (its status, the SHA-256 of its answer, its id in
 * {@link EXECUTION_HEADER}, and the reconciliation's own id in {@link RECONCILE_HEADER}), else 404.
 *
 * Control (never an execution): `GET /_origin/executions` (both lists as JSON), `GET /_origin/reconcile/<key>`,
 * `POST /_origin/release/<id>`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

/** The request header that chooses an execution's behaviour. */
export const BEHAVIOUR_HEADER = 'x-origin-behaviour';
/** A request header the origin records as it is (a client's id for the request, to find its execution). */
export const TAG_HEADER = 'x-origin-tag';
/** The response header carrying the execution's id (also in the body). */
export const EXECUTION_HEADER = 'x-execution-id';
/** The response header of a reconcile answer carrying the reconciliation's id. */
export const RECONCILE_HEADER = 'x-reconcile-id';
/** Paths under this prefix are the origin's own controls, never executions. */
export const CONTROL_PREFIX = '/_origin/';

/** How one execution answers. */
export type Behaviour =
  | { readonly kind: 'fast' }
  | { readonly kind: 'slow'; readonly ms: number }
  | { readonly kind: 'status'; readonly status: number; readonly ms: number }
  | { readonly kind: 'reset-before-status' | 'reset-mid-body'; readonly ms: number }
  | { readonly kind: 'sse'; readonly events: number; readonly ms: number }
  | { readonly kind: 'big'; readonly bytes: number; readonly chunked: boolean }
  | { readonly kind: 'hold'; readonly id: string };

/** How an execution's answer ended. */
export type ExecutionOutcome =
  | 'running'
  /** Every byte of the answer was handed to the connection. */
  | 'answered'
  /** The behaviour closed the connection: before the status line, or after half the body. */
  | 'reset-before-status'
  | 'reset-mid-body'
  /** The caller closed the connection (gave up, or died): before the status line was written, or before the last byte. */
  | 'closed-before-status'
  | 'closed-mid-body';

/** One execution, filled in as it runs. Times are ms since the epoch (`Date.now()`). */
export interface Execution {
  readonly id: string;
  /** 1, 2, 3, ... in the order the requests' heads arrived. */
  readonly seq: number;
  /** When the request's head arrived (its body is read before the execution is recorded). */
  readonly started: number;
  /** When the status line was written, or `null`. */
  headersAt: number | null;
  ended: number | null;
  readonly method: string;
  /** Path and query. */
  readonly path: string;
  readonly key: string | null;
  /** Hex SHA-256 of the credential (see {@link OriginOptions.scopeHeaders}), or `null` without one. */
  readonly credential: string | null;
  readonly bodySha256: string;
  readonly bodyBytes: number;
  /** The {@link TAG_HEADER} value, or `null`. */
  readonly tag: string | null;
  /** The {@link BEHAVIOUR_HEADER} value as sent (`fast` when absent). */
  readonly behaviour: string;
  readonly status: number;
  /** Whether the write took effect: the status is a result. */
  readonly ran: boolean;
  /** SHA-256 and length of the full answer body. */
  readonly answerSha256: string;
  readonly answerBytes: number;
  /** SHA-256 (once ended) and length of the body bytes really written. */
  sentSha256: string | null;
  sentBytes: number;
  outcome: ExecutionOutcome;
}

/** One reconcile question and its answer. */
export interface Reconciliation {
  readonly id: string;
  readonly seq: number;
  readonly time: number;
  readonly key: string;
  readonly credential: string | null;
  /** The latest execution of (credential, key) when it ran, else `null`. */
  readonly execution: string | null;
  readonly status: 200 | 404;
  readonly answerSha256: string;
  readonly answerBytes: number;
}

/** How to start the recording origin. */
export interface OriginOptions {
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** @default 0 (the system picks; read {@link RecordingOrigin.port}) */
  readonly port?: number;
  /** The headers whose value is the credential, as the layer in front scopes keys by them. @default ['authorization'] */
  readonly scopeHeaders?: readonly string[];
  /** Called once per execution when it ends, and once per reconciliation when it is answered. */
  readonly onRecord?: (record: { readonly execution: Execution } | { readonly reconciliation: Reconciliation }) => void;
}

/** A running recording origin: its URL, every execution so far, holds to release, and how to close it. */
export interface RecordingOrigin {
  readonly url: string;
  readonly port: number;
  /** Every execution so far, in `seq` order (running ones included). */
  executions(): readonly Execution[];
  reconciliations(): readonly Reconciliation[];
  /** Lets every `hold:<id>` execution answer, now and later. */
  release(id: string): void;
  /** Resolves once no execution is running, or after `maxMs`; true if none is. */
  settled(maxMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** The statuses below 500 that are not results: try again later (408, 425, 429), credential refused (401, 403). */
const NOT_RESULTS = new Set([401, 403, 408, 425, 429]);
/** Whether a status is a result of the write (see the module description). */
export const isResultStatus = (status: number): boolean => status < 500 && !NOT_RESULTS.has(status);

const MAX_MS = 600_000;
const MAX_BYTES = 64 * 1024 * 1024;
const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Parses a behaviour header value; a string saying what is wrong when it is not one. */
export function parseBehaviour(value: string | undefined): Behaviour | string {
  if (value === undefined || value.trim() === '') return { kind: 'fast' };
  const [kind = '', ...args] = value.trim().split(':');
  const whole = (arg: string | undefined, max: number, fallback?: number): number | undefined =>
    arg === undefined ? fallback : /^\d{1,9}$/.test(arg) && Number(arg) <= max ? Number(arg) : undefined;
  const ms = whole(args[0], MAX_MS, 0);
  switch (kind) {
    case 'fast':
      return args.length === 0 ? { kind } : `fast takes no argument`;
    case 'slow':
      return args.length === 1 && ms !== undefined ? { kind, ms } : 'slow:<ms>';
    case 'status': {
      const status = whole(args[0], 599);
      const delay = whole(args[1], MAX_MS, 0);
      return args.length <= 2 && status !== undefined && status >= 200 && delay !== undefined
        ? { kind, status, ms: delay }
        : 'status:<200-599>[:<ms>]';
    }
    case 'reset-before-status':
    case 'reset-mid-body':
      return args.length <= 1 && ms !== undefined ? { kind, ms } : `${kind}[:<ms>]`;
    case 'sse': {
      const events = whole(args[0], 10_000);
      const every = whole(args[1], MAX_MS);
      return args.length === 2 && events !== undefined && every !== undefined ? { kind, events, ms: every } : 'sse:<n>:<ms>';
    }
    case 'big': {
      const bytes = whole(args[0], MAX_BYTES);
      return bytes !== undefined && (args.length === 1 || (args.length === 2 && args[1] === 'chunked'))
        ? { kind, bytes, chunked: args[1] === 'chunked' }
        : 'big:<bytes>[:chunked]';
    }
    case 'hold':
      return args.length === 1 && /^[\w.-]{1,128}$/.test(args[0]!) ? { kind, id: args[0]! } : 'hold:<id>';
    default:
      return `unknown behaviour ${JSON.stringify(kind)}`;
  }
}

/** The answer an execution gives: its status, headers and every chunk of its body (the SSE events one by one). */
interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly chunks: readonly Buffer[];
}

function answerOf(behaviour: Behaviour | string, facts: Record<string, unknown>, id: string): Answer {
  const headers = { [EXECUTION_HEADER]: id, 'cache-control': 'no-store' };
  const json = (status: number, extra: Record<string, unknown> = {}): Answer => {
    if (status === 204 || status === 304) return { status, headers, chunks: [] };
    const body = Buffer.from(JSON.stringify({ execution: id, status, ...facts, ...extra }));
    return { status, headers: { ...headers, 'content-type': 'application/json', 'content-length': String(body.length) }, chunks: [body] };
  };
  if (typeof behaviour === 'string') return json(400, { error: 'behaviour_invalid', detail: behaviour });
  switch (behaviour.kind) {
    case 'status':
      return json(behaviour.status);
    case 'sse': {
      const events = Array.from({ length: behaviour.events }, (_, i) =>
        Buffer.from(`id: ${i}\ndata: ${JSON.stringify({ execution: id, event: i })}\n\n`),
      );
      return { status: 200, headers: { ...headers, 'content-type': 'text/event-stream' }, chunks: events };
    }
    case 'big': {
      const unit = Buffer.from(`${id}\n`);
      const body = Buffer.alloc(behaviour.bytes);
      for (let offset = 0; offset < body.length; offset += unit.length) unit.copy(body, offset);
      const chunks: Buffer[] = [];
      for (let offset = 0; offset < body.length; offset += 16 * 1024) chunks.push(body.subarray(offset, offset + 16 * 1024));
      const length: Record<string, string> = behaviour.chunked ? {} : { 'content-length': String(body.length) };
      return { status: 200, headers: { ...headers, 'content-type': 'application/octet-stream', ...length }, chunks };
    }
    default:
      return json(200);
  }
}

/** Starts the origin; resolves once it listens. */
export async function startRecordingOrigin(options: OriginOptions = {}): Promise<RecordingOrigin> {
  const { host = '127.0.0.1', port = 0, onRecord } = options;
  const scopeHeaders = (options.scopeHeaders ?? ['authorization']).map((name) => name.toLowerCase());
  const executions: Execution[] = [];
  const reconciliations: Reconciliation[] = [];
  const running = new Set<Execution>();
  const holds = new Map<string, { released: Promise<void>; release: () => void }>();
  let seq = 0;
  const hold = (id: string) => {
    let entry = holds.get(id);
    if (entry === undefined) {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      holds.set(id, (entry = { released, release }));
    }
    return entry;
  };
  const credentialOf = (req: IncomingMessage): string | null => {
    const values = scopeHeaders.map((name) => {
      const value = req.headers[name];
      return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
    });
    if (values.every((value) => value === null)) return null;
    return sha256(values.length === 1 ? values[0]! : JSON.stringify(values));
  };

  function reconcile(req: IncomingMessage, res: ServerResponse, key: string): void {
    const credential = credentialOf(req);
    const latest = executions.findLast((e) => e.key === key && e.credential === credential);
    const id = randomUUID();
    const ran = latest?.ran === true;
    const body = Buffer.from(
      JSON.stringify(
        ran
          ? { ran: true, execution: latest.id, status: latest.status, answer_sha256: latest.answerSha256, reconciliation: id }
          : { ran: false, reconciliation: id },
      ),
    );
    const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store', [RECONCILE_HEADER]: id };
    if (ran) headers[EXECUTION_HEADER] = latest.id;
    const record: Reconciliation = {
      id,
      seq: reconciliations.length + 1,
      time: Date.now(),
      key,
      credential,
      execution: ran ? latest.id : null,
      status: ran ? 200 : 404,
      answerSha256: sha256(body),
      answerBytes: body.length,
    };
    reconciliations.push(record);
    res.writeHead(record.status, headers).end(body);
    onRecord?.({ reconciliation: record });
  }

  function control(req: IncomingMessage, res: ServerResponse, path: string): void {
    const [, , action = '', arg = ''] = path.split('/');
    const reply = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(value));
    };
    if (req.method === 'GET' && action === 'executions' && arg === '') return reply(200, { executions, reconciliations });
    if (req.method === 'GET' && action === 'reconcile' && arg !== '') return reconcile(req, res, decodeURIComponent(arg));
    if (req.method === 'POST' && action === 'release' && arg !== '') {
      hold(decodeURIComponent(arg)).release();
      return reply(200, { released: true });
    }
    reply(404, { error: 'not_found' });
  }

  async function execute(req: IncomingMessage, res: ServerResponse, started: number, path: string): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      return; // the request never arrived whole: no execution
    }
    const body = Buffer.concat(chunks);
    const raw = req.headers[BEHAVIOUR_HEADER];
    const behaviourText = typeof raw === 'string' ? raw : 'fast';
    const behaviour = parseBehaviour(typeof raw === 'string' ? raw : undefined);
    const key = req.headers['idempotency-key'];
    const tag = req.headers[TAG_HEADER];
    const id = randomUUID();
    const facts = { method: req.method ?? '', path, key: typeof key === 'string' ? key : null };
    const answer = answerOf(behaviour, facts, id);
    const full = Buffer.concat(answer.chunks);
    const execution: Execution = {
      id,
      seq: ++seq,
      started,
      headersAt: null,
      ended: null,
      ...facts,
      credential: credentialOf(req),
      bodySha256: sha256(body),
      bodyBytes: body.length,
      tag: typeof tag === 'string' ? tag : null,
      behaviour: behaviourText,
      status: answer.status,
      ran: isResultStatus(answer.status),
      answerSha256: sha256(full),
      answerBytes: full.length,
      sentSha256: null,
      sentBytes: 0,
      outcome: 'running',
    };
    executions.push(execution);
    running.add(execution);
    const sent = createHash('sha256');
    const end = (outcome: ExecutionOutcome) => {
      if (execution.outcome !== 'running') return;
      execution.outcome = outcome;
      execution.ended = Date.now();
      execution.sentSha256 = sent.digest('hex');
      running.delete(execution);
      onRecord?.({ execution });
    };
    let closed = false;
    const gone = new Promise<void>((resolve) =>
      res.once('close', () => {
        closed = true;
        if (!res.writableFinished) end(res.headersSent ? 'closed-mid-body' : 'closed-before-status');
        resolve();
      }),
    );
    const wait = (ms: number) => (ms > 0 ? Promise.race([sleep(ms), gone]) : Promise.resolve());
    // Written, recorded, and flushed to the connection before the next step (a reset must not drop what was written).
    const write = (chunk: Buffer) => {
      sent.update(chunk);
      execution.sentBytes += chunk.length;
      return Promise.race([new Promise<void>((resolve) => res.write(chunk, () => resolve())), gone]);
    };
    const head = () => {
      res.writeHead(answer.status, answer.headers);
      res.flushHeaders();
      execution.headersAt = Date.now();
    };

    if (typeof behaviour !== 'string') {
      if (behaviour.kind === 'hold') await Promise.race([hold(behaviour.id).released, gone]);
      if (behaviour.kind === 'slow' || behaviour.kind === 'status') await wait(behaviour.ms);
      if (behaviour.kind === 'reset-before-status' || behaviour.kind === 'reset-mid-body') {
        await wait(behaviour.ms);
        if (closed) return;
        if (behaviour.kind === 'reset-mid-body') {
          head();
          await write(full.subarray(0, Math.floor(full.length / 2)));
        }
        end(behaviour.kind);
        req.socket.destroy();
        return;
      }
    }
    if (closed) return;
    head();
    for (const [index, chunk] of answer.chunks.entries()) {
      if (typeof behaviour !== 'string' && behaviour.kind === 'sse' && index > 0) await wait(behaviour.ms);
      if (closed) return;
      await write(chunk);
    }
    if (closed) return;
    res.end(() => end('answered'));
  }

  const server = createServer((req, res) => {
    const started = Date.now();
    const path = req.url ?? '/';
    if (path.startsWith(CONTROL_PREFIX)) return control(req, res, path.split('?')[0]!);
    void execute(req, res, started, path);
  });
  // A layer in front keeps connections to the origin open: an idle connection the origin closed first could meet a
  // request already on its way (a connection failure that is nobody's fault). The layer's own idle limit applies.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the origin has no TCP address');
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    executions: () => executions,
    reconciliations: () => reconciliations,
    release: (id) => hold(id).release(),
    async settled(maxMs = 30_000) {
      const deadline = Date.now() + maxMs;
      while (running.size > 0 && Date.now() < deadline) await sleep(25);
      return running.size === 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const entry of holds.values()) entry.release();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
