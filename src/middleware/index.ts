/**
 * @module
 * The `idempotency()` Hono middleware: its factory, its options and settings, and the key lookups. What the proxy (and
 * any other user) reaches of the middleware, it reaches through here.
 */
export { createIdempotency, idempotency, untouched } from './idempotency';
export type { IdempotencyEnv, IdempotencyVariables } from './idempotency';
export { OptionsError, resolveOptions } from './resolve';
export type { ResolvedOptions } from './resolve';
export { SETTINGS, SettingError, settingOf, variableOf } from './settings';
export type { Read, Setting, Source, VariableName } from './settings';
export { Answers } from './answer';
export { ANONYMOUS, KeyLookups, isScopeHash } from './lookup';
export type { KeyInfo } from './lookup';
export { MAX_ATTEMPT_MS, MAX_BODY_BYTES_LIMIT, MAX_TTL_SECONDS } from '../shared/limits';
export type { IdempotencyMode, IdempotencyOptions, IdempotencyProblem, OptionName } from './options';
