/**
 * Golden values (#21): record names and fingerprints are part of what is stored. A refactor that changed
 * either would silently orphan every stored key (a new name is a new, empty object) or turn every retry into
 * a conflict (a stored fingerprint no longer matches), so they are pinned to fixed values here.
 */
import { describe, expect, it } from 'vitest';
import { fingerprintRequest, fingerprinter } from '../../src/middleware/fingerprint';
import { recordName } from '../../src/record/stub';
import { ANONYMOUS_KIND, ANONYMOUS_SCOPE_HASH, resolveScope } from '../../src/middleware/scope';
import { sha256Hex } from '../../src/shared/bytes';

const encode = (text: string) => new TextEncoder().encode(text).buffer as ArrayBuffer;

describe('record names', () => {
  it('are the same for the same proxy key as in 0.2', async () => {
    const scope = resolveScope(undefined);
    if (typeof scope === 'string') throw new Error(scope);
    const scopeHash = await sha256Hex('Bearer phk_live_demo');
    expect(scopeHash).toBe('2e44ab8e7776cfd928d4d4aef6a56fafaf6004ef311cd2d58dbf5dd857ecad73');
    expect(recordName('proxy', scope.kind, scopeHash, '7c52a3f0-3b8c-4e3d-aa1c-c8a7f4d4c121')).toBe(
      '["proxy","headers:authorization","2e44ab8e7776cfd928d4d4aef6a56fafaf6004ef311cd2d58dbf5dd857ecad73","7c52a3f0-3b8c-4e3d-aa1c-c8a7f4d4c121"]',
    );
  });

  it('keep the kind of scope and the namespace apart', () => {
    const scope = resolveScope({ headers: ['X-Api-Key', 'cookie:Session'] });
    if (typeof scope === 'string') throw new Error(scope);
    expect(recordName('app', scope.kind, '0'.repeat(64), 'k')).toBe(
      '["app","headers:x-api-key,cookie:Session","0000000000000000000000000000000000000000000000000000000000000000","k"]',
    );
  });
});

describe('the anonymous scope (#28)', () => {
  it('is its own kind, with the SHA-256 of the empty string as its scope hash', async () => {
    expect(ANONYMOUS_SCOPE_HASH).toBe(await sha256Hex(''));
    expect(recordName('proxy', ANONYMOUS_KIND, ANONYMOUS_SCOPE_HASH, 'k')).toBe(
      '["proxy","anonymous","e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","k"]',
    );
  });
});

describe('fingerprints', () => {
  it('of the exact bytes are the same as in 0.2', async () => {
    expect(await fingerprintRequest('POST', '/api/v1/economy/adjust?x=1', encode('{ "user_id": "123", "delta": 500 }'))).toBe(
      '4c253a0aa77ed018faf0cd26a5ae7108106c9d2925e1f6f8ed4254dec61b745f',
    );
    expect(await fingerprintRequest('DELETE', '/a', new ArrayBuffer(0))).toBe(
      'cbdf1358a2860962c0909e79479e01dfebe24d9037800762dd8c97f678e98453',
    );
  });

  it('of canonical JSON are the same as in 0.2, whatever the key order', async () => {
    const json = fingerprinter('json', ['/client_timestamp']);
    if (typeof json === 'string') throw new Error(json);
    const expected = '7affde663b860a988f2233b7b9f666ae478e97fbce7fa89a5b9cf43e9ef0eccb';
    expect(await json('POST', '/charges', encode('{"b":[1,2.50,"x"],"a":{"z":null,"y":true},"client_timestamp":1}'))).toBe(expected);
    expect(await json('POST', '/charges', encode('{ "a": { "y": true, "z": null }, "b": [1, 2.5, "x"], "client_timestamp": 2 }'))).toBe(
      expected,
    );
    // Not JSON: the exact bytes decide, as for the bytes fingerprint.
    expect(await json('POST', '/charges', encode('not json'))).toBe(await fingerprintRequest('POST', '/charges', encode('not json')));
  });
});
