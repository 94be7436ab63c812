/**
 * @module
 * Bytes: buffers put together from parts (a streamed body, chunk rows, a fingerprint's input), and hex SHA-256, the
 * only form in which credentials and keys ever leave the request: they are never stored, logged or used in a name in
 * plaintext.
 */

/** The parts, one after the other, in one new buffer. */
export function concatBytes(parts: readonly Uint8Array[]): ArrayBuffer {
  const bytes = new Uint8Array(parts.reduce((size, part) => size + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return bytes.buffer;
}

const encoder = new TextEncoder();

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

/** Lower-case hex of a digest (a table lookup per byte: this runs several times per keyed request). */
export function hex(buffer: ArrayBuffer): string {
  let out = '';
  for (const byte of new Uint8Array(buffer)) out += HEX[byte];
  return out;
}

/**
 * SHA-256 of a string (UTF-8) or of bytes, hex.
 *
 * @example
 * ```ts
 * await sha256Hex('Bearer abc'); // same as `printf '%s' 'Bearer abc' | sha256sum`
 * ```
 */
export async function sha256Hex(data: string | BufferSource): Promise<string> {
  return hex(await crypto.subtle.digest('SHA-256', typeof data === 'string' ? encoder.encode(data) : data));
}
