/**
 * @module
 * The `idempotency()` Hono middleware.
 */
export { idempotency } from './idempotency';
export type { IdempotencyEnv, IdempotencyMode, IdempotencyOptions, IdempotencyProblem, IdempotencyVariables } from './idempotency';
