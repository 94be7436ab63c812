/**
 * @module
 * The one timer race: a promise bounded by a wait, its timer always cleared (a pending timer keeps a Durable
 * Object from hibernating, and billed).
 */

/**
 * `promise`'s value, or `undefined` if it has not settled within `ms`. The promise itself goes on either way.
 *
 * @param promise - never resolving to `undefined` itself, or the two cannot be told apart
 * @param ms - the longest wait
 */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const expired = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
