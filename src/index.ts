/**
 * @module
 * The package entry (`import { idempotency, IdempotencyRecord } from 'idempotency-proxy'`): the Hono
 * middleware, the Durable Object class it needs (export it from your Worker and bind it as
 * `IDEMPOTENCY` with a `new_sqlite_classes` migration), the error its options throw, and the types a user
 * writes: the options, the log lines, and what the object's RPC methods take and answer. Nothing else:
 * internals can change without a major version. `test/node/exports.test.ts` holds the list.
 */
export { idempotency, OptionsError } from './middleware';
export type {
  IdempotencyEnv,
  IdempotencyMode,
  IdempotencyOptions,
  IdempotencyProblem,
  IdempotencyVariables,
  OptionName,
} from './middleware';
export type { Reporter, RequestLog, RequestOutcome } from './middleware/log';
export type { RetryOptions } from './record/stub';
export { IdempotencyRecord } from './record/record';
export type {
  AttemptLimits,
  AttemptReport,
  AttemptSpec,
  BeginResult,
  OriginRequest,
  Outcome,
  PurgeResult,
  RecordInfo,
  Settled,
  StoredResponse,
  StreamedResponse,
} from './record/api';
export type { HeaderList } from './shared/headers';
export type { ProblemCode } from './shared/problem';
