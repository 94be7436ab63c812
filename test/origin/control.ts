/**
 * What a test does with the origin's answers and holds, in workerd and in Node alike (pure `fetch` and `Response`).
 */

/**
 * `answer` read to its end, as a new Response with the same status and headers. Its end comes only once its attempt is
 * over (the answer stored, or the key freed), so a request sent after `whole()` finds that outcome: a request sent
 * after the status alone may still join the attempt (and get its answer, marked as a replay, even a 5xx).
 */
export async function whole(answer: Response | Promise<Response>): Promise<Response> {
  const res = await answer;
  const body = await res.arrayBuffer();
  return new Response(res.body === null ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
}

/** Lets every request the origin at `originUrl` holds on `id` (`/hold/<id>/...`, `?hold=<id>`, `?pause=<id>`) go on. */
export async function releaseAt(originUrl: string, id: string): Promise<void> {
  const res = await fetch(`${originUrl}/release/${id}`, { method: 'POST' });
  if (!res.ok) throw new Error(`the origin did not release ${id}: ${res.status}`);
}
