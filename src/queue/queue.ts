// The queue directory, laid out as fspl lays it out (spec/queue-layout.md):
//   QUEUE/nextseq        next sequence number to process
//   QUEUE/nextseq.lock   the processing lock (flock)
//   QUEUE/jobs/          packets, fspl-<anything>.fspl; any other name is ignored
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDecoded } from '../codec/external.js';
import { describe, FspoolError } from '../errors.js';
import type { Header } from '../packet/header.js';
import type { HeaderIndex } from './headerIndex.js';
import { replaceDurably } from '../sys/durable.js';
import { copyFd } from '../sys/fd.js';
import { readJobHeader } from './jobfile.js';
import { SeqFile } from './seqfile.js';

export const JOB_NAME = /^fspl-.*\.fspl$/;

export interface ScannedJob {
  name: string;
  path: string;
  header?: Header;
  /** Why the header could not be read, one line. */
  error?: string;
  /** The file was removed while we looked (a processor finished it): not an error. */
  vanished?: boolean;
}

/** True if all files have the same bytes: a packet delivered twice is not ambiguous. */
export function identical(paths: string[]): boolean {
  const fds = paths.map((p) => openSync(p, 'r'));
  try {
    const size = fstatSync(fds[0]!).size;
    if (fds.some((fd) => fstatSync(fd).size !== size)) return false;
    const bufs = fds.map(() => Buffer.allocUnsafe(1 << 16));
    for (let pos = 0; pos < size; pos += 1 << 16) {
      const n = readSync(fds[0]!, bufs[0]!, 0, 1 << 16, pos);
      for (let i = 1; i < fds.length; i++) {
        readSync(fds[i]!, bufs[i]!, 0, 1 << 16, pos);
        if (!bufs[i]!.subarray(0, n).equals(bufs[0]!.subarray(0, n))) return false;
      }
    }
    return true;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

export class Queue {
  readonly jobsDir: string;
  readonly nextseq: SeqFile;
  /** Issue 4: the header cache (src/queue/headerIndex.ts), set by commands that use one. */
  headerIndex?: Pick<HeaderIndex, 'scan'>;

  /** `dir` is kept as the user gave it: it is what FSPL_JOB_QUEUEDIR shows. */
  constructor(readonly dir: string) {
    this.jobsDir = dir.endsWith('/') ? `${dir}jobs` : `${dir}/jobs`;
    this.nextseq = new SeqFile(join(dir, 'nextseq'));
  }

  /** Create a queue; like fspl, refuse if the directory exists already. */
  static init(dir: string, appendOnly: boolean): Queue {
    const q = new Queue(dir);
    try {
      mkdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new FspoolError(`cannot create queue: ${dir} already exists`);
      throw e;
    }
    mkdirSync(q.jobsDir);
    if (!appendOnly) {
      q.nextseq.write(1n);
      writeFileSync(q.nextseq.lockPath, '');
    }
    return q;
  }

  /** Fail clearly unless this looks like a queue (jobs/ exists). */
  check(): this {
    let ok = false;
    try {
      ok = statSync(this.jobsDir).isDirectory();
    } catch {
      ok = false;
    }
    if (!ok) throw new FspoolError(`${this.dir} is not a queue (no jobs/ directory); create one with queue-init`);
    return this;
  }

  /** Fail clearly unless this queue can be processed (not append-only). */
  checkProcessable(): this {
    this.check();
    if (!existsSync(this.nextseq.path)) {
      throw new FspoolError(`${this.dir} has no nextseq: it is an append-only queue, which can be written and listed but not processed`);
    }
    return this;
  }

  /** As fspl forms FSPL_JOB_FULLPATH: the queue dir as given, then jobs/NAME. */
  jobPath(name: string): string {
    return `${this.jobsDir}/${name}`;
  }

  /** Names of the job files, sorted for a stable order of reports. */
  jobNames(): string[] {
    return readdirSync(this.jobsDir).filter((n) => JOB_NAME.test(n)).sort();
  }

  /** Read the header of one job file, through the decoder if one is given. */
  async readHeader(name: string, decoder?: string): Promise<ScannedJob> {
    const path = this.jobPath(name);
    try {
      if (!decoder) return { name, path, header: readJobHeader(path).header };
      const fd = openSync(path, 'r');
      try {
        const d = await openDecoded(decoder, fd);
        d.abort(); // the header is all a scan needs
        return { name, path, header: d.header };
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { name, path, vanished: true };
      return { name, path, error: describe(e) };
    }
  }

  /**
   * Read the headers of `names` (all job files by default); decoders run a few at a time.
   * `complete`: `names` is all of jobs/ (lets the header cache forget files that are gone).
   */
  async scan(decoder?: string, names?: string[], complete = names === undefined): Promise<ScannedJob[]> {
    const list = names ?? this.jobNames();
    // Issue 4: through the header cache when the queue has a state database.
    const jobs = this.headerIndex ? await this.headerIndex.scan(this, decoder, list, complete) : await this.readHeaders(decoder, list);
    return jobs.filter((j) => !j.vanished);
  }

  /** Read the headers of `names` from the files themselves (no cache). */
  async readHeaders(decoder: string | undefined, names: string[]): Promise<ScannedJob[]> {
    if (!decoder) return Promise.all(names.map((n) => this.readHeader(n)));
    const out: ScannedJob[] = new Array(names.length);
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const i = next++;
        out[i] = await this.readHeader(names[i]!, decoder);
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, names.length) }, worker));
    return out;
  }

  /** The one job with this seq. Identical copies count as one; different ones are an error. */
  async findJob(seq: bigint, decoder?: string): Promise<ScannedJob & { header: Header }> {
    const jobs = await this.scan(decoder);
    const hits = jobs.filter((j): j is ScannedJob & { header: Header } => j.header?.seq === seq);
    if (hits.length === 0) {
      const bad = jobs.filter((j) => j.error).length;
      const hint = bad > 0 ? ` (${bad} unreadable job file(s) could hold it)` : '';
      throw new FspoolError(`job ${seq} not found in queue ${this.dir}${hint}`);
    }
    if (hits.length > 1 && !identical(hits.map((h) => h.path))) {
      throw new FspoolError(`job ${seq} is ambiguous: ${hits.map((h) => h.path).join(', ')} hold different packets`);
    }
    return hits[0]!;
  }

  /**
   * Copy a packet from `fromFd` into jobs/ under a temp name that no processor picks up,
   * fsync, rename to fspl-<uuid>.fspl, fsync jobs/. Returns the new name only when durable.
   */
  write(fromFd: number): string {
    this.check();
    const uuid = randomUUID();
    const name = `fspl-${uuid}.fspl`;
    replaceDurably(this.jobPath(name), this.jobPath(`tmp-fspl-${uuid}.fspl.tmp`), (fd) => {
      if (copyFd(fromFd, fd) === 0) throw new FspoolError('no packet on stdin (0 bytes); nothing written');
    });
    return name;
  }
}
