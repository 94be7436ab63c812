/**
 * @module
 * The checks of origin mode: the recording origin answers with a fault on request (`x-origin-behaviour`), and counts
 * exactly how often the layer in front ran the write. Stable names: `5xx_not_stored`, `4xx_stored`,
 * `broken_not_rerun`, `stream_replay`.
 */
import type { Check } from './checks.ts';
import { type Context, executionCount, fail, newKey, notResult, pass, skip, type Verdict } from './context.ts';
import { type Answer, asksForRetry, replayMark, same, show } from './http.ts';
import { BEHAVIOUR_HEADER } from './origin.ts';

const COUNTED = 'counted by the test origin';

/** The executions of this check (origin mode only: the runner never runs these checks without an origin). */
const executions = (ctx: Context): Promise<number> => ctx.executions!();

/** The first answer did not come from the fault the check asked for: the layer does not forward the header. */
const notForwarded = (answer: Answer, wanted: string): Verdict =>
  skip(`the first answer was ${show(answer)}, not the origin's ${wanted}: does the layer forward the ${BEHAVIOUR_HEADER} header?`);

async function serverErrorNotStored(ctx: Context): Promise<Verdict> {
  const key = newKey();
  const failed = await ctx.send({ key, behaviour: 'status:503', retry: false });
  if (failed.status < 500) return notForwarded(failed, '503');
  ctx.notes.freed = failed;
  const retry = await ctx.send({ key, retry: false });
  const count = await executions(ctx);
  if (count !== 2) {
    const replayed = replayMark(retry) === null ? '' : ', a replay';
    return fail(`after the origin's 503 the retry got ${show(retry)}${replayed}: ${executionCount(count)} (${COUNTED}), the 5xx was kept`);
  }
  if (notResult(retry) !== null || replayMark(retry) !== null) return fail(`the retry ran again but got ${show(retry)}`);
  return pass(`${show(failed)} passed on and not kept: the retry ran again (2 executions, ${COUNTED}) and got ${show(retry)}`);
}

async function clientErrorStored(ctx: Context): Promise<Verdict> {
  const key = newKey();
  const refused = await ctx.send({ key, behaviour: 'status:400', retry: false });
  if (refused.status !== 400) return notForwarded(refused, '400');
  // Without the behaviour header the origin would answer 200: a second execution shows.
  const retry = await ctx.send({ key, retry: false });
  const count = await executions(ctx);
  if (count !== 1)
    return fail(`the origin's 400 was not kept: the retry ran again (${executionCount(count)}, ${COUNTED}) and got ${show(retry)}`);
  if (!same(refused, retry) || replayMark(retry) === null) return fail(`the retry got ${show(retry)}, not the 400 replayed`);
  return pass(`the origin's ${show(refused)} kept: the retry got it replayed, marked ${replayMark(retry)}: true (1 execution, ${COUNTED})`);
}

async function brokenNotRerun(ctx: Context): Promise<Verdict> {
  const key = newKey();
  // The origin sends its 200 status line and half its body, then resets the connection: the write ran.
  const broken = await ctx.send({ key, behaviour: 'reset-mid-body', retry: false });
  const retry = await ctx.send({ key, retry: false });
  const count = await executions(ctx);
  if (count === 0) return skip(`nothing reached the test origin: ${show(broken)}`);
  if (count > 1) {
    return fail(
      `the origin answered 200 and broke off mid-body (the write ran); the retry ran it again (${executionCount(count)}, ${COUNTED}) and got ${show(retry)}`,
    );
  }
  // A retry told to come back later (409 in progress) when nothing runs any more is held, not answered.
  const held = asksForRetry(retry, true) ? ', asking to retry later though nothing runs any more,' : '';
  return pass(
    `the answer broke off (the client got ${show(broken)}); the retry got ${show(retry)}${held} and did not run again (1 execution, ${COUNTED})`,
  );
}

async function streamReplay(ctx: Context): Promise<Verdict> {
  const key = newKey();
  const behaviour = 'sse:5:50';
  const first = await ctx.send({ key, behaviour, retry: false });
  const type = first.headers.get('content-type') ?? '';
  if (!type.startsWith('text/event-stream')) return notForwarded(first, 'text/event-stream');
  const bad = notResult(first);
  if (bad !== null) return fail(`the stream itself got ${bad}`);
  const again = await ctx.send({ key, behaviour, retry: false });
  const count = await executions(ctx);
  if (count !== 1) return fail(`the retry ran the stream again (${executionCount(count)}, ${COUNTED}): ${show(again)}`);
  if (!same(first, again)) return fail(`the replay got ${show(again)}, the stream ${show(first)}: not byte-exact`);
  if (replayMark(again) === null) return fail('the replay is byte-exact but not marked as one');
  if (again.headers.get('content-type') !== type) return fail(`the replay is ${again.headers.get('content-type')}, the stream ${type}`);
  return pass(
    `5 server-sent events (${first.body.length} B) replayed byte-exact as ${type}, marked ${replayMark(again)}: true (1 execution, ${COUNTED})`,
  );
}

/** The checks that run only in origin mode, in the order they run. */
export const FAULT_CHECKS: readonly Check[] = [
  { name: '5xx_not_stored', originOnly: true, writes: () => 2, reads: 0, run: serverErrorNotStored },
  { name: '4xx_stored', originOnly: true, writes: () => 2, reads: 0, run: clientErrorStored },
  { name: 'broken_not_rerun', originOnly: true, writes: () => 2, reads: 0, run: brokenNotRerun },
  { name: 'stream_replay', originOnly: true, writes: () => 2, reads: 0, run: streamReplay },
];
