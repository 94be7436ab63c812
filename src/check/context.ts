/**
 * @module
 * What every check of `idempotency-check` works with: its own `send` (tagged with the check's name, so the recording
 * origin can count its executions), how executions are seen, and what earlier checks noted for the later ones.
 */
import { randomUUID } from 'node:crypto';
import type { Options } from './args.ts';
import { type Answer, type Request, same, show } from './http.ts';
import { isResultStatus } from './origin.ts';

/** How a check ended. */
export type Status = 'pass' | 'fail' | 'skip';

/** A check's verdict: a one-line reason with its evidence. */
export interface Verdict {
  readonly status: Status;
  readonly detail: string;
}

/** A passed check, with its evidence. */
export const pass = (detail: string): Verdict => ({ status: 'pass', detail });
/** A failed check, with what shows it. */
export const fail = (detail: string): Verdict => ({ status: 'fail', detail });
/** A check that could not run here, with why. */
export const skip = (detail: string): Verdict => ({ status: 'skip', detail });

/** A refusal seen by a check, and whether the same request may succeed later. */
export interface Refusal {
  readonly what: string;
  readonly answer: Answer;
  readonly retryable: boolean;
}

/** What a check leaves for the checks judged from it (retry advice, expiry). */
export interface Notes {
  readonly refusals: Refusal[];
  /** The replay check's first answer and its replay. */
  replay?: readonly [Answer, Answer];
  /** An answer that freed its key (a 5xx from the origin), which must not advertise an expiry. */
  freed?: Answer;
}

/** What every check gets: the plan, a session for its requests, and the origin in origin mode. */
export interface Context {
  readonly options: Options;
  /** Sends a request of this check. */
  send(request: Request): Promise<Answer>;
  /** Origin mode: the executions of this check so far (of one method, if given), once the origin is idle. */
  readonly executions: ((method?: string) => Promise<number>) | null;
  /** Black-box: whether two executions give different answers, and what showed it. */
  readonly visible: { readonly yes: boolean; readonly how: string };
  readonly notes: Notes;
}

/** A fresh random key, or one of `length` visible ASCII characters. */
export function newKey(length?: number): string {
  if (length === undefined) return randomUUID();
  let key = '';
  while (key.length < length) key += randomUUID().replaceAll('-', '');
  return key.slice(0, length);
}

/** Why `answer` is not a whole result a key keeps (a status below 500, not 401, 403, 408, 425, 429), or `null`. */
export function notResult(answer: Answer): string | null {
  if (answer.status === 0 || answer.error !== null || !isResultStatus(answer.status)) return show(answer);
  return null;
}

/**
 * How many executions produced `answers`: counted by the recording origin (origin mode), or told apart by their
 * bytes where different executions answer differently (black-box); `null` when executions cannot be seen.
 */
export async function executionsOf(ctx: Context, answers: readonly Answer[]): Promise<{ count: number; how: string } | null> {
  if (ctx.executions !== null) return { count: await ctx.executions(), how: 'counted by the test origin' };
  if (!ctx.visible.yes) return null;
  const distinct: Answer[] = [];
  for (const answer of answers) if (!distinct.some((other) => same(other, answer))) distinct.push(answer);
  return { count: distinct.length, how: 'told apart by their bytes' };
}

/** `1 execution`, `2 executions`. */
export const executionCount = (count: number): string => `${count} execution${count === 1 ? '' : 's'}`;

/** The reason a check that needs executions cannot judge them. */
export const unseen = (ctx: Context): string => `cannot see executions (${ctx.visible.how})`;

/**
 * A body different from `body` for the same request otherwise: a JSON object gets one more member, an array one
 * more element (so a layer comparing canonical JSON sees the difference too); any other body gets bytes appended.
 */
export function otherBody(body: Buffer): Buffer {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    if (Array.isArray(value)) return Buffer.from(JSON.stringify([...(value as unknown[]), 'idempotency-check']));
    if (typeof value === 'object' && value !== null) return Buffer.from(JSON.stringify({ ...value, idempotency_check: randomUUID() }));
  } catch {
    // not JSON
  }
  return Buffer.concat([body, Buffer.from(`&idempotency_check=${randomUUID()}`)]);
}
