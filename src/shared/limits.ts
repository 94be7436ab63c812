/**
 * @module
 * The platform's limits that bound every setting, shared by the options (which refuse values past them) and
 * the object (which refuses RPC arguments past them).
 */

/**
 * The largest body accepted and stored, in bytes. Request bodies travel to the Durable Object as one RPC
 * argument and stored responses come back as one RPC value, and workerd caps a serialized RPC message at
 * 32 MiB; 24 MiB leaves room for headers and framing.
 */
export const MAX_BODY_BYTES_LIMIT = 24 * 1024 * 1024;
/** The longest TTL: 30 days, in seconds. */
export const MAX_TTL_SECONDS = 30 * 86_400;
/** The longest wait and lease: 15 minutes, the longest a Durable Object keeps an outgoing call alive. */
export const MAX_ATTEMPT_MS = 15 * 60_000;
