// Property tests of the header codec: round trips over the whole field
// space, the exact bytes fspl writes, chunked reading, truncation and garbage. fast-check
// prints the seed and the shrunk counterexample of any failure; FSPOOL_PROP_SEED replays one.
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Encoder, ExtData } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { forLibrary, RUN_TYPE } from '../src/packet/libraryForm.js';
import { checkShape } from '../src/packet/msgpackShape.js';
import { readCanonical } from '../src/packet/canonical.js';
import { decodeAnyForm, decodeHeader, encodeHeader, HeaderReader, MAX_METADATA_LEN, PacketError, PREFIX_LEN } from '../src/packet/codec.js';
import { type CmdType, type Header, I64_MAX, I64_MIN, U64_MAX } from '../src/packet/header.js';
import { packetId } from '../src/packet/identity.js';
import { native } from '../src/sys/native.js';
// Deterministic filler, so that long byte strings cost one integer of shrinking, not 70,000.
import { aroundMetadata, filler, prng } from './helpers/bytes.js';

const seed = process.env.FSPOOL_PROP_SEED ? Number(process.env.FSPOOL_PROP_SEED) : undefined;
const params = (numRuns: number): fc.Parameters<unknown> => ({ numRuns, ...(seed !== undefined ? { seed } : {}) });

// ---- Arbitraries ----

/** Powers of two and their neighbours: where every MessagePack form changes. */
const edges = (lo: bigint, hi: bigint): bigint[] => {
  const out = new Set<bigint>([lo, lo + 1n, hi - 1n, hi, 0n, 1n, -1n]);
  for (let k = 0n; k <= 64n; k++) for (const d of [-1n, 0n, 1n]) for (const s of [1n, -1n]) out.add(s * (1n << k) + d);
  for (const v of [-32n, -33n, -128n, -129n, -32768n, -32769n]) out.add(v);
  return [...out].filter((v) => v >= lo && v <= hi);
};

const seqArb: fc.Arbitrary<bigint> = fc.oneof(
  fc.constantFrom(...edges(0n, U64_MAX)),
  fc.bigInt({ min: 0n, max: U64_MAX }),
  fc.bigInt({ min: 0n, max: 1000n }),
);
const secsArb: fc.Arbitrary<bigint> = fc.oneof(
  fc.constantFrom(...edges(I64_MIN, I64_MAX)),
  fc.bigInt({ min: I64_MIN, max: I64_MAX }),
  fc.bigInt({ min: -3000000000n, max: 3000000000n }),
);
const nanosArb = fc.oneof(fc.constantFrom(0, 1, 127, 128, 255, 256, 65535, 65536, 999_999_999), fc.integer({ min: 0, max: 999_999_999 }));

const specialBytes = [
  Buffer.alloc(0),
  Buffer.from([0]),
  Buffer.from([0, 0, 0]),
  Buffer.from([0xff, 0xfe]), // not UTF-8
  Buffer.from([0xc0, 0x80]), // overlong NUL
  Buffer.from([0xed, 0xa0, 0x80]), // a lone surrogate in CESU form
  Buffer.from('é=\n\r\t ', 'utf8'),
  Buffer.from([0x7f, 0x80, 0xc1, 0xdc, 0xdd, 0xcf]), // bytes that are MessagePack markers
];

/** Short byte strings of any content, and the special ones. */
const shortBytesArb: fc.Arbitrary<Buffer> = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), weight: 3 },
  { arbitrary: fc.constantFrom(...specialBytes), weight: 1 },
);
/** Lengths around the array header boundaries: fixarray 15/16, array16 65535/65536, array32 beyond. */
const longBytesArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(fc.constantFrom(15, 16, 17, 65535, 65536, 65537), fc.integer()).map(([n, s]) => filler(n, s)),
  fc.tuple(fc.integer({ min: 65536, max: 100_000 }), fc.integer()).map(([n, s]) => filler(n, s)),
);
const bytesArb: fc.Arbitrary<Buffer> = fc.oneof({ arbitrary: shortBytesArb, weight: 30 }, { arbitrary: longBytesArb, weight: 1 });

/** Many entries: counts around the array header boundaries, cheap to build. */
const manyParamsArb = fc
  .tuple(fc.constantFrom(15, 16, 65535, 65536, 70000), fc.integer({ min: 0, max: 3 }), fc.integer())
  .map(([n, w, s]) => Array.from({ length: n }, (_, i) => filler(w, s + i)));

const cmdArb: fc.Arbitrary<CmdType> = fc.oneof(
  { arbitrary: fc.constant<CmdType>({ kind: 'NOP' }), weight: 1 },
  { arbitrary: fc.constant<CmdType>({ kind: 'Fail' }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('Command' as const),
      params: fc.array(bytesArb, { maxLength: 12 }),
      env: fc.array(fc.tuple(bytesArb, bytesArb), { maxLength: 12 }),
    }),
    weight: 6,
  },
);

const headerArb: fc.Arbitrary<Header> = fc.record({ seq: seqArb, ctimeSecs: secsArb, ctimeNanos: nanosArb, cmd: cmdArb });
/** Small headers only, for the properties that run many times per header. */
const smallHeaderArb: fc.Arbitrary<Header> = fc.record({
  seq: seqArb,
  ctimeSecs: secsArb,
  ctimeNanos: nanosArb,
  cmd: fc.oneof(
    fc.constant<CmdType>({ kind: 'NOP' }),
    fc.constant<CmdType>({ kind: 'Fail' }),
    fc.record({
      kind: fc.constant('Command' as const),
      params: fc.array(fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)), { maxLength: 5 }),
      env: fc.array(fc.tuple(fc.uint8Array({ maxLength: 10 }), fc.uint8Array({ maxLength: 10 })).map(([k, v]) => [Buffer.from(k), Buffer.from(v)] as [Buffer, Buffer]), {
        maxLength: 4,
      }),
    }),
  ),
});

/** Deep equality of headers, with byte strings compared by Buffer.equals (fast on 100 KB). */
function expectSameHeader(got: Header | undefined, want: Header): void {
  expect(got).toBeDefined();
  const g = got!;
  expect([g.seq, g.ctimeSecs, g.ctimeNanos, g.cmd.kind]).toEqual([want.seq, want.ctimeSecs, want.ctimeNanos, want.cmd.kind]);
  if (want.cmd.kind !== 'Command' || g.cmd.kind !== 'Command') return;
  const gc = g.cmd;
  expect(gc.params.length).toBe(want.cmd.params.length);
  want.cmd.params.forEach((p, i) => {
    expect(Buffer.isBuffer(gc.params[i])).toBe(true);
    if (!gc.params[i]!.equals(p)) expect(gc.params[i]!.toString('hex')).toBe(p.toString('hex'));
  });
  expect(gc.env.length).toBe(want.cmd.env.length);
  want.cmd.env.forEach(([k, v], i) => {
    const [gk, gv] = gc.env[i]!;
    if (!gk.equals(k) || !gv.equals(v)) expect([gk.toString('hex'), gv.toString('hex')]).toEqual([k.toString('hex'), v.toString('hex')]);
  });
}

// ---- A reference encoder: the MessagePack rmp-serde (fspl 1.2.2) writes, spelled out ----

function refUint(n: bigint): number[] {
  if (n < 0x80n) return [Number(n)];
  if (n < 0x100n) return [0xcc, Number(n)];
  if (n < 0x10000n) return [0xcd, ...be(n, 2)];
  if (n < 0x100000000n) return [0xce, ...be(n, 4)];
  return [0xcf, ...be(n, 8)];
}
/** i64 as rmp writes it: non-negative values in the unsigned forms, negative in the smallest signed. */
function refInt(n: bigint): number[] {
  if (n >= 0n) return refUint(n);
  if (n >= -32n) return [Number(n & 0xffn)];
  if (n >= -128n) return [0xd0, ...be(n, 1)];
  if (n >= -32768n) return [0xd1, ...be(n, 2)];
  if (n >= -2147483648n) return [0xd2, ...be(n, 4)];
  return [0xd3, ...be(n, 8)];
}
function be(n: bigint, bytes: number): number[] {
  const v = BigInt.asUintN(bytes * 8, n);
  return Array.from({ length: bytes }, (_, i) => Number((v >> BigInt(8 * (bytes - 1 - i))) & 0xffn));
}
function refArray(len: number): number[] {
  if (len < 16) return [0x90 | len];
  if (len < 0x10000) return [0xdc, ...be(BigInt(len), 2)];
  return [0xdd, ...be(BigInt(len), 4)];
}
const refStr = (s: string): number[] => [0xa0 | s.length, ...Buffer.from(s, 'latin1')];
function refBytes(b: Buffer, out: number[]): void {
  out.push(...refArray(b.length));
  for (const x of b) {
    if (x < 0x80) out.push(x);
    else out.push(0xcc, x);
  }
}
function refMetadata(h: Header): Buffer {
  const out: number[] = [0x83, ...refStr('seq'), ...refUint(h.seq), ...refStr('ctime'), 0x92, ...refInt(h.ctimeSecs), ...refUint(BigInt(h.ctimeNanos)), ...refStr('cmd_type')];
  if (h.cmd.kind !== 'Command') {
    out.push(...refStr(h.cmd.kind));
  } else {
    out.push(0x81, ...refStr('Command'), 0x82, ...refStr('params'), ...refArray(h.cmd.params.length));
    for (const p of h.cmd.params) refBytes(p, out);
    out.push(...refStr('env'), ...refArray(h.cmd.env.length));
    for (const [k, v] of h.cmd.env) {
      out.push(0x92);
      refBytes(k, out);
      refBytes(v, out);
    }
  }
  return Buffer.from(out);
}

/** Run `f`; it must return normally or throw a PacketError with a one-line message, quickly. */
function onlyPacketError(f: () => unknown, budgetMs = 1000): { ok: boolean; error?: PacketError } {
  const t0 = performance.now();
  let result: { ok: boolean; error?: PacketError };
  try {
    f();
    result = { ok: true };
  } catch (e) {
    if (!(e instanceof PacketError)) throw new Error(`a ${(e as Error)?.constructor?.name} escaped instead of a PacketError: ${String(e)}`);
    expect(e.message).not.toMatch(/[\r\n]/);
    expect(e.message.length).toBeGreaterThan(0);
    result = { ok: false, error: e };
  }
  expect(performance.now() - t0).toBeLessThan(budgetMs);
  return result;
}

// ---- Properties ----

describe('round trips over the whole field space', () => {
  it('decode(encode(h)) deep-equals h', () => {
    fc.assert(
      fc.property(headerArb, (h) => {
        const bytes = encodeHeader(h);
        const { header, length } = decodeHeader(bytes);
        expect(length).toBe(bytes.length);
        expectSameHeader(header, h);
      }),
      params(250),
    );
  });

  it('long byte strings (array16/array32 headers) and many entries round-trip', () => {
    const bigCmd: fc.Arbitrary<CmdType> = fc.oneof(
      fc.record({ kind: fc.constant('Command' as const), params: fc.array(longBytesArb, { minLength: 1, maxLength: 3 }), env: fc.array(fc.tuple(bytesArb, longBytesArb), { maxLength: 2 }) }),
      fc.record({ kind: fc.constant('Command' as const), params: manyParamsArb, env: fc.array(fc.tuple(shortBytesArb, shortBytesArb), { maxLength: 2 }) }),
      fc.record({
        kind: fc.constant('Command' as const),
        params: fc.constant<Buffer[]>([]),
        env: manyParamsArb.map((ps) => ps.map((p, i) => [p, Buffer.from(String(i))] as [Buffer, Buffer])),
      }),
    );
    fc.assert(
      // Integer fields kept small here: their encodings have properties of their own below.
      fc.property(fc.record({ seq: fc.bigInt(0n, 0xffffffffn), ctimeSecs: fc.bigInt(-(1n << 31n), 0xffffffffn), ctimeNanos: nanosArb, cmd: bigCmd }), (h) => {
        const bytes = encodeHeader(h);
        expect(bytes.subarray(PREFIX_LEN).equals(refMetadata(h))).toBe(true);
        const { header, length } = decodeHeader(bytes);
        expect(length).toBe(bytes.length);
        expectSameHeader(header, h);
      }),
      params(12),
    );
  });

  it("the metadata is written as @msgpack/msgpack writes it (the library fspool's own writer replaces), byte for byte, a stream id included", () => {
    const library = new Encoder({ useBigInt64: true });
    // As it was given the header: integers as numbers up to 32 bits (else it writes a float64),
    // beyond that as BigInt; byte strings as arrays of integers.
    const int = (n: bigint) => (n >= -(1n << 31n) && n < 1n << 32n ? Number(n) : n);
    const bytes = (b: Buffer) => Array.from(b);
    const withStream = fc.tuple(headerArb, fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: undefined }));
    fc.assert(
      fc.property(withStream, ([h, stream]) => {
        const header: Header = stream === undefined ? h : { ...h, stream };
        const cmd = h.cmd.kind !== 'Command' ? h.cmd.kind : { Command: { params: h.cmd.params.map(bytes), env: h.cmd.env.map(([k, v]) => [bytes(k), bytes(v)]) } };
        const expected = library.encode({ seq: int(h.seq), ctime: [int(h.ctimeSecs), h.ctimeNanos], cmd_type: cmd, ...(stream === undefined ? {} : { fspool_stream: stream }) });
        expect(encodeHeader(header).subarray(PREFIX_LEN).equals(Buffer.from(expected))).toBe(true);
      }),
      params(300),
    );
  });

  it('encode is deterministic, and re-encoding a decoded header gives the same bytes', () => {
    fc.assert(
      fc.property(headerArb, (h) => {
        const a = encodeHeader(h);
        expect(encodeHeader(h).equals(a)).toBe(true);
        expect(encodeHeader(decodeHeader(a).header).equals(a)).toBe(true);
      }),
      params(100),
    );
  });

  it('values outside u64 / i64 / nanos < 10^9 are refused with a PacketError, never written', () => {
    const bad = fc.oneof(
      fc.record({ seq: fc.oneof(fc.bigInt({ min: U64_MAX + 1n, max: U64_MAX * 4n }), fc.bigInt({ min: -(1n << 70n), max: -1n })), ctimeSecs: secsArb, ctimeNanos: nanosArb, cmd: fc.constant<CmdType>({ kind: 'NOP' }) }),
      fc.record({ seq: seqArb, ctimeSecs: fc.oneof(fc.bigInt({ min: I64_MAX + 1n, max: 1n << 70n }), fc.bigInt({ min: -(1n << 70n), max: I64_MIN - 1n })), ctimeNanos: nanosArb, cmd: fc.constant<CmdType>({ kind: 'NOP' }) }),
      fc.record({ seq: seqArb, ctimeSecs: secsArb, ctimeNanos: fc.oneof(fc.integer({ min: 1_000_000_000, max: 2 ** 40 }), fc.integer({ max: -1 }), fc.constant(0.5)), cmd: fc.constant<CmdType>({ kind: 'NOP' }) }),
    );
    fc.assert(
      fc.property(bad, (h) => {
        expect(() => encodeHeader(h)).toThrow(PacketError);
      }),
      params(200),
    );
  });
});

describe('the canonical reader (canonical.ts) against the general one', () => {
  const withStream = fc.tuple(headerArb, fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: undefined })).map(([h, stream]) => (stream === undefined ? h : { ...h, stream }));
  const same = (a: Header, b: Header) => {
    expectSameHeader(a, b);
    expect(a.stream).toBe(b.stream);
  };

  it('reads every header fspool writes with a time from 1970 on, as the general reader reads it', () => {
    fc.assert(
      fc.property(withStream, (h) => {
        const meta = encodeHeader(h).subarray(PREFIX_LEN);
        const c = readCanonical(meta);
        if (h.ctimeSecs < 0n) expect(c).toBeNull();
        else same(c!, h);
        same(decodeAnyForm(meta), h);
      }),
      params(300),
    );
  });

  it('on mutated metadata, reads only what the general reader reads alike, and what it reads encodes back to the same bytes', () => {
    const rand = prng(seed ?? 7);
    const int = (n: number) => Math.floor(rand() * n);
    const markers = [0x00, 0x7f, 0x80, 0x83, 0x84, 0x90, 0x92, 0x9f, 0xa3, 0xc0, 0xc4, 0xca, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd9, 0xdc, 0xdd, 0xde, 0xff];
    /** Each kind of edit: a byte changed, one in or out, a one-byte integer widened to 0xcc (not its shortest form). */
    const edit = (m: Buffer): Buffer => {
      const at = int(m.length);
      switch (int(5)) {
        case 0:
          return Buffer.concat([m.subarray(0, at), Buffer.from([markers[int(markers.length)]!]), m.subarray(at + 1)]);
        case 1:
          return Buffer.concat([m.subarray(0, at), Buffer.from([int(256)]), m.subarray(at)]);
        case 2:
          return Buffer.concat([m.subarray(0, at), m.subarray(at + 1)]);
        case 3:
          return m[at]! < 0x80 ? Buffer.concat([m.subarray(0, at), Buffer.from([0xcc]), m.subarray(at)]) : m;
        default: {
          const c = Buffer.from(m);
          c[at] = int(256);
          return c;
        }
      }
    };
    let read = 0;
    let left = 0;
    const samples = fc.sample(fc.tuple(smallHeaderArb, fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: undefined })), { numRuns: 400, ...(seed !== undefined ? { seed } : {}) });
    for (const [h, stream] of samples) {
      const header: Header = stream === undefined ? h : { ...h, stream };
      const original = encodeHeader(header).subarray(PREFIX_LEN);
      for (let round = 0; round < 10; round++) {
        let m = edit(original);
        if (int(3) === 0) m = edit(m);
        const c = readCanonical(m);
        if (c === null) {
          left++;
          continue;
        }
        read++;
        same(c, decodeAnyForm(m));
        expect(encodeHeader(c).subarray(PREFIX_LEN).equals(m)).toBe(true);
      }
    }
    // Both kinds are many: edits inside byte strings keep the form, edits of a marker break it.
    expect(read).toBeGreaterThan(100);
    expect(left).toBeGreaterThan(1000);
  });

  it('a header at the 16 MiB bound is read in one pass, its bytes above and below 128 alike', () => {
    for (const fill of [0x41, 0xc1]) {
      const param = Buffer.alloc(fill < 0x80 ? MAX_METADATA_LEN - 300 : MAX_METADATA_LEN / 2 - 300, fill);
      param[7] = fill ^ 0x80;
      const h: Header = { seq: 9n, ctimeSecs: 1n, ctimeNanos: 2, cmd: { kind: 'Command', params: [param], env: [[Buffer.from('K'), param.subarray(0, 70)]] } };
      const bytes = encodeHeader(h);
      expect(bytes.length).toBeLessThanOrEqual(PREFIX_LEN + MAX_METADATA_LEN);
      const c = readCanonical(bytes.subarray(PREFIX_LEN));
      same(c!, h);
      same(decodeHeader(bytes).header, h);
    }
  });
});

describe('the metadata as the library is given it (libraryForm.ts): long byte strings as runs, what the reader never looks at left out', () => {
  const read = (m: Uint8Array, rewrite: { runs: boolean; drop: boolean }) => {
    try {
      return { h: decodeAnyForm(m, rewrite) };
    } catch (e) {
      if (!(e instanceof PacketError)) throw e;
      return { e: e.message };
    }
  };
  /** Whether the metadata passes the shape walk and is then given to the library rewritten. */
  const rewrites = (m: Uint8Array, rewrite: { runs: boolean; drop: boolean }): boolean => {
    try {
      checkShape(m);
    } catch {
      return false;
    }
    return forLibrary(m, rewrite) !== undefined;
  };
  /** With runs and without: the same header, or the same error. */
  const alike = (m: Uint8Array): 'header' | 'error' => {
    const a = read(m, { runs: true, drop: true });
    const b = read(m, { runs: false, drop: true });
    if (a.h === undefined || b.h === undefined) {
      expect(a.e).toBe(b.e);
      return 'error';
    }
    expectSameHeader(a.h, b.h);
    expect(a.h.stream).toBe(b.h.stream);
    return 'header';
  };

  it("an extension of the runs' type that came with the metadata is an extension, never bytes, with or without runs beside it", () => {
    // cmd_type (by number) an extension of that type: not a command type.
    expect(() => decodeAnyForm(Buffer.from('83a3736571cd03c2a56374696d6592ce6553f100cf000000003b9ac9ffcd0002d5620102', 'hex'))).toThrow('cmd_type is not a known command type');
    const ext = Buffer.from([0xd5, RUN_TYPE, 1, 2]);
    const long = Buffer.concat([Buffer.from([0xdc, 0, 100]), Buffer.alloc(100, 0x41)]);
    for (const params of [[ext], [long, ext], [ext, long]]) {
      const meta = Buffer.concat([
        Buffer.from('83c403736571' + '01' + 'a56374696d65920102' + 'a8636d645f74797065' + '81a7436f6d6d616e64' + '82a6706172616d73', 'hex'),
        Buffer.from([0x90 | params.length]),
        ...params,
        Buffer.from('a3656e7690', 'hex'),
      ]);
      expect(() => decodeAnyForm(meta), `${params.length} params`).toThrow(/^param \d is not a byte array$/);
      expect(alike(meta)).toBe('error');
    }
  });

  /** Metadata in every form fspl reads (keys as bin or by number, structs as arrays, unknown keys with odd values, spoilt bytes, trailing bytes). */
  const generator = (seedN: number) => {
    const enc = new Encoder({ useBigInt64: true });
    const rand = prng(seedN);
    const int = (n: number) => Math.floor(rand() * n);
    const pick = <T>(xs: T[]): T => xs[int(xs.length)]!;
    /** A byte string as an array of integers, some in wider forms (BigInt: 0xcf), sometimes spoilt. */
    const bytes = (): unknown => {
      const n = int(40) === 0 ? 70_000 : pick([0, 5, 63, 64, 65, 200, 255, 256]);
      const out: unknown[] = Array.from({ length: n }, () => (int(2) ? int(128) : int(256)));
      if (n > 0 && int(3) === 0) for (let k = 0; k < 3; k++) out[int(n)] = BigInt(int(256));
      if (n > 0 && int(30) === 0) out[int(n)] = pick<unknown>([256, -1, 1.5, [1], 'x', null, new ExtData(RUN_TYPE, Uint8Array.of(1, 2))]);
      return int(40) === 0 ? Uint8Array.from({ length: 70 }, () => int(256)) : out;
    };
    /** A map with keys of any type (the library's Encoder writes string keys only). */
    class Pairs {
      constructor(readonly pairs: Array<[unknown, unknown]>) {}
    }
    // Odd values: extensions (of the runs' type, of a timestamp's with a size the library refuses), byte strings, a map keyed __proto__.
    const odd = (): unknown =>
      pick<unknown>([new ExtData(RUN_TYPE, Uint8Array.of(7)), new ExtData(RUN_TYPE, new Uint8Array(300)), new ExtData(5, Uint8Array.of(1)), new ExtData(-1, Uint8Array.of(1, 2, 3)), bytes(), [bytes()], 'x', new Pairs([['__proto__', 1]])]);
    const mp = (v: unknown): Buffer => {
      const all = (xs: unknown[]) => xs.map(mp);
      if (v instanceof Pairs) return Buffer.concat([Buffer.from(enc.encode(new Array(v.pairs.length).fill(0))).subarray(0, 1).map((t) => t === 0x90 + v.pairs.length ? 0x80 + v.pairs.length : t), ...all(v.pairs.flat())]);
      if (Array.isArray(v)) {
        const head = Buffer.from(enc.encode(new Array(v.length).fill(0)));
        return Buffer.concat([head.subarray(0, head.length - v.length), ...all(v)]);
      }
      return Buffer.from(enc.encode(v));
    };
    const struct = (fields: Array<[string, unknown]>, index: boolean): unknown => {
      if (int(4) === 0) return fields.map(([, v]) => v);
      const pairs: Array<[unknown, unknown]> = fields.map(([k, v], i) => [index && int(3) === 0 ? i : int(4) === 0 ? Buffer.from(k) : k, v]);
      for (let n = int(3) === 0 ? 1 + int(3) : 0; n > 0; n--) {
        const key = pick<unknown>(['zz', 'fspool_x', Buffer.from('unknown'), 'fspool_stream', Buffer.from('fspool_stream'), 7, '__proto__']);
        const value = key === 'fspool_stream' && int(2) === 0 ? pick(['cd'.repeat(16), 'x']) : odd();
        pairs.splice(int(pairs.length + 1), 0, [key, value]);
      }
      return new Pairs(pairs);
    };
    return (): Buffer => {
      const params = Array.from({ length: int(4) }, bytes);
      const env = Array.from({ length: int(3) }, () => (int(20) === 0 ? [bytes(), bytes(), bytes()] : [bytes(), bytes()]));
      const command = struct([['params', params], ['env', env]], true);
      const cmdType = int(10) === 0 ? 'NOP' : new Pairs([[int(4) === 0 ? 0 : int(4) === 0 ? Buffer.from('Command') : 'Command', command]]);
      const value = struct([['seq', BigInt(int(1000))], ['ctime', [int(2 ** 31), int(1e9)]], ['cmd_type', cmdType]], true);
      let m = mp(value);
      if (int(4) === 0) m = Buffer.concat([m, Uint8Array.of(0xc1, 0x90)]); // after the first object: ignored
      for (let k = int(3) === 0 ? 1 + int(2) : 0; k > 0 && m.length > 0; k--) m[int(m.length)] = pick([0x00, 0x7f, 0xcc, 0xcd, 0xc7, RUN_TYPE, 0xdc, 0x92, int(256)]);
      return m;
    };
  };

  it('runs give the header, or the error, that the library gives element by element, in every form fspl reads', () => {
    const next = generator(seed ?? 11);
    let headers = 0;
    let errors = 0;
    let rewritten = 0;
    for (let round = 0; round < 300; round++) {
      const m = next();
      if (alike(m) === 'header') headers++;
      else errors++;
      if (rewrites(m, { runs: true, drop: false })) rewritten++;
    }
    // No kind may be rare: each must have been compared many times.
    expect(headers).toBeGreaterThan(50);
    expect(errors).toBeGreaterThan(50);
    expect(rewritten).toBeGreaterThan(100);
  });

  it("leaving out what the reader never looks at gives the library's header, or its error; only what the library refused in such an entry (fspl skips it unread) may now be read", () => {
    const next = generator(seed ?? 12);
    let left = 0;
    let nowRead = 0;
    for (let round = 0; round < 300; round++) {
      const m = next();
      const a = read(m, { runs: false, drop: true });
      const b = read(m, { runs: false, drop: false });
      if (b.h !== undefined) {
        expect(a.h, a.e).toBeDefined();
        expectSameHeader(a.h!, b.h);
        expect(a.h!.stream).toBe(b.h.stream);
      } else if (a.e !== b.e) {
        expect(b.e).toMatch(/^metadata is not valid MessagePack: /);
        nowRead++;
      }
      if (rewrites(m, { runs: false, drop: true })) left++;
    }
    expect(left).toBeGreaterThan(50);
    // A timestamp extension the library cannot read, or a key __proto__, in an unknown entry.
    expect(nowRead).toBeGreaterThan(5);
  });
});

describe('the shape walk steps over runs of byte-string integers at once, with the verdicts of one element at a time', () => {
  const map = (...pairs: Buffer[]) => Buffer.concat([Buffer.from([0x80 | (pairs.length / 2)]), ...pairs]);
  const str = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
  const arr16 = (n: number, body: Buffer) => Buffer.concat([Buffer.from([0xdc, n >> 8, n & 0xff]), body]);
  const fields = [str('seq'), Buffer.from([1]), str('ctime'), Buffer.from([0x92, 1, 2]), str('cmd_type'), str('NOP')];
  const ints = Buffer.concat([Buffer.alloc(150, 0x41), Buffer.from('cc80cc81', 'hex'), Buffer.alloc(150, 0x7f)]);

  it('a field after a long run is still the field it is, and given twice is refused', () => {
    expect(decodeAnyForm(map(str('zz'), arr16(302, ints), ...fields)).cmd.kind).toBe('NOP');
    expect(() => decodeAnyForm(map(str('zz'), arr16(302, ints), ...fields, str('seq'), Buffer.from([2])))).toThrow('metadata has the field "seq" twice');
    // A run that ends two containers at once, then the next key.
    expect(decodeAnyForm(map(str('zz'), Buffer.concat([Buffer.from([0x91]), arr16(302, ints)]), ...fields)).seq).toBe(1n);
  });

  it('a run that claims more elements than bytes are left is refused as lying, a run cut short as truncated', () => {
    const pairs = Buffer.from('cc80'.repeat(600), 'hex');
    expect(() => checkShape(map(str('zz'), Buffer.concat([Buffer.from([0xdd, 0, 0, 0x03, 0xe8]), pairs])))).toThrow('(a lying length)');
    expect(() => checkShape(map(str('zz'), Buffer.from('93cc80cc80cc', 'hex')))).toThrow('metadata is truncated MessagePack');
    expect(() => checkShape(map(str('zz'), Buffer.from('934141', 'hex')))).toThrow('(a lying length)');
  });

  it('runs of the other scalars (nil, booleans, negative and wider integers) too: a float among them is still refused, a lying or cut run still caught', () => {
    const others = Buffer.concat([Buffer.alloc(300, 0xc0), Buffer.from('c2c3e0ffcd0102ce01020304cf0102030405060708d0ffd1ffffd2ffffffffd3ffffffffffffffff', 'hex'), Buffer.alloc(300, 0xc3)]);
    const n = 300 + 11 + 300;
    expect(decodeAnyForm(map(str('zz'), arr16(n, others), ...fields)).cmd.kind).toBe('NOP');
    expect(() => decodeAnyForm(map(str('zz'), arr16(n, others), ...fields, str('ctime'), Buffer.from([0x92, 1, 2])))).toThrow('metadata has the field "ctime" twice');
    const float = Buffer.concat([Buffer.alloc(300, 0xc0), Buffer.from('cb3ff0000000000000', 'hex')]);
    expect(() => checkShape(map(str('zz'), arr16(301, float), ...fields))).toThrow('floating-point');
    expect(() => checkShape(map(str('zz'), Buffer.concat([Buffer.from([0xdd, 0, 0, 0x03, 0xe8]), Buffer.alloc(600, 0xc0)])))).toThrow('(a lying length)');
    expect(() => checkShape(map(str('zz'), Buffer.concat([Buffer.from([0x93, 0xc0, 0xc0]), Buffer.from('cf0000', 'hex')])))).toThrow('metadata is truncated MessagePack');
  });

  it('a field named by a number in any width is that field; a number of 256 or more, or a name longer than any field, names none', () => {
    const seqAgain = (key: string) => map(...fields, Buffer.from(key, 'hex'), Buffer.from([2]));
    for (const key of ['00', 'cc00', 'cd0000', 'ce00000000', 'cf0000000000000000']) expect(() => checkShape(seqAgain(key)), key).toThrow('metadata has the field "seq" twice');
    for (const key of ['cd0100', 'ce00010000', 'cf0000000100000000', 'cf0100000000000000']) expect(decodeAnyForm(seqAgain(key)).seq, key).toBe(1n);
    expect(decodeAnyForm(map(...fields, str('seq'.padEnd(20, '_')), Buffer.from([2]))).seq).toBe(1n);
  });
});

describe("a packet's identity", () => {
  // packetId hashes through the OpenSSL Node exports to addons (native/fspool_sys.c), not
  // node:crypto: both must give the same digest, or journals and receipts written by one would
  // not know packets seen by the other.
  it('is the first 16 bytes of SHA-256 over the encoded header, as node:crypto computes it', () => {
    fc.assert(
      fc.property(headerArb, (h) => {
        expect(packetId(h)).toBe(createHash('sha256').update(encodeHeader(h)).digest('hex').slice(0, 32));
      }),
      params(200),
    );
  });

  it('native sha256 agrees with node:crypto on any bytes, empty and past a block included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        expect(native().sha256(b).toString('hex')).toBe(createHash('sha256').update(b).digest('hex'));
      }),
      params(300),
    );
  });
});

describe('the bytes are the compact MessagePack fspl writes', () => {
  it('every header encodes exactly as a reference rmp-serde encoder would write it', () => {
    // The strongest structural check: fspl 1.2.2 (rmp-serde) writes the smallest integer form
    // (uint for u64 and for non-negative i64, the smallest int form for negative i64), fixstr
    // keys, and every byte string as an array of integers. A float or a bin is refused by fspl.
    fc.assert(
      fc.property(headerArb, (h) => {
        const bytes = encodeHeader(h);
        const meta = refMetadata(h);
        expect(bytes.subarray(PREFIX_LEN).toString('hex')).toBe(meta.toString('hex'));
        expect(bytes.equals(aroundMetadata(meta))).toBe(true);
      }),
      params(200),
    );
  });

  it('seq and ctime integers take their smallest form: one byte below 128, never a float', () => {
    fc.assert(
      fc.property(seqArb, secsArb, nanosArb, (seq, secs, nanos) => {
        const meta = encodeHeader({ seq, ctimeSecs: secs, ctimeNanos: nanos, cmd: { kind: 'NOP' } }).subarray(PREFIX_LEN);
        // 83 a3 's' 'e' 'q' <seq>
        const seqAt = 5;
        const seqBytes = refUint(seq);
        expect(meta[seqAt]).not.toBe(0xcb); // float 64
        expect(meta[seqAt]).not.toBe(0xca); // float 32
        if (seq < 128n) expect(meta[seqAt]).toBe(Number(seq));
        expect([...meta.subarray(seqAt, seqAt + seqBytes.length)]).toEqual(seqBytes);
        // a5 'ctime' 92 <secs> <nanos>
        const secsAt = seqAt + seqBytes.length + 7;
        expect(meta[secsAt - 1]).toBe(0x92);
        expect([...meta.subarray(secsAt, secsAt + refInt(secs).length)]).toEqual(refInt(secs));
        // 25 fixed bytes (map, keys, 92, "NOP") plus the three integers.
        expect(meta.length).toBe(25 + seqBytes.length + refInt(secs).length + refUint(BigInt(nanos)).length);
      }),
      params(400),
    );
  });

  it('seq 2^32 and beyond is written as fspl writes it (cf + 8 bytes), not as a float that fspl refuses', () => {
    // fspl 1.2.2 on a packet with seq 2^32 written as float 64 (cb 41 f0 00 ...):
    //   Error: invalid type: floating point `4294967296`, expected u64
    const cases: Array<[bigint, string]> = [
      [0xffffffffn, 'ceffffffff'],
      [1n << 32n, 'cf0000000100000000'],
      [(1n << 53n) - 1n, 'cf001fffffffffffff'],
      [1n << 53n, 'cf0020000000000000'],
    ];
    for (const [seq, hex] of cases) {
      const meta = encodeHeader({ seq, ctimeSecs: 0n, ctimeNanos: 0, cmd: { kind: 'NOP' } }).subarray(PREFIX_LEN);
      expect(`seq ${seq}: ${meta.subarray(5, 5 + hex.length / 2).toString('hex')}`).toBe(`seq ${seq}: ${hex}`);
    }
  });

  it('ctime seconds beyond 32 bits (either sign) are written as integers, not floats', () => {
    const cases: Array<[bigint, string]> = [
      [1n << 32n, 'cf0000000100000000'],
      [-(1n << 31n), 'd280000000'],
      [-(1n << 31n) - 1n, 'd3ffffffff7fffffff'],
      [-(1n << 40n), 'd3ffffff0000000000'],
    ];
    for (const [secs, hex] of cases) {
      const meta = encodeHeader({ seq: 1n, ctimeSecs: secs, ctimeNanos: 0, cmd: { kind: 'NOP' } }).subarray(PREFIX_LEN);
      // 83 a3 'seq' 01 a5 'ctime' 92 <secs>
      expect(`secs ${secs}: ${meta.subarray(13, 13 + hex.length / 2).toString('hex')}`).toBe(`secs ${secs}: ${hex}`);
    }
  });

  it('byte strings are arrays of integers (fixarray / dc / dd), never bin or str', () => {
    fc.assert(
      fc.property(bytesArb, (b) => {
        const meta = encodeHeader({ seq: 1n, ctimeSecs: 0n, ctimeNanos: 0, cmd: { kind: 'Command', params: [b], env: [] } }).subarray(PREFIX_LEN);
        const at = meta.indexOf(Buffer.from('params', 'latin1')) + 6;
        expect(meta[at]).toBe(0x91); // one param
        const head = refArray(b.length);
        expect([...meta.subarray(at + 1, at + 1 + head.length)]).toEqual(head);
        // Then one integer per byte: positive fixint below 0x80, cc XX above.
        const body: number[] = [];
        refBytes(b, body);
        expect(meta.subarray(at + 1, at + 1 + body.length).equals(Buffer.from(body))).toBe(true);
        expect(meta.subarray(at + 1 + body.length).toString('latin1')).toBe('\xa3env\x90');
      }),
      params(150),
    );
  });

  it('header sizes are fspl\'s: Command without params/env 85, NOP 66, Fail 67 (seq 1, 32-bit time)', () => {
    const t = { seq: 1n, ctimeSecs: 1_795_301_146n, ctimeNanos: 447_393_176 };
    expect(encodeHeader({ ...t, cmd: { kind: 'Command', params: [], env: [] } }).length).toBe(85);
    expect(encodeHeader({ ...t, cmd: { kind: 'NOP' } }).length).toBe(66);
    expect(encodeHeader({ ...t, cmd: { kind: 'Fail' } }).length).toBe(67);
  });

  it('the prefix is magic, version 1, L, CRC(metadata), CRC(bytes 0..25)', () => {
    fc.assert(
      fc.property(smallHeaderArb, (h) => {
        const b = encodeHeader(h);
        expect(b.subarray(0, 12).toString('latin1')).toBe('*FILESPOOLER');
        expect(b.readUInt16BE(12)).toBe(1);
        expect(b.readBigUInt64BE(14)).toBe(BigInt(b.length - PREFIX_LEN));
        expect(b.readUInt32BE(22)).toBe(crc32(b.subarray(PREFIX_LEN)));
        expect(b.readUInt32BE(26)).toBe(crc32(b.subarray(0, 26)));
      }),
      params(200),
    );
  });
});

describe('HeaderReader', () => {
  /** Split `buf` at the given cut points (any order, duplicates give empty chunks). */
  const chunked = (buf: Buffer, cuts: number[]): Buffer[] => {
    const at = [0, ...cuts.map((c) => c % (buf.length + 1)).sort((a, b) => a - b), buf.length];
    return at.slice(1).map((end, i) => buf.subarray(at[i]!, end));
  };

  it('fed the bytes in any chunking, gives the same header and exactly the bytes after it', () => {
    fc.assert(
      fc.property(
        fc.oneof({ arbitrary: smallHeaderArb, weight: 19 }, { arbitrary: headerArb, weight: 1 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (h, payload, cuts) => {
          const head = encodeHeader(h);
          const all = Buffer.concat([head, payload]);
          const r = new HeaderReader();
          let doneAt = -1;
          let pushed = 0;
          for (const c of chunked(all, cuts)) {
            const complete = r.push(c);
            pushed += c.length;
            if (complete && doneAt < 0) doneAt = pushed;
            if (!complete) expect(r.needed).toBe((r.headerLength ?? PREFIX_LEN) - pushed);
          }
          expect(doneAt).toBeGreaterThanOrEqual(head.length);
          expectSameHeader(r.header, h);
          expect(r.headerLength).toBe(head.length);
          expect(r.needed).toBe(0);
          expect(Buffer.from(r.rest).equals(Buffer.from(payload))).toBe(true);
        },
      ),
      params(300),
    );
  });

  it('read `needed` bytes at a time (or fewer), it never takes a byte past the header', () => {
    fc.assert(
      fc.property(smallHeaderArb, fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }), (h, sizes) => {
        const head = encodeHeader(h);
        const r = new HeaderReader();
        let off = 0;
        for (let i = 0; r.needed > 0; i++) {
          const n = Math.min(r.needed, sizes[i % sizes.length]!);
          r.push(head.subarray(off, off + n));
          off += n;
        }
        expect(off).toBe(head.length);
        expect(r.rest.length).toBe(0);
        expectSameHeader(r.header, h);
      }),
      params(300),
    );
  });
});

describe('bad input', () => {
  it('every truncation of a valid header is a PacketError, for decodeHeader and HeaderReader alike', () => {
    fc.assert(
      fc.property(smallHeaderArb, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), (h, frac) => {
        const head = encodeHeader(h);
        const n = Math.floor(frac * head.length);
        const cut = head.subarray(0, n);
        const v = onlyPacketError(() => decodeHeader(cut));
        expect(v.ok).toBe(false);
        const r = new HeaderReader();
        expect(r.push(cut)).toBe(false);
        expect(r.header).toBeUndefined();
        expect(r.endError()).toBeInstanceOf(PacketError);
        expect(r.endError().message).toMatch(/^(truncated header|empty input|not a filespooler packet)/);
      }),
      params(500),
    );
  });

  it('random bytes: only PacketError, one line, fast', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (a) => {
        onlyPacketError(() => decodeHeader(a));
        const r = new HeaderReader();
        const v = onlyPacketError(() => r.push(Buffer.from(a)));
        if (v.ok && !r.header) expect(r.endError()).toBeInstanceOf(PacketError);
      }),
      params(500),
    );
  });

  it('random metadata behind a valid prefix (both CRCs right): only PacketError, fast', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (meta) => {
        const v = onlyPacketError(() => decodeHeader(aroundMetadata(meta)));
        // What decodes is a header fspool can write back and read again, unchanged.
        if (v.ok) {
          const h = decodeHeader(aroundMetadata(meta)).header;
          expect(decodeHeader(encodeHeader(h)).header).toEqual(h);
        }
      }),
      params(1000),
    );
  });

  it('any MessagePack value as metadata (both CRCs right): a valid Header or a PacketError', async () => {
    const { Encoder } = await import('@msgpack/msgpack');
    const enc = new Encoder({ useBigInt64: true });
    // Values shaped like a header, with each field replaced by anything at all.
    const anything = fc.anything({
      maxDepth: 3,
      maxKeys: 4,
      withBigInt: true,
      withTypedArray: true,
      withDate: true,
      values: [fc.bigInt({ min: I64_MIN, max: U64_MAX }), fc.integer(), fc.double(), fc.string(), fc.constant(null), fc.boolean(), fc.integer({ min: 0, max: 255 })],
    });
    const field = fc.oneof(anything, seqArb, fc.tuple(secsArb, nanosArb), fc.constantFrom('NOP', 'Fail', 'Command', 'X'));
    const shaped = fc.oneof(
      fc.record({ seq: field, ctime: field, cmd_type: field }, { requiredKeys: [] }),
      fc.tuple(field, field, field),
      fc.record({ seq: seqArb, ctime: fc.tuple(secsArb, nanosArb), cmd_type: fc.oneof(anything, fc.record({ Command: fc.oneof(anything, fc.record({ params: anything, env: anything })) })) }),
      anything,
    );
    fc.assert(
      fc.property(shaped, (value) => {
        let meta: Uint8Array;
        try {
          meta = enc.encode(value);
        } catch {
          return; // not encodable (e.g. a bigint beyond 64 bits): nothing to test
        }
        let header: Header | undefined;
        const v = onlyPacketError(() => {
          header = decodeHeader(aroundMetadata(meta)).header;
        });
        if (v.ok) {
          const h = header!;
          expect(h.seq >= 0n && h.seq <= U64_MAX).toBe(true);
          expect(h.ctimeSecs >= I64_MIN && h.ctimeSecs <= I64_MAX).toBe(true);
          expect(Number.isInteger(h.ctimeNanos) && h.ctimeNanos >= 0 && h.ctimeNanos < 1e9).toBe(true);
          expect(['NOP', 'Fail', 'Command']).toContain(h.cmd.kind);
        }
      }),
      params(1000),
    );
  });

  it('MessagePack container headers that claim more elements than bytes remain: refused without allocating the claim', () => {
    // Metadata built from container headers (array16/32, map16/32, fixarray) with arbitrary
    // counts, and a few other bytes. An element needs at least one byte, so no valid metadata
    // of n bytes holds a container of more than n elements: a decoder has no reason to
    // allocate more than the metadata's own size (plus what a header legitimately holds).
    const token = fc.oneof(
      fc.integer({ min: 0, max: 0xffff }).map((n) => [0xdc, n >> 8, n & 0xff]),
      fc.oneof(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.constantFrom(2 ** 24, 2 ** 25, 2 ** 25 + 1, 99_999, 2 ** 32 - 1)).map((n) => [0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((n) => [0xdf, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]),
      fc.integer({ min: 0, max: 15 }).map((n) => [0x90 | n]),
      fc.integer({ min: 0, max: 255 }).map((b) => [b]),
    );
    fc.assert(
      fc.property(fc.array(token, { minLength: 1, maxLength: 12 }), (tokens) => {
        const meta = Uint8Array.from(tokens.flat());
        const before = process.memoryUsage();
        onlyPacketError(() => decodeHeader(aroundMetadata(meta)));
        const after = process.memoryUsage();
        const grew = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers;
        expect(grew, `decoding ${meta.length} bytes of metadata (${Buffer.from(meta).toString('hex')}) allocated ${(grew / 2 ** 20).toFixed(0)} MiB`).toBeLessThan(16 * 2 ** 20);
      }),
      params(300),
    );
  });

  it('a metadata length beyond the bound or the bytes present is refused without reading or allocating it', () => {
    fc.assert(
      fc.property(smallHeaderArb, fc.oneof(fc.bigInt({ min: BigInt(MAX_METADATA_LEN) + 1n, max: U64_MAX }), fc.constantFrom(1n << 40n, U64_MAX, BigInt(MAX_METADATA_LEN) + 1n)), (h, lie) => {
        const meta = encodeHeader(h).subarray(PREFIX_LEN);
        const t0 = performance.now();
        const v = onlyPacketError(() => decodeHeader(aroundMetadata(meta, undefined, lie)), 500);
        expect(v.error?.message).toMatch(/exceeds the limit of 16777216 bytes/);
        const r = new HeaderReader();
        expect(() => r.push(aroundMetadata(meta, undefined, lie))).toThrow(PacketError);
        expect(performance.now() - t0).toBeLessThan(500);
      }),
      params(200),
    );
  });
});
