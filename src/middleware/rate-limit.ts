/**
 * @module
 * The rate limits in front of the records: per credential (`rateLimit`) and per client IP address
 * (`ipRateLimit`, from `CF-Connecting-IP`: IPv4 by address, IPv6 by /64), both Workers rate-limiting bindings. Checked before any object is
 * created, for keyed writes and for the key API's lookups alike. Shared by the middleware and the proxy's key API.
 */
import { sha256Hex } from '../shared/bytes';
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
function limiterScope(scope: string): string {
  const collapsed = scope.trim().replace(/[\t ]+/g, ' ');
  const space = collapsed.indexOf(' ');
  return space === -1 ? collapsed : collapsed.slice(0, space).toLowerCase() + collapsed.slice(space);
}

/** The four octets of a dotted-quad IPv4 address, or `undefined`. */
function ipv4(text: string): number[] | undefined {
  const octets = text.split('.');
  if (octets.length !== 4 || !octets.every((octet) => /^\d{1,3}$/.test(octet) && Number(octet) <= 255)) return undefined;
  return octets.map(Number);
}

/** The eight 16-bit groups of an IPv6 address (`::`, an IPv4 tail, brackets and a zone id allowed), or `undefined`. */
function ipv6(raw: string): number[] | undefined {
  let text = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  const tail = text.slice(text.lastIndexOf(':') + 1);
  if (tail.includes('.')) {
    const octets = ipv4(tail);
    if (octets === undefined) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    text = `${text.slice(0, text.length - tail.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (half: string | undefined): string[] => (half === undefined || half === '' ? [] : half.split(':'));
  const head = groups(halves[0]);
  const rest = groups(halves[1]);
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  return all.every((group) => /^[0-9a-f]{1,4}$/.test(group)) ? all.map((group) => Number.parseInt(group, 16)) : undefined;
}

/**
 * The limiter's key for a client address (`CF-Connecting-IP`): an IPv4 address by itself; an IPv6 address by its /64,
 * which one subscriber (a home, a VM) usually holds whole, so that rotating through it buys no more requests; an
 * IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as its IPv4 address. One canonical key however the address is written
 * (compressed, mixed case, a zone id, brackets); anything else is keyed as sent.
 */
export function addressBucket(raw: string): string {
  const text = raw.trim().toLowerCase();
  const v4 = ipv4(text);
  if (v4 !== undefined) return `ip:${v4.join('.')}`;
  const v6 = ipv6(text);
  if (v6 === undefined) return `ip:${text}`;
  const [a, b, c, d, e, f, g = 0, h = 0] = v6;
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff) return `ip:${g >> 8}.${g & 0xff}.${h >> 8}.${h & 0xff}`;
  return `ip6:${v6
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
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
  if (ipRateLimit !== undefined && request.ip !== undefined) await check(env, ipRateLimit, addressBucket(request.ip), 'from this address');
  if (rateLimit !== undefined && request.scope !== undefined) {
    const normal = limiterScope(request.scope);
    const key = normal === request.scope && scopeHash !== undefined ? scopeHash : await sha256Hex(normal);
    await check(env, rateLimit, key, 'with this credential');
  }
}
