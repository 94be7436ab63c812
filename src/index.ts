/**
 * @module
 * The package entry (`import { idempotency, IdempotencyRecord } from 'idempotency-proxy'`): the Hono
 * middleware, the Durable Object class it needs (export it from your Worker and bind it as
 * `IDEMPOTENCY` with a `new_sqlite_classes` migration), and the types of the object's RPC surface.
 */
export { idempotency, MAX_ATTEMPT_MS, MAX_BODY_BYTES_LIMIT, MAX_TTL_SECONDS, OptionsError, resolveOptions } from './middleware';
export type {
  IdempotencyEnv,
  IdempotencyMode,
  IdempotencyOptions,
  IdempotencyProblem,
  IdempotencyVariables,
  OptionName,
  ResolvedOptions,
} from './middleware';
export type { Reporter, RequestLog, RequestOutcome } from './middleware/log';
export type { RetryOptions } from './middleware/retry';
export { IdempotencyRecord } from './record/record';
export type { AttemptLimits, AttemptSpec, BeginResult, OriginRequest, PurgeResult, RecordInfo } from './record/api';
export type { HeaderList } from './shared/headers';
export type { Outcome, Settled, StoredResponse } from './shared/outcome';
export { PROBLEMS, type ProblemCode } from './shared/problem';
export { parseIdempotencyKey, MAX_KEY_LENGTH, type KeyError, type KeyResult } from './shared/key';
