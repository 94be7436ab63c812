/**
 * @module
 * THE ONE PLACE where the metered Worker imports the product: its Durable Object class (from the package
 * entry) and the proxy Worker's fetch handler.
 */
export { IdempotencyRecord } from '../../src/index';
export { proxyWorker } from '../../src/proxy/app';
