/**
 * @module
 * THE ONE PLACE where the metered Worker imports the product: its Durable Object class and middleware (from the
 * package entry) and the proxy Worker's fetch handler.
 */
export { IdempotencyRecord, idempotency } from '../../src/index';
export type { IdempotencyEnv } from '../../src/index';
export { proxyWorker } from '../../src/proxy/app';
