/**
 * Encryption at rest, the self-contained part (issue #20, finding 9): `IDEMPOTENCY_ENCRYPTION_KEYS` parsing and
 * AES-256-GCM seal/open with the record name as additional data, inside workerd's WebCrypto.
 */
import { describe, expect, it } from 'vitest';
import { SealConfigError, open, readKeyring, seal } from '../../src/record/seal';

/** A fresh random 256-bit key in base64 (standard, or URL-safe without padding). */
function newKey(urlSafe = false): string {
  const text = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
  return urlSafe ? text.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') : text;
}

const name = JSON.stringify(['proxy', 'headers:authorization', 'a'.repeat(64), 'key-1']);
const plaintext = new TextEncoder().encode('{"status":201,"body":"payment ok","set-cookie":"s=1"}');

describe('seal() and open()', () => {
  it('round-trips, with a fresh IV every time and no plaintext in the sealed bytes', async () => {
    const keys = readKeyring(`k1:${newKey()}`);
    const a = await seal(keys, name, plaintext);
    const b = await seal(keys, name, plaintext);
    expect(a.keyId).toBe('k1');
    expect(a.bytes.length).toBe(12 + plaintext.length + 16);
    expect(a.bytes).not.toEqual(b.bytes);
    expect(new TextDecoder('latin1').decode(a.bytes)).not.toContain('payment');
    expect(await open(keys, name, a.keyId, a.bytes)).toEqual(plaintext);
    expect(await open(keys, name, b.keyId, b.bytes)).toEqual(plaintext);
  });

  it('rotates: the new first key seals, the old one still opens what it sealed', async () => {
    const oldKey = newKey();
    const before = readKeyring(`old:${oldKey}`);
    const sealedBefore = await seal(before, name, plaintext);
    const after = readKeyring(`new:${newKey(true)}, old:${oldKey}`);
    const sealedAfter = await seal(after, name, plaintext);
    expect(sealedAfter.keyId).toBe('new');
    expect(await open(after, name, sealedBefore.keyId, sealedBefore.bytes)).toEqual(plaintext);
    expect(await open(after, name, sealedAfter.keyId, sealedAfter.bytes)).toEqual(plaintext);
    // Once the old key is dropped, what it sealed cannot be opened.
    expect(await open(readKeyring(`new:${newKey()}`), name, sealedBefore.keyId, sealedBefore.bytes)).toBeUndefined();
  });

  it('opens nothing for another record name, a changed byte, an unknown key id, or another key under the same id', async () => {
    const keys = readKeyring(`k1:${newKey()},k2:${newKey()}`);
    const sealed = await seal(keys, name, plaintext);
    const otherName = JSON.stringify(['proxy', 'headers:authorization', 'a'.repeat(64), 'key-2']);
    expect(await open(keys, otherName, sealed.keyId, sealed.bytes)).toBeUndefined();
    for (const index of [0, 11, 12, sealed.bytes.length - 1]) {
      const tampered = sealed.bytes.slice();
      tampered[index]! ^= 0x01;
      expect(await open(keys, name, sealed.keyId, tampered)).toBeUndefined();
    }
    expect(await open(keys, name, 'k3', sealed.bytes)).toBeUndefined();
    expect(await open(keys, name, 'k2', sealed.bytes)).toBeUndefined();
    expect(await open(readKeyring(`k1:${newKey()}`), name, 'k1', sealed.bytes)).toBeUndefined();
    expect(await open(keys, name, 'k1', sealed.bytes.subarray(0, 20))).toBeUndefined();
  });
});

describe('IDEMPOTENCY_ENCRYPTION_KEYS', () => {
  const key = newKey();
  it.each([
    ['unset', undefined, /at least one/],
    ['empty', '  ', /at least one/],
    ['an entry without an id', key, /entry 1 must be id:base64key/],
    ['an id with a space', `my key:${key}`, /entry 1 must be id:base64key/],
    ['an empty second entry', `k1:${key},`, /entry 2 must be id:base64key/],
    ['a repeated id', `k1:${key},k2:${newKey()},k1:${newKey()}`, /entry 3 repeats the id/],
    ['a key that is not base64', 'k1:not*base64!', /entry 1 does not hold a base64 key/],
    ['a 128-bit key', `k1:${btoa('0123456789abcdef')}`, /entry 1 must be a 256-bit key/],
    ['a 264-bit key', `k1:${btoa('0123456789abcdef0123456789abcdef!')}`, /entry 1 must be a 256-bit key/],
  ])('refuses %s with a configuration error that shows no key material', (_, raw, message) => {
    let error: unknown;
    try {
      readKeyring(raw);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(SealConfigError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toMatch(/^IDEMPOTENCY_ENCRYPTION_KEYS: /);
    for (const part of (raw ?? '').split(/[,:]/).filter((text) => text.trim().length > 2))
      expect((error as Error).message).not.toContain(part.trim());
  });

  it('accepts standard and URL-safe base64, white space around entries, and lists the ids in order', () => {
    const keys = readKeyring(` b:${newKey(true)} , a:${newKey()} `);
    expect(keys.sealingId).toBe('b');
    expect(keys.ids).toEqual(['b', 'a']);
  });
});
