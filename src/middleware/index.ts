/**
 * @module
 * The `idempotency()` Hono middleware and its options.
 */
export { idempotency } from './idempotency';
export type { IdempotencyEnv, IdempotencyVariables } from './idempotency';
export { OptionsError, resolveOptions } from './resolve';
export { MAX_ATTEMPT_MS, MAX_BODY_BYTES_LIMIT, MAX_TTL_SECONDS } from '../shared/limits';
export type { IdempotencyMode, IdempotencyOptions, IdempotencyProblem, OptionName } from './options';
export type { ResolvedOptions } from './resolve';
