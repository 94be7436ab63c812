/**
 * JSON fingerprints are bounded (issue #20, finding 3): a body over 1 MiB, or nesting deeper than 64, is not
 * parsed or canonicalised; its exact bytes decide, so key order and white space matter again for it. Both sides
 * of both bounds, and bodies built to exhaust memory or the stack, run inside workerd.
 */
import { describe, expect, it } from 'vitest';
import {
  MAX_JSON_FINGERPRINT_BYTES,
  MAX_JSON_FINGERPRINT_DEPTH,
  fingerprinter,
  fingerprintRequest,
  nestsDeeperThan,
} from '../../src/middleware/fingerprint';

const json = fingerprinter('json', []) as (method: string, path: string, body: ArrayBuffer) => Promise<string>;
const encode = (text: string) => new TextEncoder().encode(text).buffer as ArrayBuffer;
const fp = (text: string) => json('POST', '/p', encode(text));

/** Two spellings of one JSON object, each exactly `size` bytes: the members in either order. */
function pair(size: number): [string, string] {
  const pad = 'x'.repeat(size - '{"a":1,"pad":""}'.length);
  return [`{"a":1,"pad":"${pad}"}`, `{"pad":"${pad}","a":1}`];
}

/** Two spellings of arrays nested `depth` deep around 1: without and with white space. */
const nested = (depth: number): [string, string] => [
  `${'['.repeat(depth)}1${']'.repeat(depth)}`,
  `${'[ '.repeat(depth)}1${' ]'.repeat(depth)}`,
];

// The bounds are the contract's numbers (docs/contract.md), written out: a test that read them from the code would move
// with it.
describe('the size bound of JSON fingerprints', () => {
  it('canonicalises a body of exactly 1 MiB: key order does not matter', async () => {
    expect(MAX_JSON_FINGERPRINT_BYTES).toBe(1024 * 1024);
    const [a, b] = pair(1024 * 1024);
    expect(encode(a).byteLength).toBe(1024 * 1024);
    expect(await fp(a)).toBe(await fp(b));
  });

  it('fingerprints a body one byte over by its exact bytes: key order matters again', async () => {
    const [a, b] = pair(1024 * 1024 + 1);
    expect(await fp(a)).not.toBe(await fp(b));
    expect(await fp(a)).toBe(await fingerprintRequest('POST', '/p', encode(a)));
  });
});

describe('the depth bound of JSON fingerprints', () => {
  it('canonicalises nesting of exactly 64: white space does not matter', async () => {
    expect(MAX_JSON_FINGERPRINT_DEPTH).toBe(64);
    const [a, b] = nested(64);
    expect(await fp(a)).toBe(await fp(b));
  });

  it('fingerprints nesting of 65 by its exact bytes', async () => {
    const [a, b] = nested(65);
    expect(await fp(a)).not.toBe(await fp(b));
    expect(await fp(a)).toBe(await fingerprintRequest('POST', '/p', encode(a)));
  });

  it('survives bodies built to exhaust the stack or memory: 400,000 nested arrays, 400,000 tiny objects', async () => {
    const deep = '['.repeat(400_000) + ']'.repeat(400_000);
    expect(await fp(deep)).toBe(await fingerprintRequest('POST', '/p', encode(deep)));
    const wide = `[${Array(400_000).fill('{}').join(',')}]`;
    expect(await fp(wide)).toBe(await fingerprintRequest('POST', '/p', encode(wide)));
  });

  it('counts brackets outside strings only, escaped quotes included', () => {
    const inString = (text: string) => nestsDeeperThan(new Uint8Array(encode(text)), 2);
    expect(inString(`{"s":"${'['.repeat(100)}"}`)).toBe(false);
    expect(inString(`{"s":"\\"${'{'.repeat(100)}"}`)).toBe(false);
    expect(inString(`{"s":"\\\\","t":[[[1]]]}`)).toBe(true);
    expect(inString('[[1],[2],[[3]]]')).toBe(true);
    expect(inString('[[1],[2],[3]]')).toBe(false);
  });
});
