/**
 * @module
 * The proxy Worker's entry point (`main` in wrangler.toml): the proxy, the Durable Object class it binds
 * as `IDEMPOTENCY`, and the `IdempotencyService` entrypoint for other Workers.
 */
import { proxyWorker } from './app';

export { IdempotencyRecord } from '../record/record';
export { IdempotencyService } from './service';

export default proxyWorker;
