// The metadata in the one form fspl and fspool write it, read in one pass.
//
// fspl writes every byte string as an array of integers, one per byte, so a header near the 16
// MiB bound is millions of MessagePack objects. Decoded by the library and then made into
// buffers, such a header held a processor's main thread for seconds, once per file, and anyone
// who may write jobs/ can drop such files; under `serve` that stalls every queue. Read here, it
// is one loop over the bytes.
//
// Only the exact form MetaWriter (codec.ts) writes is read: a map of seq, ctime, cmd_type (and
// fspool_stream, last) with str keys in that order, every integer and length in its shortest
// form, a byte below 128 as itself and one above after 0xcc, and nothing after the map. Any
// other byte, in any place, gives null, and the general reader (the shape walk, then the
// library) decides, with its errors. So for every metadata read here the header is the one the
// general reader gives, and encoding it gives back the same bytes (test/property.test.ts checks
// both on generated and mutated headers, and test/packet.test.ts on the packets fspl wrote).
import { type CmdType, type Header, I64_MAX } from './header.js';
import { MAX_OBJECTS } from './msgpackShape.js';
import { asciiRun, latin1, readBE } from './msgpackTypes.js';

const key = (s: string) => Uint8Array.from([0xa0 | s.length, ...Buffer.from(s, 'latin1')]);
const SEQ = key('seq');
const CTIME = key('ctime');
const CMD_TYPE = key('cmd_type');
const COMMAND = key('Command');
const PARAMS = key('params');
const ENV = key('env');
const NOP = key('NOP');
const FAIL = key('Fail');
/** `fspool_stream`, then its value's str8 marker for 32 bytes (32 is one too many for a fixstr). */
const STREAM = Uint8Array.from([...key('fspool_stream'), 0xd9, 32]);

/** Thrown inside the reader for "not the canonical form"; never leaves this file. */
const NOT_CANONICAL = Symbol('not canonical');

class Cursor {
  at = 0;
  objects = 0;
  constructor(readonly b: Uint8Array) {}

  fail(): never {
    throw NOT_CANONICAL;
  }

  /** A container or string: counted, as the shape walk counts them. */
  object(): void {
    if (++this.objects > MAX_OBJECTS) this.fail();
  }

  /** n entries of `each` objects to come: n, if they stay within the bound. */
  owing(n: number, each: number): number {
    if (this.objects + n * each > MAX_OBJECTS) this.fail();
    return n;
  }

  is(bytes: Uint8Array): boolean {
    const b = this.b;
    if (this.at + bytes.length > b.length) return false;
    for (let i = 0; i < bytes.length; i++) if (b[this.at + i] !== bytes[i]) return false;
    this.at += bytes.length;
    return true;
  }

  expect(bytes: Uint8Array): void {
    if (!this.is(bytes)) this.fail();
    this.object();
  }

  byte(): number {
    if (this.at >= this.b.length) this.fail();
    return this.b[this.at++]!;
  }

  /** A big-endian unsigned integer of n bytes, below 2^53 (n ≤ 4) or as a BigInt. */
  be(n: number): number {
    if (this.at + n > this.b.length) this.fail();
    this.at += n;
    return readBE(this.b, this.at - n, n);
  }

  /** An integer ≥ 0 in its shortest form. */
  uint(): bigint {
    const t = this.byte();
    if (t < 0x80) return BigInt(t);
    const width = t === 0xcc ? 1 : t === 0xcd ? 2 : t === 0xce ? 4 : t === 0xcf ? 8 : this.fail();
    const v = width === 8 ? (BigInt(this.be(4)) << 32n) | BigInt(this.be(4)) : BigInt(this.be(width));
    // The shortest form: the next narrower one could not hold it.
    if (v < (width === 1 ? 0x80n : 1n << BigInt(4 * width))) this.fail();
    return v;
  }

  /** An array's length in its shortest form, no more than the bytes left (each element takes one). */
  array(): number {
    const t = this.byte();
    let n: number;
    if (t >= 0x90 && t <= 0x9f) n = t & 0x0f;
    else if (t === 0xdc) {
      n = this.be(2);
      if (n < 16) this.fail();
    } else if (t === 0xdd) {
      n = this.be(4);
      if (n < 0x10000) this.fail();
    } else this.fail();
    if (n > this.b.length - this.at) this.fail();
    this.object();
    return n;
  }

  /** A byte string: an array of integers 0..255, each in its shortest form. */
  bytes(): Buffer {
    const n = this.array();
    const b = this.b;
    // Bytes below 128 are themselves: a run of them is a copy (what a long one costs where the
    // loop below is not optimized, as in a listing: 16 MiB took ~1 s).
    if (asciiRun(b, this.at, n)) {
      const out = Buffer.allocUnsafe(n);
      out.set(b.subarray(this.at, this.at + n));
      this.at += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let at = this.at;
    for (let i = 0; i < n; i++) {
      if (at >= b.length) this.fail();
      const x = b[at++]!;
      if (x < 0x80) out[i] = x;
      else if (x === 0xcc && at < b.length && b[at]! >= 0x80) out[i] = b[at++]!;
      else this.fail();
    }
    this.at = at;
    return out;
  }
}

/**
 * The header, if `meta` is in the canonical form; null if it is not (which says nothing about
 * whether it is valid: the general reader decides that).
 */
export function readCanonical(meta: Uint8Array): Header | null {
  try {
    return read(new Cursor(meta));
  } catch (e) {
    if (e === NOT_CANONICAL) return null;
    throw e;
  }
}

function read(c: Cursor): Header {
  const top = c.byte();
  if (top !== 0x83 && top !== 0x84) c.fail();
  c.object();
  c.expect(SEQ);
  const seq = c.uint();
  c.expect(CTIME);
  if (c.byte() !== 0x92) c.fail();
  c.object();
  // fspool writes a non-negative time in the unsigned forms, as fspl does; a time before 1970
  // (a negative integer) is left to the general reader.
  const ctimeSecs = c.uint();
  const nanos = c.uint();
  if (ctimeSecs > I64_MAX || nanos >= 1_000_000_000n) c.fail();
  c.expect(CMD_TYPE);
  const cmd = cmdType(c);
  const header: Header = { seq, ctimeSecs, ctimeNanos: Number(nanos), cmd };
  if (top === 0x84) {
    c.expect(STREAM);
    c.object();
    if (c.at + 32 > c.b.length) c.fail();
    for (let i = 0; i < 32; i++) {
      const x = c.b[c.at + i]!;
      if (!((x >= 0x30 && x <= 0x39) || (x >= 0x61 && x <= 0x66))) c.fail();
    }
    header.stream = latin1(c.b, c.at, 32);
    c.at += 32;
  }
  if (c.at !== c.b.length) c.fail();
  return header;
}

function cmdType(c: Cursor): CmdType {
  if (c.is(NOP)) {
    c.object();
    return { kind: 'NOP' };
  }
  if (c.is(FAIL)) {
    c.object();
    return { kind: 'Fail' };
  }
  if (c.byte() !== 0x81) c.fail();
  c.object();
  c.expect(COMMAND);
  if (c.byte() !== 0x82) c.fail();
  c.object();
  c.expect(PARAMS);
  const params: Buffer[] = [];
  // Over the bound, a header is refused (by the general reader): said before anything is made.
  for (let n = c.owing(c.array(), 1); n > 0; n--) params.push(c.bytes());
  c.expect(ENV);
  const env: Array<[Buffer, Buffer]> = [];
  for (let n = c.owing(c.array(), 3); n > 0; n--) {
    if (c.byte() !== 0x92) c.fail();
    c.object();
    env.push([c.bytes(), c.bytes()]);
  }
  return { kind: 'Command', params, env };
}
