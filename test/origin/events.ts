/**
 * Reading the origin's `/sse/<n>/<ms>/...` answers (server-sent events `data: {"i":k,...}`), for the workerd and the
 * end-to-end tests alike. Pure TypeScript: it runs in both.
 */
const decoder = new TextDecoder();

const count = (text: string): number => text.split('\n\n').length - 1;

/** Reads `res`'s body until it holds `events` events; returns the reader (still open) and the text so far. */
export async function readEvents(
  res: Response,
  events: number,
): Promise<{ reader: ReadableStreamDefaultReader<Uint8Array>; text: string }> {
  const reader = res.body!.getReader();
  let text = '';
  while (count(text) < events) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`the stream ended after ${count(text)} events, before ${events}`);
    text += decoder.decode(value, { stream: true });
  }
  return { reader, text };
}

/** The rest of an open reader's stream, as text. */
export async function rest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  let text = '';
  for (let read = await reader.read(); !read.done; read = await reader.read()) text += decoder.decode(read.value, { stream: true });
  return text;
}

/** The `i` of every event in `text`. */
export const indexes = (text: string): number[] =>
  text
    .split('\n\n')
    .filter((event) => event.startsWith('data: '))
    .map((event) => (JSON.parse(event.slice(6)) as { i: number }).i);

/** `[0, 1, …, n - 1]`: the indexes of a whole stream of `n` events. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
