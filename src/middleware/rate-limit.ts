/**
 * @module
 * The rate limits in front of the records: per credential (`rateLimit`) and per client IP address
 * (`ipRateLimit`, from `CF-Connecting-IP`), both Workers rate-limiting bindings. Checked before any object is
 * created, for keyed writes and for the key API's lookups alike. Shared by the middleware and the proxy's key API.
 */
import { sha256Hex } from '../shared/hash';
import { reject } from '../shared/problem';

/** A limit: the binding's name and the `Retry-After` sent past it. */
export interface ResolvedRateLimit {
  readonly binding: string;
  readonly retryAfterSeconds: number;
}

/** What the limits need to know of a request. */
export interface RateLimited {
  /** The scope value (never stored or logged: only a hash of its normalised form is the limiter's key). */
  readonly scope: string | undefined;
  /** `CF-Connecting-IP`, set by Cloudflare's edge for every request from the internet. */
  readonly ip: string | undefined;
}

/**
 * The limiter's text for a scope: white space trimmed and collapsed, the authentication scheme (the first word,
 * when there are several) in lower case. `Bearer T`, `bearer T` and `Bearer  T` are one credential to an origin
 * (RFC 9110 §11.1: the scheme is case-insensitive), so they share one bucket. Record names keep the exact value:
 * changing them would orphan stored keys.
 */
export function limiterScope(scope: string): string {
  const collapsed = scope.trim().replace(/[\t ]+/g, ' ');
  const space = collapsed.indexOf(' ');
  return space === -1 ? collapsed : collapsed.slice(0, space).toLowerCase() + collapsed.slice(space);
}

async function check(env: Record<string, unknown>, limit: ResolvedRateLimit, key: string, whose: string): Promise<void> {
  const limiter = env[limit.binding] as RateLimit | undefined;
  if (limiter === undefined) return reject('configuration_invalid', `The rate limiting binding ${limit.binding} is missing.`);
  const { success } = await limiter.limit({ key });
  if (!success) {
    reject('rate_limited', `Too many keyed requests ${whose}. Retry after ${limit.retryAfterSeconds} seconds.`, {
      retryAfterSeconds: limit.retryAfterSeconds,
    });
  }
}

/**
 * Refuses a request past either limit with `429 rate_limited` (the IP address's first: it also bounds requests
 * with ever new credentials). A limit without its part of the request (no credential, no `CF-Connecting-IP`, as
 * over a service binding) is not checked.
 *
 * @param scopeHash - the hex SHA-256 of `request.scope`, when the caller has it (saves a hash when the scope is
 * already normal)
 * @throws a `rate_limited` rejection, or `configuration_invalid` when a binding is missing
 */
export async function limitRates(
  env: Record<string, unknown>,
  limits: { readonly rateLimit: ResolvedRateLimit | undefined; readonly ipRateLimit: ResolvedRateLimit | undefined },
  request: RateLimited,
  scopeHash?: string,
): Promise<void> {
  const { rateLimit, ipRateLimit } = limits;
  if (ipRateLimit !== undefined && request.ip !== undefined) await check(env, ipRateLimit, `ip:${request.ip.trim()}`, 'from this address');
  if (rateLimit !== undefined && request.scope !== undefined) {
    const normal = limiterScope(request.scope);
    const key = normal === request.scope && scopeHash !== undefined ? scopeHash : await sha256Hex(normal);
    await check(env, rateLimit, key, 'with this credential');
  }
}
