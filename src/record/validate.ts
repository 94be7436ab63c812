/**
 * @module
 * The object checks what it is given over RPC. Its methods are a public API that any Worker holding the
 * namespace binding can call; a faulty caller must get an error, never store a record that fails on every
 * replay or run an attempt outside the platform's limits.
 */
import { HTTP_TOKEN, type HeaderList } from '../shared/headers';
import { MAX_ATTEMPT_MS, MAX_BODY_BYTES_LIMIT, MAX_TTL_SECONDS } from '../shared/limits';
import type { Settled } from './api';
import type { AttemptLimits, AttemptSpec } from './api';

function fail(what: string): never {
  throw new TypeError(`IdempotencyRecord: ${what}`);
}

function whole(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    fail(`${name} must be a whole number from ${min} to ${max}`);
}

function text(name: string, value: unknown, max: number, pattern?: RegExp): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || (pattern !== undefined && !pattern.test(value)))
    fail(`${name} is invalid`);
}

function body(name: string, value: unknown, nullable: boolean): void {
  if (value === null && nullable) return;
  if (!(value instanceof ArrayBuffer) || value.byteLength > MAX_BODY_BYTES_LIMIT)
    fail(`${name} must be an ArrayBuffer of at most ${MAX_BODY_BYTES_LIMIT} bytes`);
}

/** Header pairs that `Headers` (and so a `Response`) accepts, as `Headers`. */
function headerList(name: string, value: unknown): Headers {
  if (
    !Array.isArray(value) ||
    !value.every((pair) => Array.isArray(pair) && pair.length === 2 && pair.every((part) => typeof part === 'string'))
  ) {
    fail(`${name} must be [name, value] pairs of strings`);
  }
  try {
    return new Headers(value as HeaderList);
  } catch {
    return fail(`${name} holds a header name or value that HTTP does not allow`);
  }
}

/** Checks the limits of an attempt (`begin`, and `execute` through {@link checkSpec}). */
export function checkLimits(limits: AttemptLimits): void {
  if (typeof limits !== 'object' || limits === null) fail('the attempt limits must be an object');
  text('fingerprint', limits.fingerprint, 1024);
  whole('timeoutMs', limits.timeoutMs, 1, MAX_ATTEMPT_MS);
  whole('leaseMs', limits.leaseMs, limits.timeoutMs, MAX_ATTEMPT_MS);
  whole('ttlMs', limits.ttlMs, 1, MAX_TTL_SECONDS * 1000);
  if (limits.method !== undefined) text('method', limits.method, 64, HTTP_TOKEN);
  if (limits.path !== undefined) text('path', limits.path, 16 * 1024, /^\//);
  if (limits.onUnknown !== undefined && limits.onUnknown !== 'retry' && limits.onUnknown !== 'hold' && limits.onUnknown !== 'reconcile')
    fail('onUnknown must be "retry", "hold" or "reconcile"');
}

/**
 * Checks everything `execute` is given: the limits and the origin request.
 *
 * @returns the origin request's headers, built while checking them (the origin call sends these)
 */
export function checkSpec(spec: AttemptSpec): Headers {
  checkLimits(spec);
  const { origin } = spec;
  if (typeof origin !== 'object' || origin === null) fail('origin must be an object');
  text('origin.method', origin.method, 64, HTTP_TOKEN);
  httpUrl('origin.url', origin.url);
  const headers = headerList('origin.headers', origin.headers);
  body('origin.body', origin.body, true);
  whole('origin.maxBodyBytes', origin.maxBodyBytes, 1, MAX_BODY_BYTES_LIMIT);
  return headers;
}

/** Refuses anything but an absolute http or https URL. */
function httpUrl(field: string, value: string): void {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    // reported below
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) fail(`${field} must be an absolute http or https URL`);
}

/** Checks the reconcile request of an `execute` spec; returns its headers, or `undefined` when there is none. */
export function checkReconcile(spec: AttemptSpec): Headers | undefined {
  const { reconcile } = spec;
  if (reconcile === undefined) return undefined;
  if (typeof reconcile !== 'object' || reconcile === null) fail('reconcile must be an object');
  httpUrl('reconcile.url', reconcile.url);
  return headerList('reconcile.headers', reconcile.headers);
}

/** Checks a result reported to `complete`: a response must be one a `Response` can replay. */
export function checkSettled(settled: Settled): void {
  if (typeof settled !== 'object' || settled === null) fail('the result must be an object');
  switch (settled.kind) {
    case 'response':
      whole('response.status', settled.response?.status, 200, 599);
      headerList('response.headers', settled.response.headers);
      body('response.body', settled.response.body, false);
      return;
    case 'response_too_large':
    case 'response_lost':
      whole('status', settled.status, 200, 599);
      return;
    case 'origin_timeout':
    case 'origin_unreachable':
      return;
    default:
      fail('the result kind is unknown');
  }
}

/** Checks an attempt id. */
export function checkAttempt(attempt: string): void {
  text('attempt', attempt, 64);
}
