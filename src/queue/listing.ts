// What queue-ls shows of a queue: each job file's seq and creation time, kept by the file's
// index in its JobDir in typed arrays, not in an object per job. A listing of 10,000 jobs
// then holds their names and a few arrays: its memory does not grow by a scan's worth of
// objects per job, and the garbage collector has almost nothing to copy.
//
// Numbers are doubles, not BigInts: reading a BigInt64Array element makes a new BigInt, which
// cost more than the rest of a listing's loop (1-3 µs each, measured). A seq (u64) or ctime
// (i64) that a double cannot hold exactly (2^53 and beyond: no clock, and no queue but a very
// odd one) is kept exactly beside, as a BigInt.
import type { JobDir } from './jobfile.js';

const EXACT = 2 ** 53;

export class Listing {
  /** seq, exact below 2^53; `bigSeqs` has the exact value above. */
  private readonly seqs: Float64Array;
  private readonly secs: Float64Array;
  private readonly nanos: Uint32Array;
  private readonly known: Uint8Array;
  private readonly bigSeqs = new Map<number, bigint>();
  private readonly bigSecs = new Map<number, bigint>();
  private readonly errors = new Map<number, string>();

  constructor(readonly dir: JobDir) {
    const n = dir.length;
    this.seqs = new Float64Array(n);
    this.secs = new Float64Array(n);
    this.nanos = new Uint32Array(n);
    this.known = new Uint8Array(n);
  }

  /**
   * The i-th file's header says this (a seq is a u64, a ctime an i64, as the packet format has
   * them), as BigInts or as the decimal text the header cache keeps.
   */
  set(i: number, seq: bigint | string, ctimeSecs: bigint | string, ctimeNanos: number): void {
    const q = Number(seq);
    this.seqs[i] = q;
    if (q >= EXACT) this.bigSeqs.set(i, BigInt(seq));
    const s = Number(ctimeSecs);
    this.secs[i] = s;
    if (Math.abs(s) >= EXACT) this.bigSecs.set(i, BigInt(ctimeSecs));
    this.nanos[i] = ctimeNanos;
    this.known[i] = 1;
  }

  /** The i-th file could not be read, for this reason (one line). */
  fail(i: number, error: string): void {
    this.errors.set(i, error);
  }

  /** The i-th name (decoded at each call). */
  name(i: number): string {
    return this.dir.name(i);
  }

  path(i: number): string {
    return `${this.dir.path}/${this.dir.name(i)}`;
  }

  /** The i-th seq in decimal, as String(bigint) gives it. Only for a file that `set` was called for. */
  seqText(i: number): string {
    return this.bigSeqs.get(i)?.toString() ?? String(this.seqs[i]);
  }

  /** The i-th ctime's seconds: a number where exact, else the BigInt. */
  ctimeSecs(i: number): number | bigint {
    return this.bigSecs.get(i) ?? this.secs[i]!;
  }

  /** The files that could not be read, with why, in name order. */
  unreadable(): Array<{ path: string; error: string }> {
    return [...this.errors].sort(([a], [b]) => a - b).map(([i, error]) => ({ path: this.path(i), error }));
  }

  /** The indices of the readable files, by seq, then name (fspl's order). */
  bySeq(): Int32Array {
    const { seqs, known, bigSeqs } = this;
    const n = known.length;
    let count = 0;
    let max = 0;
    for (let i = 0; i < n; i++) {
      if (!known[i]) continue;
      count++;
      if (seqs[i]! > max) max = seqs[i]!;
    }
    // Names are sorted already (JobDir): equal seqs stay in name order by index. Seqs below
    // 2^32 (any queue but a very odd one) and indices below 2^20 fit one double exactly as
    // seq * 2^20 + index, which a typed array sorts natively, 20 times faster than the
    // comparator below.
    const out = new Int32Array(count);
    if (max < 2 ** 32 && n <= 2 ** 20) {
      const keys = new Float64Array(count);
      for (let i = 0, k = 0; i < n; i++) if (known[i]) keys[k++] = seqs[i]! * 2 ** 20 + i;
      keys.sort();
      for (let k = 0; k < count; k++) out[k] = keys[k]! % 2 ** 20;
      return out;
    }
    const exact = (i: number) => bigSeqs.get(i) ?? BigInt(seqs[i]!);
    const order: number[] = [];
    for (let i = 0; i < n; i++) if (known[i]) order.push(i);
    order.sort((a, b) => {
      if (seqs[a]! !== seqs[b]!) return seqs[a]! - seqs[b]!;
      const x = exact(a);
      const y = exact(b);
      return x < y ? -1 : x > y ? 1 : a - b;
    });
    out.set(order);
    return out;
  }
}
