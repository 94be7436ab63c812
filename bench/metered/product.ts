/**
 * @module
 * THE ONE PLACE where the metered Worker imports the product. When the package entry moves (`src/lib.ts`
 * -> `src/index.ts`) or the proxy app does (`src/app.ts`), change these two lines and nothing else.
 */
export { IdempotencyRecord } from '../../src/lib';
export { createApp } from '../../src/app';
