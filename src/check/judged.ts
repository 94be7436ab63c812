/**
 * @module
 * The checks judged from what earlier checks saw, sending nothing of their own: `retry_advice` (the refusals'
 * `x-should-retry` / `Stripe-Should-Retry` and `Retry-After`) and `expiry_advertised` (`Idempotency-Expires`).
 * Both are this proxy's contract, not the IETF draft's or the seed's: an API that sends neither header is skipped
 * with that reason, one that sends them is held to what they promise.
 */
import { httpDate, keyExpiresAt } from '../client/advice.ts';
import type { Check } from './checks.ts';
import { type Context, fail, pass, type Refusal, skip, type Verdict } from './context.ts';
import { show } from './http.ts';

const adviceOf = (refusal: Refusal) => ({
  x: refusal.answer.headers.get('x-should-retry'),
  stripe: refusal.answer.headers.get('stripe-should-retry'),
});

function judgeAdvice(refusal: Refusal): string | null {
  const { x, stripe } = adviceOf(refusal);
  const headers = refusal.answer.headers;
  const what = `${refusal.what} (${show(refusal.answer)})`;
  if (x === null && stripe === null) return `${what}: no advice`;
  if (x !== null && stripe !== null && x.trim() !== stripe.trim()) return `${what}: x-should-retry ${x}, Stripe-Should-Retry ${stripe}`;
  const says = (x ?? stripe)!.trim().toLowerCase();
  if (says !== String(refusal.retryable)) return `${what}: says ${says}, but a retry ${refusal.retryable ? 'may succeed' : 'never will'}`;
  const after = headers.get('retry-after');
  if (refusal.retryable && after === null) return `${what}: retryable without Retry-After`;
  const ms = headers.get('retry-after-ms');
  if (after !== null && /^\d+$/.test(after.trim()) && ms !== null && Number(ms) !== Number(after) * 1000) {
    return `${what}: Retry-After ${after} but retry-after-ms ${ms}`;
  }
  return null;
}

async function retryAdvice(ctx: Context): Promise<Verdict> {
  // One of each kind: the concurrent check may have seen many alike.
  const refusals = ctx.notes.refusals.filter((r, i, all) => all.findIndex((o) => o.what === r.what) === i);
  if (refusals.length === 0) return skip('no refusal to judge: nothing was refused');
  const advised = refusals.filter((r) => adviceOf(r).x !== null || adviceOf(r).stripe !== null);
  if (advised.length === 0) {
    const waits = refusals.filter((r) => r.retryable && r.answer.headers.has('retry-after'));
    const after = waits.length === 0 ? '' : `; ${waits[0]!.what} carried Retry-After: ${waits[0]!.answer.headers.get('retry-after')}`;
    return skip(
      `refusals carry no x-should-retry or Stripe-Should-Retry (this proxy's contract; the IETF draft and the seed promise no retry advice)${after}`,
    );
  }
  const problems = refusals.map(judgeAdvice).filter((problem) => problem !== null);
  if (problems.length > 0) return fail(problems.join('; '));
  const said = refusals.map((r) => `${r.what}: ${adviceOf(r).x ?? adviceOf(r).stripe}`).join(', ');
  return pass(`every refusal says whether to retry (${said})`);
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s % 3600 === 0 ? `${s / 3600} h` : `${s} s`;
}

async function expiryAdvertised(ctx: Context): Promise<Verdict> {
  const replay = ctx.notes.replay;
  if (replay === undefined) return skip('the replay check got no replay to read');
  const [first, second] = replay;
  const expires = [first.headers.get('idempotency-expires'), second.headers.get('idempotency-expires')];
  if (expires[0] === null && expires[1] === null) {
    return skip(
      "no Idempotency-Expires (this proxy's contract; the IETF draft only asks that the expiry be documented, the seed says 24 hours)",
    );
  }
  const problems: string[] = [];
  if (expires[0] === null) problems.push('the first answer carries none, its replay does');
  else if (expires[1] === null) problems.push('the replay carries none, the first answer does');
  else if (expires[0] !== expires[1]) problems.push(`the first answer says ${expires[0]}, its replay ${expires[1]}`);
  const at = keyExpiresAt(second.headers, Date.now());
  if (expires[1] !== null && at === undefined) problems.push(`${JSON.stringify(expires[1])} is not an HTTP date`);
  else if (at !== undefined && at <= Date.now()) problems.push(`${expires[1]} is already past (read against the replay's Date + Age)`);
  const age = second.headers.get('age');
  if (expires[1] !== null && (age === null || !/^\d+$/.test(age.trim()))) {
    problems.push('the replay carries no Age: its expiry cannot be read against its stored Date');
  }
  const freed = ctx.notes.freed?.headers.get('idempotency-expires');
  if (freed !== undefined && freed !== null) problems.push(`the origin's 503, which freed its key, carries Idempotency-Expires ${freed}`);
  if (problems.length > 0) return fail(problems.join('; '));
  const ttl = httpDate(expires[0] ?? null) - httpDate(first.headers.get('date'));
  const after = Number.isNaN(ttl) ? '' : `, ${duration(ttl)} after the first answer's Date`;
  return pass(`Idempotency-Expires ${expires[0]} on the answer and its replay${after}; the replay's Age ${age}`);
}

/** The checks judged from the others' answers, run last. */
export const JUDGED_CHECKS: readonly Check[] = [
  { name: 'retry_advice', originOnly: false, writes: () => 0, reads: 0, run: retryAdvice },
  { name: 'expiry_advertised', originOnly: false, writes: () => 0, reads: 0, run: expiryAdvertised },
];
