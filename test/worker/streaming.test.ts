/**
 * Streaming answers (issue #19), through the proxy inside workerd against the real origin: the first answer streams as
 * the origin sends it while the object captures it, `ORIGIN_TIMEOUT_MS` bounds only the wait for its head, duplicates
 * join the live answer byte-exact, a client that goes away does not stop the capture, and an answer over the limit
 * still reaches the first client whole.
 *
 * "Before its end" is shown by state, not by a clock: the origin pauses its stream (`?pause=<id>`) until the test has
 * seen what it needs while the record is still in flight, so nothing here depends on how fast the machine is.
 */
import { describe, expect, it } from 'vitest';
import { indexes, range, readEvents, rest } from '../origin/events';
import { answering, expectProblem, newHold, newKey, originCalls, release, send, sendWith, storedRecord, until } from './helpers';

describe('streaming: the first answer', () => {
  it('reaches the client from its first event while the origin is still sending, and replays byte-exact', async () => {
    const key = newKey();
    const hold = newHold();
    // The origin sends one event, then waits for the release.
    const path = `/sse/20/50/first-byte?pause=${hold}`;
    const first = await send(path, { key, body: 'x' });
    expect([first.status, first.headers.get('content-type'), first.headers.get('idempotent-replay')]).toEqual([
      200,
      'text/event-stream',
      null,
    ]);
    const { reader, text } = await readEvents(first, 1);
    // The origin has not finished: nothing is stored yet, the attempt is still running.
    expect((await storedRecord(key))?.state).toBe('in_flight');
    await release(hold);
    const whole = text + (await rest(reader));
    expect(indexes(whole)).toEqual(range(20));
    // The end reached the client once the answer was stored.
    expect((await storedRecord(key))?.state).toBe('complete');
    const replay = await send(path, { key, body: 'x' });
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await replay.text()).toBe(whole);
    expect(await originCalls(key)).toBe(1);
  });

  it('arrives whole although it lasts longer than ORIGIN_TIMEOUT_MS: the timeout bounds the wait for its head', async () => {
    const key = newKey();
    // 3 s of events under ORIGIN_TIMEOUT_MS = 1.5 s.
    const res = await send('/sse/30/100/longer-than-timeout', { key, body: 'x' });
    expect(res.status).toBe(200);
    expect(indexes(await res.text())).toEqual(range(30));
    expect(await storedRecord(key)).toMatchObject({ state: 'complete', status: 200 });
    expect(await originCalls(key)).toBe(1);
  });

  it('is cut where the lease ends when it lasts longer than ORIGIN_LEASE_MS: stored as lost, 502 origin_response_lost, never run again', async () => {
    const vars = { ORIGIN_TIMEOUT_MS: '500', ORIGIN_LEASE_MS: '1000' };
    const key = newKey();
    const hold = newHold();
    // One event, then the origin goes quiet until after the lease (released at the end).
    const path = `/sse/30/50/longer-than-lease?pause=${hold}`;
    const first = await sendWith(vars, path, { key, body: 'x' });
    expect(first.status).toBe(200);
    const { reader } = await readEvents(first, 1);
    await expect(rest(reader)).rejects.toThrow();
    await until(async () => (await storedRecord(key))?.state === 'lost', 'the cut answer to be stored as lost');
    await expectProblem(await sendWith(vars, path, { key, body: 'x' }), 502, 'origin_response_lost');
    expect(await originCalls(key)).toBe(1);
    await release(hold);
  });
});

describe('streaming: duplicates join the live answer', () => {
  it('gives a duplicate the events sent so far, then the rest, marked as a replay, byte-exact, with one origin call', async () => {
    const key = newKey();
    const hold = newHold();
    // Four events, then the origin waits for the release: the duplicate joins while it is still sending.
    const path = `/sse/20/50/join?pause=${hold}&at=4`;
    const first = await send(path, { key, body: 'x' });
    const head = await readEvents(first, 3);
    const joined = await send(path, { key, body: 'x' });
    expect([joined.status, joined.headers.get('idempotent-replay')]).toEqual([200, 'true']);
    const joinedHead = await readEvents(joined, 4);
    // Live: the duplicate has the first events while the origin is still sending.
    expect((await storedRecord(key))?.state).toBe('in_flight');
    await release(hold);
    const [mine, tail] = await Promise.all([head.text + (await rest(head.reader)), rest(joinedHead.reader)]);
    const theirs = joinedHead.text + tail;
    expect(indexes(theirs)).toEqual(range(20));
    expect(theirs).toBe(mine);
    expect(await originCalls(key)).toBe(1);
  });

  it('streams a burst of duplicates the same bytes from one origin call', async () => {
    const key = newKey();
    const path = '/sse/10/100/join-burst';
    const answers = await Promise.all(Array.from({ length: 10 }, () => send(path, { key, body: 'x' })));
    const bodies = await Promise.all(answers.map((res) => res.text()));
    expect(new Set(bodies).size).toBe(1);
    expect(indexes(bodies[0]!)).toEqual(range(10));
    expect(answers.filter((res) => res.headers.get('idempotent-replay') === null)).toHaveLength(1);
    expect(await originCalls(key)).toBe(1);
  });
});

describe('streaming: the first client may go away', () => {
  it('reads the answer to its end and stores it when the first client disconnects mid-stream; the retry gets it whole', async () => {
    const key = newKey();
    const hold = newHold();
    // Two events, then the origin waits for the release: the client goes away mid-stream.
    const path = `/sse/15/50/gone?pause=${hold}&at=2`;
    const first = await send(path, { key, body: 'x' });
    const { reader } = await readEvents(first, 2);
    // The client goes away: its end of the stream is cancelled, through the Worker to the object.
    await reader.cancel();
    expect((await storedRecord(key))?.state).toBe('in_flight');
    await release(hold);
    await until(async () => (await storedRecord(key))?.state === 'complete', 'the abandoned answer to be stored');
    const retry = await send(path, { key, body: 'x' });
    expect(retry.headers.get('idempotent-replay')).toBe('true');
    expect(indexes(await retry.text())).toEqual(range(15));
    expect(await originCalls(key)).toBe(1);
  });
});

describe('streaming: an answer over MAX_BODY_BYTES', () => {
  const SMALL = { MAX_BODY_BYTES: '1000' };

  it('reaches the first client whole; a duplicate after the capture stopped and every retry get 502 response_too_large', async () => {
    const key = newKey();
    // 20 events of about 250 bytes: the capture stops at 1000 bytes, the stream goes on.
    const path = '/sse/20/100/over-limit?pad=200';
    const first = await sendWith(SMALL, path, { key, body: 'x' });
    const head = await readEvents(first, 6);
    await expectProblem(await sendWith(SMALL, path, { key, body: 'x' }), 502, 'response_too_large');
    expect(indexes(head.text + (await rest(head.reader)))).toEqual(range(20));
    await until(async () => (await storedRecord(key))?.state === 'too_large', 'the key to be held as too large');
    await expectProblem(await sendWith(SMALL, path, { key, body: 'x' }), 502, 'response_too_large');
    expect(await originCalls(key)).toBe(1);
  });

  it('refuses a duplicate at once when the declared length is already over the limit, while the first client still streams', async () => {
    const key = newKey();
    const hold = newHold();
    // 14 bytes declared under a 10-byte limit; the last 7 come only once released, after the duplicate's answer.
    const vars = { MAX_BODY_BYTES: '10' };
    const path = `/drip/0/declared-over?pause=${hold}`;
    const first = await sendWith(vars, path, { key, body: 'x' });
    expect(first.status).toBe(200);
    await expectProblem(await sendWith(vars, path, { key, body: 'x' }), 502, 'response_too_large');
    await release(hold);
    expect(await first.text()).toBe('partial-rest!!');
    expect(await originCalls(key)).toBe(1);
  });
});

describe('streaming: handler mode', () => {
  it("streams the handler's answer while it is captured; a duplicate waits for its end and gets it as a replay", async () => {
    const encoder = new TextEncoder();
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const app = answering(
      () =>
        new Response(
          new ReadableStream({
            async start(controller) {
              controller.enqueue(encoder.encode('data: first\n\n'));
              // The rest only once the test has seen the first event: it cannot have been buffered whole.
              await finished;
              controller.enqueue(encoder.encode('data: last\n\n'));
              controller.close();
            },
          }),
          { headers: { 'content-type': 'text/event-stream' } },
        ),
    );
    const key = newKey();
    const first = await app.request(key);
    expect([first.status, first.headers.get('idempotent-replay')]).toEqual([200, null]);
    const { reader, text } = await readEvents(first, 1);
    expect(text).toBe('data: first\n\n');
    const duplicate = app.request(key);
    finish();
    expect(text + (await rest(reader))).toBe('data: first\n\ndata: last\n\n');
    const replay = await duplicate;
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(await replay.text()).toBe('data: first\n\ndata: last\n\n');
    expect(app.runs()).toBe(1);
  });
});
