/**
 * @module
 * Worker entry point: the proxy app and the Durable Object class it binds as `IDEMPOTENCY`.
 */
import { createApp } from './app';

export { IdempotencyRecord } from './core/record';

export default createApp() satisfies ExportedHandler<Env>;
