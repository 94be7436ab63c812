/**
 * @module
 * The `idempotency()` Hono middleware and its options.
 */
export { idempotency } from './idempotency';
export type { IdempotencyEnv, IdempotencyVariables } from './idempotency';
export { MAX_BODY_BYTES_LIMIT, OptionsError, resolveOptions } from './options';
export type { IdempotencyMode, IdempotencyOptions, IdempotencyProblem, OptionName, ResolvedOptions } from './options';
