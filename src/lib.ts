/**
 * @module
 * The package entry (`import { idempotency, IdempotencyRecord } from 'idempotency-proxy'`): the Hono
 * middleware, the Durable Object class it needs (export it from your Worker and bind it as
 * `IDEMPOTENCY` with a `new_sqlite_classes` migration), and the types of the object's RPC surface.
 */
export { idempotency } from './middleware';
export type { IdempotencyEnv, IdempotencyMode, IdempotencyOptions, IdempotencyProblem, IdempotencyVariables } from './middleware';
export { IdempotencyRecord } from './core/record';
export type { AttemptLimits, AttemptSpec, BeginResult, OriginRequest } from './core/record';
export type { Outcome, Settled, StoredResponse } from './core/outcome';
export type { Reporter, RequestLog, RequestOutcome } from './core/log';
export { PROBLEMS, type ProblemCode } from './core/problem';
export { parseIdempotencyKey, MAX_KEY_LENGTH } from './core/key';
