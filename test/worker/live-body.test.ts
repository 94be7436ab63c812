/**
 * `LiveBody` (issue #19): one copy of the captured bytes, read from its source at the source's pace whoever reads,
 * and past the limit only as fast as the first reader takes it (back-pressure), with joiners cut off there.
 */
import { describe, expect, it } from 'vitest';
import { LiveBody, Readers } from '../../src/record/live';

/** A source of `chunks` chunks of `size` bytes that counts how many it was asked for. */
function counted(chunks: number, size: number) {
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (pulls === chunks) return controller.close();
        controller.enqueue(new Uint8Array(size).fill(pulls++ & 0xff));
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, pulls: () => pulls };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

describe('LiveBody', () => {
  it('captures the whole source with nobody reading, and a joiner after the end gets every byte', async () => {
    const source = counted(10, 100);
    const body = new LiveBody(source.stream, 1000);
    const captured = await body.ended;
    expect(captured.kind).toBe('whole');
    expect(captured.kind === 'whole' && captured.body.byteLength).toBe(1000);
    expect((await new Response(body.join()).arrayBuffer()).byteLength).toBe(1000);
  });

  it('past the limit reads the source only as the first reader takes it, and cuts joiners off', async () => {
    const source = counted(50, 100);
    const body = new LiveBody(source.stream, 1000);
    const first = body.first().getReader();
    await settle();
    // The limit (10 chunks) plus the one chunk waiting for the first reader: not the whole 50.
    expect(source.pulls()).toBeLessThanOrEqual(12);
    expect(body.capture).toBe('too_large');
    await expect(new Response(body.join()).arrayBuffer()).rejects.toThrow();
    let size = 0;
    for (let read = await first.read(); !read.done; read = await first.read()) size += read.value.byteLength;
    expect(size).toBe(5000);
    expect((await body.ended).kind).toBe('too_large');
  });

  it('past the limit cancels the source once the first reader goes away', async () => {
    const source = counted(50, 100);
    const body = new LiveBody(source.stream, 1000);
    await body.first().cancel();
    expect((await body.ended).kind).toBe('too_large');
    expect(source.pulls()).toBeLessThanOrEqual(12);
  });

  // Issue #29, finding 4.
  it('hands every reader the same captured chunk, never a copy of its own', async () => {
    const source = counted(3, 100);
    const body = new LiveBody(source.stream, 1000);
    await body.ended;
    const [a, b] = [body.join()!.getReader(), body.join()!.getReader()];
    const [first, second] = [(await a.read()).value, (await b.read()).value];
    expect(first).toBeDefined();
    expect(second).toBe(first);
  });

  it('gives no stream to a joiner past the bound on readers, and a place comes back when a reader is done', async () => {
    const body = new LiveBody(counted(3, 100).stream, 1000);
    const readers = new Readers(2);
    const joined = [body.join(undefined, readers), body.join(undefined, readers)];
    expect(joined.every((stream) => stream !== undefined)).toBe(true);
    expect(body.join(undefined, readers)).toBeUndefined();
    expect((await new Response(joined[0]).arrayBuffer()).byteLength).toBe(300);
    expect(readers.open).toBe(1);
    await joined[1]!.cancel();
    expect(readers.open).toBe(0);
    expect(body.join(undefined, readers)).toBeDefined();
  });

  // Issue #29, finding 5.
  it('stop() ends a capture waiting for a first reader that stalls past the limit: the source is cancelled, every reader breaks', async () => {
    const source = counted(50, 100);
    const body = new LiveBody(source.stream, 1000);
    const first = body.first();
    await settle();
    expect(body.capture).toBe('too_large');
    body.stop();
    expect((await body.ended).kind).toBe('broken');
    expect(source.pulls()).toBeLessThanOrEqual(12);
    await expect(new Response(first).arrayBuffer()).rejects.toThrow();
  });
});
