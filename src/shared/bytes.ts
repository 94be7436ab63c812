/**
 * @module
 * Byte buffers put together from parts (a streamed body, chunk rows, a fingerprint's input).
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
