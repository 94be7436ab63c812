/**
 * @module
 * One client request of a fault-schedule run, and one admin purge, each turned into a history event with what came
 * back: status, the headers that matter, the problem's code, and the SHA-256 of every body byte read, read whole or
 * not (aborted on purpose after some bytes, given up, or broken off).
 */
import { createHash } from 'node:crypto';
import { BEHAVIOUR_HEADER, EXECUTION_HEADER, RECONCILE_HEADER, TAG_HEADER } from '../../src/check/origin.ts';
import type { PurgeEvent, Read, RequestEvent } from './history.ts';
import { ADMIN_TOKEN, API_PREFIX, type ClientPlan, type Credential, type Key } from './workload.ts';

/** A client never waits longer than this for one exchange (far beyond any lease). */
const CLIENT_TIMEOUT_MS = 30_000;

export interface Outgoing {
  readonly client: number;
  readonly op: RequestEvent['op'];
  readonly credential: Credential;
  readonly key: Key;
  readonly variant: number;
  readonly body: Buffer<ArrayBuffer>;
  readonly bodySha256: string;
  readonly behaviour: string;
  readonly resend: number;
  readonly plan: ClientPlan;
}

/** The code of a problem document (RFC 9457 `code`, or the `error` envelope's). */
function problemCode(contentType: string | null, text: string): string | null {
  if (contentType === null || !/^application\/(problem\+)?json/.test(contentType)) return null;
  try {
    const value = JSON.parse(text) as { code?: unknown; error?: { code?: unknown } };
    const code = value.code ?? value.error?.code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}

interface Exchanged {
  readonly headersAt: number | null;
  readonly status: number | null;
  readonly headers: Headers | null;
  readonly read: Read;
  readonly bytes: number;
  readonly sha256: string;
  /** The start of the body, for a problem's code. */
  readonly text: string;
  readonly error: string | null;
}

/** Sends one request and reads its answer as `plan` says. */
async function exchange(url: string, init: RequestInit, plan: ClientPlan): Promise<Exchanged> {
  const controller = new AbortController();
  let abortedByUs = false;
  const abort = (why: string) => {
    abortedByUs = true;
    controller.abort(new Error(why));
  };
  const timers = [setTimeout(() => abort('client timeout'), CLIENT_TIMEOUT_MS)];
  if (plan.giveUpMs !== null) timers.push(setTimeout(() => abort('gave up'), plan.giveUpMs));
  const hash = createHash('sha256');
  let bytes = 0;
  let text = '';
  let headersAt: number | null = null;
  let response: Response | undefined;
  try {
    response = await fetch(url, { ...init, redirect: 'manual', signal: controller.signal });
    headersAt = Date.now();
    const reader = response.body?.getReader();
    for (;;) {
      if (plan.abortAfterBytes !== null && bytes >= plan.abortAfterBytes) {
        abort('read enough');
        await reader?.cancel().catch(() => {});
        break;
      }
      const chunk = reader === undefined ? { done: true as const } : await reader.read();
      if (chunk.done) break;
      hash.update(chunk.value);
      bytes += chunk.value.length;
      if (text.length < 4096) text += Buffer.from(chunk.value).toString('latin1');
    }
    const read: Read = abortedByUs ? 'aborted' : 'whole';
    return { headersAt, status: response.status, headers: response.headers, read, bytes, sha256: hash.digest('hex'), text, error: null };
  } catch (error) {
    const read: Read = response === undefined ? 'none' : abortedByUs ? 'aborted' : 'broken';
    const message = abortedByUs ? String((controller.signal.reason as Error).message) : String((error as Error).cause ?? error);
    return {
      headersAt,
      status: response?.status ?? null,
      headers: response?.headers ?? null,
      read,
      bytes,
      sha256: hash.digest('hex'),
      text,
      error: message,
    };
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
}

/** Sends a keyed write to the proxy at `base`. */
export async function sendRequest(base: string, n: number, out: Outgoing): Promise<RequestEvent> {
  const id = `r${n}`;
  const headers: Record<string, string> = {
    authorization: out.credential.authorization,
    'idempotency-key': out.key.key,
    'content-type': 'application/json',
    [BEHAVIOUR_HEADER]: out.behaviour,
    [TAG_HEADER]: id,
  };
  const sent = Date.now();
  const x = await exchange(`${base}${out.key.path}`, { method: 'POST', headers, body: out.body }, out.plan);
  const ended = Date.now();
  const contentType = x.headers?.get('content-type') ?? null;
  const execution = x.headers?.get(EXECUTION_HEADER) ?? null;
  const reconciliation = x.headers?.get(RECONCILE_HEADER) ?? null;
  return {
    type: 'request',
    id,
    n,
    client: out.client,
    op: out.op,
    credential: out.credential.label,
    scope: out.credential.scope,
    key: out.key.key,
    path: out.key.path,
    route: out.key.route.name,
    variant: out.variant,
    bodySha256: out.bodySha256,
    behaviour: out.behaviour,
    resend: out.resend,
    abortAfterBytes: out.plan.abortAfterBytes,
    giveUpMs: out.plan.giveUpMs,
    sent,
    headersAt: x.headersAt,
    ended,
    status: x.status,
    replay: x.headers?.get('idempotent-replay') === 'true',
    expires: x.headers?.get('idempotency-expires') ?? null,
    execution,
    reconciliation,
    contentType,
    code: execution === null && reconciliation === null && x.read === 'whole' ? problemCode(contentType, x.text) : null,
    read: x.read,
    bytes: x.bytes,
    sha256: x.sha256,
    error: x.error,
  };
}

/** An operator's purge of `key` under `credential` (the admin key API). */
export async function sendPurge(base: string, id: string, client: number, credential: Credential, key: string): Promise<PurgeEvent> {
  const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'idempotency-scope': credential.scope };
  const sent = Date.now();
  const x = await exchange(
    `${base}${API_PREFIX}/admin/keys/${encodeURIComponent(key)}`,
    { method: 'DELETE', headers },
    {
      abortAfterBytes: null,
      giveUpMs: null,
    },
  );
  const contentType = x.headers?.get('content-type') ?? null;
  return {
    type: 'purge',
    id,
    client,
    credential: credential.label,
    scope: credential.scope,
    key,
    sent,
    ended: Date.now(),
    status: x.status,
    code: x.read === 'whole' ? problemCode(contentType, x.text) : null,
    contentType,
    error: x.error,
  };
}
