// What queue-ls shows of a queue: each job file's seq and creation time, kept by the file's
// index in its JobDir in typed arrays, not in an object per job. A listing of 10,000 jobs
// then holds their names and a few arrays: its memory does not grow by a scan's worth of
// objects per job, and the garbage collector has almost nothing to copy.
import type { Header } from '../packet/header.js';
import type { JobDir } from './jobfile.js';

/** What a listing needs of a header: its seq and creation time, not its command. */
export type Stamp = Pick<Header, 'seq' | 'ctimeSecs' | 'ctimeNanos'>;

export class Listing {
  private readonly seqs: BigUint64Array;
  /** seq as a double: exact below 2^53, so sorting compares numbers, not BigInts, unless two are equal. */
  private readonly approx: Float64Array;
  private readonly secs: BigInt64Array;
  private readonly nanos: Uint32Array;
  private readonly known: Uint8Array;
  private readonly errors = new Map<number, string>();

  constructor(readonly dir: JobDir) {
    const n = dir.length;
    this.seqs = new BigUint64Array(n);
    this.approx = new Float64Array(n);
    this.secs = new BigInt64Array(n);
    this.nanos = new Uint32Array(n);
    this.known = new Uint8Array(n);
  }

  /** The i-th file's header says this (a seq is a u64, a ctime an i64, as the packet format has them). */
  set(i: number, seq: bigint, ctimeSecs: bigint, ctimeNanos: number): void {
    this.seqs[i] = seq;
    this.approx[i] = Number(seq);
    this.secs[i] = ctimeSecs;
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

  stamp(i: number): Stamp | undefined {
    return this.known[i] ? { seq: this.seqs[i]!, ctimeSecs: this.secs[i]!, ctimeNanos: this.nanos[i]! } : undefined;
  }

  /** The files that could not be read, with why, in name order. */
  unreadable(): Array<{ path: string; error: string }> {
    return [...this.errors].sort(([a], [b]) => a - b).map(([i, error]) => ({ path: this.path(i), error }));
  }

  /** The indices of the readable files, by seq, then name (fspl's order). */
  bySeq(): Int32Array {
    const { approx, seqs, known } = this;
    const n = known.length;
    let count = 0;
    let max = 0;
    for (let i = 0; i < n; i++) {
      if (!known[i]) continue;
      count++;
      if (approx[i]! > max) max = approx[i]!;
    }
    // Names are sorted already (JobDir): equal seqs stay in name order by index. Seqs below
    // 2^32 (any queue but a very odd one) and indices below 2^20 fit one double exactly as
    // seq * 2^20 + index, which a typed array sorts natively, 20 times faster than the
    // comparator below.
    const out = new Int32Array(count);
    if (max < 2 ** 32 && n <= 2 ** 20) {
      const keys = new Float64Array(count);
      for (let i = 0, k = 0; i < n; i++) if (known[i]) keys[k++] = approx[i]! * 2 ** 20 + i;
      keys.sort();
      for (let k = 0; k < count; k++) out[k] = keys[k]! % 2 ** 20;
      return out;
    }
    const order: number[] = [];
    for (let i = 0; i < n; i++) if (known[i]) order.push(i);
    order.sort((a, b) => approx[a]! - approx[b]! || (seqs[a]! < seqs[b]! ? -1 : seqs[a]! > seqs[b]! ? 1 : a - b));
    out.set(order);
    return out;
  }
}
