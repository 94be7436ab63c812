/**
 * @module
 * Worker entry point: the proxy app, the Durable Object class it binds as `IDEMPOTENCY`, and the
 * `IdempotencyService` entrypoint for other Workers.
 */
import { createApp } from './app';

export { IdempotencyRecord } from './core/record';
export { IdempotencyService } from './service';

export default createApp() satisfies ExportedHandler<Env>;
