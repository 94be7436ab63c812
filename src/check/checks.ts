/**
 * @module
 * The checks that need no fault: each sends its own requests with fresh keys and judges only what comes back (and,
 * in origin mode, what the recording origin counted). Stable names: `replay`, `mismatch`, `concurrent`,
 * `read_ignores_key`, `key_too_long`, `scope`.
 */
import type { Options } from './args.ts';
import {
  type Context,
  executionCount,
  executionsOf,
  fail,
  newKey,
  notResult,
  otherBody,
  pass,
  skip,
  unseen,
  type Verdict,
} from './context.ts';
import { type Answer, differs, replayMark, same, show } from './http.ts';

/** One check: its stable name, whether it needs origin mode, and how it runs. */
export interface Check {
  readonly name: string;
  /** Runs only in origin mode (it needs a fault, or an exact count). */
  readonly originOnly: boolean;
  /** The writes and reads it sends at most, retries aside. */
  writes(options: Options): number;
  readonly reads: number;
  run(ctx: Context): Promise<Verdict>;
}

/** The statuses that refuse a request whose key was already used for another one (seed: 409; IETF draft: 422). */
const REUSE_STATUSES = new Set([409, 422]);

async function replay(ctx: Context): Promise<Verdict> {
  const key = newKey();
  const first = await ctx.send({ key });
  const bad = notResult(first);
  if (bad !== null) return fail(`the first request got ${bad}, not a result to replay`);
  const second = await ctx.send({ key });
  ctx.notes.replay = [first, second];
  const executions = await executionsOf(ctx, [first, second]);
  const problems: string[] = [];
  if (!same(first, second)) problems.push(`the retry got ${differs(second, first)}`);
  else if (replayMark(second) === null) problems.push('the retry is not marked as a replay (no Idempotent-Replay: true)');
  if (replayMark(first) !== null) problems.push(`the first answer is marked ${replayMark(first)}`);
  if (executions !== null && executions.count !== 1) problems.push(`${executionCount(executions.count)} (${executions.how})`);
  if (problems.length > 0) return fail(problems.join('; '));
  const evidence = `${show(first)} twice, byte-identical, the retry marked ${replayMark(second)}: true`;
  if (executions === null) return skip(`${unseen(ctx)}; ${evidence}`);
  return pass(`1 execution (${executions.how}); ${evidence}`);
}

async function mismatch(ctx: Context): Promise<Verdict> {
  const key = newKey();
  const first = await ctx.send({ key });
  const bad = notResult(first);
  if (bad !== null) return fail(`the first request got ${bad}, not a result to keep`);
  const other = await ctx.send({ key, body: otherBody(ctx.options.body) });
  const executions = ctx.executions === null ? null : await ctx.executions();
  // The key still holds the first request (a layer that kept its own refusal would replay that).
  const again = await ctx.send({ key });
  if (!REUSE_STATUSES.has(other.status)) {
    const replayed = same(first, other) ? ': the first answer, replayed for another body' : '';
    return fail(`the same key with another body got ${show(other)}${replayed}, not 409 or 422`);
  }
  ctx.notes.refusals.push({ what: `${other.status} for another body`, answer: other, retryable: false });
  if (executions !== null && executions !== 1)
    return fail(`refused with ${show(other)}, but ${executionCount(executions)} (counted by the test origin)`);
  if (again.status !== first.status || replayMark(again) === null) {
    return fail(`refused with ${show(other)}, but then the first body got ${show(again)}, not the first answer (${first.status}) replayed`);
  }
  const counted = executions === null ? 'nothing executed for it (judged by the refusal)' : '1 execution (counted by the test origin)';
  return pass(`another body refused with ${show(other)}; ${counted}; the first body still replays`);
}

async function concurrent(ctx: Context): Promise<Verdict> {
  const key = newKey();
  const n = ctx.options.concurrency;
  // Slow enough at the origin that every duplicate arrives while the first is running.
  // The requests are identical: a 409 to one of them can only say that the first is still in progress (the IETF
  // draft's answer), so it is retried with the key even when it names no delay.
  const answers = await Promise.all(Array.from({ length: n }, () => ctx.send({ key, behaviour: 'slow:500', inProgress: true })));
  const refused = answers.filter((answer) => answer.retried.length > 0);
  for (const answer of refused.flatMap((a) => a.retried)) {
    ctx.notes.refusals.push({ what: `${answer.status} to a duplicate in progress`, answer, retryable: true });
  }
  const broken = answers.filter((answer) => notResult(answer) !== null);
  if (broken.length > 0) return fail(`${broken.length} of ${n} identical requests got no result: ${show(broken[0]!)}`);
  const groups: { answer: Answer; count: number }[] = [];
  for (const answer of answers) {
    const group = groups.find((g) => same(g.answer, answer));
    if (group === undefined) groups.push({ answer, count: 1 });
    else group.count++;
  }
  const executions = await executionsOf(ctx, answers);
  if (groups.length > 1 || (executions !== null && executions.count !== 1)) {
    const counted = executions === null ? '' : `${executionCount(executions.count)} (${executions.how}); `;
    const kinds = groups.slice(0, 3).map((g) => `${g.count} x ${show(g.answer)}`);
    if (groups.length > 3) kinds.push('...');
    return fail(`${counted}${groups.length} different answers to ${n} identical requests: ${kinds.join(', ')}`);
  }
  const marked = answers.filter((answer) => replayMark(answer) !== null).length;
  const retried =
    refused.length === 0 ? '' : `; ${refused.length} first refused (${show(refused[0]!.retried[0]!)}) and retried with the key`;
  const evidence = `${n} identical answers (${show(answers[0]!)}), ${marked} marked as replays${retried}`;
  // A layer that marks its replays (the replay check saw it) says by its marks how often it ran the request.
  const marks = ctx.notes.replay !== undefined && replayMark(ctx.notes.replay[1]) !== null;
  if (marks && n - marked > 1) return fail(`${n - marked} of ${n} identical requests ran, by the layer's own replay marks; ${evidence}`);
  if (executions === null) return skip(`${unseen(ctx)}; ${evidence}`);
  return pass(`1 execution (${executions.how}); ${evidence}`);
}

async function readIgnoresKey(ctx: Context): Promise<Verdict> {
  const key = newKey();
  const write = await ctx.send({ key });
  const bad = notResult(write);
  if (bad !== null) return fail(`the write got ${bad}, not a result to key`);
  const plain = await ctx.send({ method: 'GET' });
  const keyed = [await ctx.send({ method: 'GET', key }), await ctx.send({ method: 'GET', key })];
  const executions = ctx.executions === null ? null : await ctx.executions('GET');
  for (const read of keyed) {
    if (replayMark(read) !== null) return fail(`a GET with the write's key got an answer marked ${replayMark(read)}: ${show(read)}`);
    if (read.status !== plain.status) return fail(`a GET with the write's key got ${show(read)}, without a key ${show(plain)}`);
  }
  if (executions !== null && executions !== 3) return fail(`3 GETs, ${executionCount(executions)} (counted by the test origin)`);
  const counted = executions === null ? '' : '; each ran (counted by the test origin)';
  return pass(`GET with the key of a stored write: ${show(keyed[0]!)} as without a key, not a replay${counted}`);
}

async function keyTooLong(ctx: Context): Promise<Verdict> {
  const longest = await ctx.send({ key: newKey(128) });
  const tooLong = await ctx.send({ key: newKey(129) });
  const executions = ctx.executions === null ? null : await ctx.executions();
  const refusedLongest = notResult(longest);
  if (refusedLongest !== null) return fail(`a 128-character key (the seed's maximum) got ${refusedLongest}`);
  if (tooLong.status < 400 || tooLong.status >= 500) return fail(`a 129-character key got ${show(tooLong)}: the seed allows at most 128`);
  ctx.notes.refusals.push({ what: `${tooLong.status} for a 129-character key`, answer: tooLong, retryable: false });
  if (executions !== null && executions !== 1)
    return fail(`a 129-character key was refused (${show(tooLong)}) but ran: ${executionCount(executions)}`);
  const counted = executions === null ? '' : ', nothing executed for it (counted by the test origin)';
  return pass(`128 characters accepted (${show(longest)}); 129 refused with ${show(tooLong)}${counted}`);
}

async function scope(ctx: Context): Promise<Verdict> {
  if (ctx.options.second === null) return skip("needs a second credential: --as 'Authorization: Bearer <another test key>'");
  const key = newKey();
  const first = await ctx.send({ key });
  const bad = notResult(first);
  if (bad !== null) return fail(`the first identity's request got ${bad}`);
  const other = await ctx.send({ key, second: true });
  if (other.status === 401 || other.status === 403) return skip(`the second identity (--as) was refused: ${show(other)}`);
  if (replayMark(other) !== null || REUSE_STATUSES.has(other.status)) {
    const replayed = replayMark(other) === null ? '' : ', a replay';
    return fail(`the second identity's first request with the key got ${show(other)}${replayed}: keys are not per credential`);
  }
  const executions = await executionsOf(ctx, [first, other]);
  if (executions !== null && executions.count !== 2) {
    const took = executions.count === 1 && same(first, other) ? ": the second got the first identity's answer" : '';
    return fail(`the same key under two identities: ${executionCount(executions.count)} (${executions.how}), not one each${took}`);
  }
  // Each identity's retry replays its own answer, never the other's (where the two differ).
  const apart = !same(first, other);
  for (const [who, own, foreign, second] of [
    ['first', first, other, false],
    ['second', other, first, true],
  ] as const) {
    const again = await ctx.send({ key, second });
    if (again.status !== own.status || replayMark(again) === null || (apart && same(again, foreign))) {
      return fail(
        `the ${who} identity's retry got ${show(again)}${apart && same(again, foreign) ? ", the other identity's answer" : ''}, not its own replayed`,
      );
    }
  }
  const evidence = 'each identity ran the key once and replays its own answer';
  if (executions === null) return skip(`${unseen(ctx)}; ${evidence}`);
  return pass(`${evidence} (2 executions, ${executions.how})`);
}

/** The checks that need no fault, in the order they run. */
export const BASIC_CHECKS: readonly Check[] = [
  { name: 'replay', originOnly: false, writes: () => 2, reads: 0, run: replay },
  { name: 'mismatch', originOnly: false, writes: () => 3, reads: 0, run: mismatch },
  { name: 'concurrent', originOnly: false, writes: (options) => options.concurrency, reads: 0, run: concurrent },
  { name: 'read_ignores_key', originOnly: false, writes: () => 1, reads: 3, run: readIgnoresKey },
  { name: 'key_too_long', originOnly: false, writes: () => 2, reads: 0, run: keyTooLong },
  { name: 'scope', originOnly: false, writes: (options) => (options.second === null ? 0 : 4), reads: 0, run: scope },
];
