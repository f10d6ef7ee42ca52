// The metadata as the MessagePack library is given it, in any form but the canonical one
// (canonical.ts reads that). The library decodes one element at a time, and anyone who may
// write jobs/ chooses the form: a header near the 16 MiB bound took seconds of a processor's
// main thread. So, before the library sees the metadata, two things are rewritten:
//
// - Byte strings in one piece. fspl writes a byte string as an array of integers, one per
//   byte. Every array in the place of a param, an env name or an env value (where the header's
//   reader makes bytes of what it finds: codec.ts, cmdFrom) whose elements are all integers from
//   0 to 255, in whatever integer form, is written as an extension object of type RUN_TYPE
//   holding those bytes; the decoder gives it back as a ByteRun, which the reader takes as those
//   bytes. An extension of type RUN_TYPE that was in the metadata becomes one of OTHER_TYPE (the
//   reader makes nothing of any extension's type, it only is not an array).
// - What the reader never looks at, left out: the entries of the metadata's map and of the
//   Command body's whose key names none of the struct's fields (fspl ignores them; millions of
//   distinct keys made the library build an object of millions of properties), and anything
//   but a str or a bin under fspool_stream, which is read only as one (it becomes nil). Such an
//   entry cannot make the header wrong to fspl (serde skips it unread), and now not to fspool
//   either: the library refused some of them (a timestamp extension of a size it does not know).
//
// Only the first object is written (the library ignores what follows it). So the header is the
// one the library would have given, and the error too unless the library refused what fspl
// skips (test/property.test.ts compares them).
//
// The walk runs after checkShape (msgpackShape.ts) has passed the metadata: its lengths are
// true, so it only steps over what it does not rewrite, without checking, and without recursion
// where an attacker chooses the depth.
import { asciiRun, COUNTED, FIXED, isFixext, latin1, readBE, SIZED } from './msgpackTypes.js';
import { STREAM_KEY } from './header.js';

/** The extension type of a run of bytes, and what one that came with the metadata becomes. */
export const RUN_TYPE = 0x62;
const OTHER_TYPE = 0x63;

/** Arrays shorter than this are left to the library: as quick, and no copy. */
const MIN_RUN = 64;

/** A byte string written as a run: a view of the rewritten metadata. */
export class ByteRun {
  constructor(readonly bytes: Uint8Array) {}
}

const NIL = Uint8Array.of(0xc0);

/** A map's head for n entries, in the shortest form (the library reads any). */
const mapHead = (n: number) => (n <= 0x0f ? Uint8Array.of(0x80 | n) : n <= 0xffff ? Uint8Array.of(0xde, n >> 8, n & 0xff) : Uint8Array.of(0xdf, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff));

class Walk {
  /** Pieces of the output, in order: the input's bytes between rewrites, and the rewrites. */
  private readonly out: Uint8Array[] = [];
  /** Where the input has not been written out yet. */
  private from = 0;
  /** Runs made, entries left out, values made nil: whether the output differs from the input. */
  changes = 0;

  constructor(
    private readonly b: Uint8Array,
    private readonly wanted: Rewrites,
  ) {}

  /** A container at `at`: [elements, where they start], or undefined if it is none. */
  private container(at: number): { map: boolean; n: number; start: number } | undefined {
    const t = this.b[at]!;
    if (t >= 0x80 && t <= 0x8f) return { map: true, n: t & 0x0f, start: at + 1 };
    if (t >= 0x90 && t <= 0x9f) return { map: false, n: t & 0x0f, start: at + 1 };
    const counted = COUNTED[t];
    if (counted === undefined) return undefined;
    const [w, map] = counted;
    return { map, n: readBE(this.b, at + 1, w), start: at + 1 + w };
  }

  /**
   * The end of the object at `at`, stepping over it (without recursion); an extension of
   * RUN_TYPE in it is retyped, unless `retype` is false (for what is not written out).
   */
  skip(at: number, retype = true): number {
    const b = this.b;
    let owed = 1;
    while (owed > 0) {
      const t = b[at]!;
      owed--;
      // One-byte scalars first (fixints, nil, booleans): a walk over millions of them goes no further.
      if (t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3)) at += 1;
      else if (t <= 0x8f) {
        owed += (t & 0x0f) * 2;
        at += 1;
      } else if (t <= 0x9f) {
        owed += t & 0x0f;
        at += 1;
      } else if (t <= 0xbf) at += 1 + (t & 0x1f);
      else if (FIXED[t] !== undefined) {
        if (retype && isFixext(t)) this.retype(at + 1);
        at += 1 + FIXED[t];
      } else if (SIZED[t] !== undefined) {
        const [w, ext] = SIZED[t];
        if (retype && ext) this.retype(at + 1 + w);
        at += 1 + w + (ext ? 1 : 0) + readBE(b, at + 1, w);
      } else {
        const c = this.container(at)!;
        owed += c.map ? 2 * c.n : c.n;
        at = c.start;
      }
    }
    return at;
  }

  private retype(typeAt: number): void {
    if (this.b[typeAt] !== RUN_TYPE) return;
    this.flush(typeAt);
    this.out.push(Uint8Array.of(OTHER_TYPE));
    this.from = typeAt + 1;
  }

  private flush(to: number): void {
    if (to > this.from) this.out.push(this.b.subarray(this.from, to));
    this.from = to;
  }

  /** Whether the object at `at` is a str or a bin. */
  private isText(at: number): boolean {
    const t = this.b[at]!;
    return (t >= 0xa0 && t <= 0xbf) || (SIZED[t] !== undefined && !SIZED[t][1]);
  }

  /** The value of the key at `at`, as the header's reader takes a field's name or number: its bytes as latin1, or the number. */
  private keyOf(at: number): string | number | undefined {
    const b = this.b;
    const t = b[at]!;
    if (t <= 0x7f) return t;
    if (t === 0xcc || t === 0xcd || t === 0xce || t === 0xcf) {
      const w = FIXED[t]!;
      return w === 8 && readBE(b, at + 1, 4) !== 0 ? undefined : readBE(b, at + 1 + (w === 8 ? 4 : 0), w === 8 ? 4 : w);
    }
    let len: number;
    let start: number;
    if (t >= 0xa0 && t <= 0xbf) [len, start] = [t & 0x1f, at + 1];
    else if (SIZED[t] !== undefined && !SIZED[t][1]) [len, start] = [readBE(b, at + 1, SIZED[t][0]), at + 1 + SIZED[t][0]];
    else return undefined;
    return latin1(b, start, len);
  }

  /**
   * A struct's fields, as the header's reader finds them: `visit(field, at)` for each value
   * whose field is one of `names` (by name or number in a map, by place in an array of exactly
   * as many). In a map, an entry whose key names none of them is left out, but one keyed
   * `string` (a field of fspool's, read only as a str or a bin) keeps such a value and has any
   * other made nil. Returns the end of the container.
   */
  private fields(at: number, names: readonly string[], visit: (field: string, at: number) => number, string?: string): number {
    const c = this.container(at);
    if (!c) return this.skip(at);
    let p = c.start;
    if (!c.map) {
      const positional = c.n === names.length;
      for (let i = 0; i < c.n; i++) p = positional ? visit(names[i]!, p) : this.skip(p);
      return p;
    }
    // The map's head, written again at the end if entries were left out.
    this.flush(at);
    const head = this.out.push(this.b.subarray(at, c.start)) - 1;
    this.from = c.start;
    let kept = 0;
    for (let i = 0; i < c.n; i++) {
      const entry = p;
      const k = this.keyOf(p);
      // A key is a name or a number (checkShape refused any other), nothing to retype.
      p = this.skip(p, false);
      const field = typeof k === 'number' ? names[k] : names.includes(k ?? '') ? k : undefined;
      kept++;
      if (field !== undefined) p = visit(field, p);
      else if (!this.wanted.drop) p = this.skip(p);
      else if (k === string && string !== undefined) p = this.isText(p) ? this.skip(p) : this.replace(p, NIL, this.skip(p, false));
      else {
        p = this.skip(p, false);
        this.flush(entry);
        this.from = p;
        this.changes++;
        kept--;
      }
    }
    if (kept < c.n) this.out[head] = mapHead(kept);
    return p;
  }

  /** The metadata: its cmd_type. */
  metadata(at: number): number {
    return this.fields(at, ['seq', 'ctime', 'cmd_type'], (f, p) => (f === 'cmd_type' ? this.cmdType(p) : this.skip(p)), STREAM_KEY);
  }

  /** cmd_type: a map of one entry naming Command (by name or number 0) holds its body. */
  private cmdType(at: number): number {
    const c = this.container(at);
    if (!c || !c.map || c.n !== 1) return this.skip(at);
    const k = this.keyOf(c.start);
    const p = this.skip(c.start);
    return k === 'Command' || k === 0 ? this.command(p) : this.skip(p);
  }

  private command(at: number): number {
    return this.fields(at, ['params', 'env'], (f, p) => (f === 'params' ? this.each(p, (q) => this.bytes(q)) : this.each(p, (q) => this.pair(q))));
  }

  /** An array's elements, each visited; anything else stepped over. */
  private each(at: number, visit: (at: number) => number): number {
    const c = this.container(at);
    if (!c || c.map) return this.skip(at);
    let p = c.start;
    for (let i = 0; i < c.n; i++) p = visit(p);
    return p;
  }

  /** An env entry: only an array of two is a name and a value. */
  private pair(at: number): number {
    const c = this.container(at);
    if (!c || c.map || c.n !== 2) return this.skip(at);
    return this.bytes(this.bytes(c.start));
  }

  /** Where the reader makes bytes: an array of integers 0..255 becomes a run. */
  private bytes(at: number): number {
    const c = this.container(at);
    if (!this.wanted.runs || !c || c.map || c.n < MIN_RUN) return this.skip(at);
    const b = this.b;
    // Bytes below 128 are themselves (as fspl writes them): then the run is those very bytes.
    if (asciiRun(b, c.start, c.n)) return this.rewrite(at, c.n, b.subarray(c.start, c.start + c.n), c.start + c.n);
    const run = Buffer.allocUnsafe(c.n);
    let p = c.start;
    for (let i = 0; i < c.n; i++) {
      const t = b[p]!;
      let v: number;
      if (t <= 0x7f) {
        v = t;
        p += 1;
      } else if (t === 0xcc || t === 0xd0) {
        v = b[p + 1]!;
        if (t === 0xd0 && v > 0x7f) return this.skip(at);
        p += 2;
      } else if (t === 0xcd || t === 0xce || t === 0xcf || t === 0xd1 || t === 0xd2 || t === 0xd3) {
        const w = FIXED[t]!;
        // 0..255 in a wider form: every byte zero but the last (the signed forms' sign bit too).
        for (let k = 1; k < w; k++) if (b[p + k] !== 0) return this.skip(at);
        v = b[p + w]!;
        p += 1 + w;
      } else return this.skip(at);
      run[i] = v;
    }
    return this.rewrite(at, c.n, run, p);
  }

  /** The array from `at` to `end` written as a run of `bytes`. */
  private rewrite(at: number, n: number, bytes: Uint8Array, end: number): number {
    const head = n <= 0xff ? [0xc7, n, RUN_TYPE] : n <= 0xffff ? [0xc8, n >> 8, n & 0xff, RUN_TYPE] : [0xc9, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff, RUN_TYPE];
    this.replace(at, Uint8Array.from(head), end);
    this.out.push(bytes);
    return end;
  }

  /** The input from `at` to `end` written as `by`. */
  private replace(at: number, by: Uint8Array, end: number): number {
    this.flush(at);
    this.out.push(by);
    this.from = end;
    this.changes++;
    return end;
  }

  /** The first object as rewritten. */
  done(end: number): Buffer {
    this.flush(end);
    return Buffer.concat(this.out);
  }
}

/** What is rewritten: both, but for the tests that compare the library's reading without either. */
export interface Rewrites {
  /** Byte strings as runs. */
  runs: boolean;
  /** What the reader never looks at, left out. */
  drop: boolean;
}

/**
 * The metadata's first object as the library is to be given it: its byte strings as runs,
 * without what the reader never looks at; undefined when that is the metadata as it is.
 * `meta` must have passed checkShape.
 */
export function forLibrary(meta: Uint8Array, rewrite: Rewrites = { runs: true, drop: true }): Buffer | undefined {
  const w = new Walk(meta, rewrite);
  const end = w.metadata(0);
  return w.changes > 0 ? w.done(end) : undefined;
}
