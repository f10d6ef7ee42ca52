// What a run knows of a queue's jobs/: every file's header, read once per file and run (not
// once per job), the readable ones by seq so that finding the due job is O(1), and the files
// that could not be read or did not prove a required signature, reported once each.
import type { DecodeContext } from '../codec/decode.js';
import { type FileIdentity, type JobDir, sameIdentity } from './jobfile.js';
import type { Queue, ScannedJob } from './queue.js';

/** A job file whose header was read. */
export type Readable = ScannedJob & { header: NonNullable<ScannedJob['header']> };
export const readable = (j: ScannedJob): j is Readable => j.header !== undefined;

/** What a run knows of jobs/: headers are read once per file and run, not once per job. */
export class JobIndex {
  private readonly byName = new Map<string, ScannedJob>();
  /**
   * The readable jobs by seq, in the order they were seen: finding the due job is O(1), and so
   * is forgetting one of many copies (hard links cost whoever may write jobs/ nothing).
   */
  private readonly bySeq = new Map<bigint, Set<Readable>>();

  constructor(
    private readonly queue: Queue,
    private readonly decode: DecodeContext,
  ) {}

  /** Why each unreadable file was last reported, so that a watch does not repeat itself. */
  private readonly reported = new Map<string, string>();
  /**
   * Files that failed a required signature, by name, with the identity that failed and why: a
   * header that cannot be trusted makes no job, and reading it again at every look changes
   * nothing until the file itself changes.
   */
  /** `lasting` false: --timeout cut the verification short; trustAgain() lets it be tried again. */
  private readonly distrusted = new Map<string, { identity?: FileIdentity; reason: string; lasting: boolean }>();
  /**
   * The refusals said, by name: a file whose verification is tried again (trustAgain) and fails
   * the same way is not news, for as long as it stays the same file.
   */
  private readonly refusalsSaid = new Map<string, { identity?: FileIdentity; error: string }>();
  /** Job files of the last look whose names are not UTF-8: unreadable, apart from the others. */
  private unnamed: ScannedJob[] = [];

  /**
   * Read the headers of files that appeared since the last look, and again of those that could
   * not be read last time (a decoder that failed once, a key added since); forget vanished ones.
   * Returns what was read, with the unreadable only where the reason is new. `dir`: jobs/ as
   * the caller has just read it, else read here.
   */
  async refresh(dir: JobDir = this.queue.jobDir()): Promise<ScannedJob[]> {
    this.unnamed = this.queue.unnamedJobs(dir);
    const present = new Set(dir.names);
    for (const n of this.byName.keys()) if (!present.has(n) || this.byName.get(n)!.error) this.forget(n);
    const complete = this.byName.size === 0; // a first look lets the header cache prune
    const which: number[] = [];
    dir.names.forEach((n, i) => this.byName.has(n) || which.push(i));
    const fresh = (await this.queue.scan(this.decode, dir, which, complete)).map((j) => {
      const d = this.distrusted.get(j.name);
      if (!d) return j;
      if (d.identity && j.identity && sameIdentity(d.identity, j.identity)) return { name: j.name, path: j.path, identity: j.identity, error: d.reason };
      this.distrusted.delete(j.name);
      return j;
    });
    for (const n of this.reported.keys()) if (!present.has(n)) this.reported.delete(n);
    for (const n of this.refusalsSaid.keys()) if (!present.has(n)) this.refusalsSaid.delete(n);
    const news = fresh.filter((j) => !j.error || this.reported.get(j.name) !== j.error);
    for (const j of fresh) {
      if (j.error) this.reported.set(j.name, j.error);
      else this.reported.delete(j.name);
    }
    for (const j of fresh) {
      this.byName.set(j.name, j);
      if (readable(j)) {
        const same = this.bySeq.get(j.header.seq);
        if (same) same.add(j);
        else this.bySeq.set(j.header.seq, new Set([j]));
      }
    }
    return news;
  }

  /**
   * The file does not prove the signature it must carry: unreadable from now on, until it
   * changes; or, not `lasting` (its verification ran out of time), until trustAgain(). Returns
   * whether that is news: not when this very file was refused so before.
   */
  distrust(job: Readable, reason: string, lasting = true): boolean {
    this.forget(job.name);
    const error = `fails --require-signature (${reason}), whatever seq it claims; not run`;
    this.distrusted.set(job.name, { identity: job.identity, reason: error, lasting });
    this.byName.set(job.name, { name: job.name, path: job.path, identity: job.identity, error });
    this.reported.set(job.name, error);
    const said = this.refusalsSaid.get(job.name);
    const news = !(said && said.error === error && said.identity && job.identity && sameIdentity(said.identity, job.identity));
    this.refusalsSaid.set(job.name, { identity: job.identity, error });
    return news;
  }

  /** Files refused only for want of time are looked at, and verified, again. */
  trustAgain(): void {
    for (const [name, d] of this.distrusted) {
      if (d.lasting) continue;
      this.distrusted.delete(name);
      this.forget(name);
    }
  }

  forget(name: string): void {
    const j = this.byName.get(name);
    if (!j) return;
    this.byName.delete(name);
    if (!readable(j)) return;
    const same = this.bySeq.get(j.header.seq);
    same?.delete(j);
    if (same?.size === 0) this.bySeq.delete(j.header.seq);
  }

  /** Files whose header could not be read, so that any of them could be any seq (not those a signature check refused: their seq is known, only untrusted). */
  unreadable(): ScannedJob[] {
    return [...this.all().filter((j) => j.error && !this.distrusted.has(j.name)), ...this.unnamed];
  }

  errorOf(name: string): string | undefined {
    return this.byName.get(name)?.error;
  }

  all(): ScannedJob[] {
    return [...this.byName.values()];
  }

  withSeq(seq: bigint): Readable[] {
    return [...(this.bySeq.get(seq) ?? [])];
  }
}
