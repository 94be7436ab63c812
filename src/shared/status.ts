/**
 * @module
 * Which statuses are results of a write: once such a status line has arrived, the write ran, whatever happens to its
 * body afterwards. Results are stored and hold their key; every other status frees it.
 */

/**
 * Statuses below 500 that are not results of the write: never stored, they free the key like 5xx.
 * - 408, 425, 429 say "try again later": storing one would replay a short overload for the whole TTL and push
 *   clients onto new keys.
 * - 401, 403 refused the credential: no write ran under it, and storing them would let anyone with random
 *   credentials fill storage for the TTL.
 */
const NOT_RESULTS: ReadonlySet<number> = new Set([408, 425, 429, 401, 403]);

/**
 * Whether a status is a result of the request: below 500 and not one of 401, 403, 408, 425, 429.
 *
 * @example
 * ```ts
 * isResultStatus(201); // true
 * isResultStatus(429); // false: try again later
 * ```
 */
export const isResultStatus = (status: number): boolean => status < 500 && !NOT_RESULTS.has(status);
