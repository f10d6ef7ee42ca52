// The queue directory, laid out as fspl lays it out (spec/queue-layout.md):
//   QUEUE/nextseq        next sequence number to process
//   QUEUE/nextseq.lock   the processing lock (flock)
//   QUEUE/jobs/          packets, fspl-<anything>.fspl; any other name is ignored
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type DecodeContext, openPacket } from '../codec/decode.js';
import { KeyFileError } from '../codec/keys.js';
import { describe, FspoolError } from '../errors.js';
import { log } from '../log.js';
import { bytesLeft, Progress } from '../progress.js';
import { isUtf8 } from '../sys/argv.js';
import { randomUUID } from '../sys/lazy.js';
import type { Header } from '../packet/header.js';
import { crashPoint } from '../sys/crashPoint.js';
import { fsyncDir } from '../sys/durable.js';
import { copyFd } from '../sys/fd.js';
import { peekPlainHeader } from '../codec/plainHeader.js';
import { type FileIdentity, identityOf, openJobFile } from './jobfile.js';
import { SeqFile } from './seqfile.js';

/** fspl's glob `fspl-*.fspl`, whose `*` matches any character, newlines included. */
export const JOB_NAME = /^fspl-[\s\S]*\.fspl$/;

export interface ScannedJob {
  name: string;
  path: string;
  header?: Header;
  /** Why the header could not be read, one line. */
  error?: string;
  /** The file was removed while we looked (a processor finished it): not an error. */
  vanished?: boolean;
  /** Encodings undone to read the header, outermost first (src/codec/decode.ts). */
  layers?: string[];
  /** The file the header was read from; a file with another identity is another job. */
  identity?: FileIdentity;
}

/** True if all files have the same bytes: a packet delivered twice is not ambiguous. */
export function identical(paths: string[]): boolean {
  const fds: number[] = [];
  const sizes: number[] = [];
  try {
    for (const p of paths) {
      const { fd, stat } = openJobFile(p);
      fds.push(fd);
      sizes.push(stat.size);
    }
    const size = sizes[0]!;
    if (sizes.some((n) => n !== size)) return false;
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

/** What reads headers for a scan in place of the files themselves (the header cache). */
export interface HeaderSource {
  /** Scan `names` of `queue` as Queue.scan does; `complete`: `names` is the whole of jobs/. */
  scan(queue: Queue, ctx: DecodeContext, names: string[], complete: boolean): Promise<ScannedJob[]>;
}

export class Queue {
  readonly jobsDir: string;
  readonly nextseq: SeqFile;
  /** The header cache (src/queue/headerIndex.ts), set by commands that use one. */
  headerIndex?: HeaderSource;

  /** `dir` is kept as the user gave it: it is what FSPL_JOB_QUEUEDIR shows. */
  constructor(readonly dir: string) {
    this.jobsDir = `${dir}/jobs`;
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
  /** Where fspool decodes payloads for `--delivery verified`: inside the queue, beside fspl's files. */
  get spoolDir(): string {
    return `${this.dir}/fspool/tmp`;
  }

  jobPath(name: string): string {
    return `${this.jobsDir}/${name}`;
  }

  /**
   * Names of the job files, sorted for a stable order of reports. A name that is not valid
   * UTF-8 cannot be carried through Node's string paths: it is reported, not silently dropped.
   */
  jobNames(): string[] {
    const names: string[] = [];
    for (const raw of readdirSync(this.jobsDir, { encoding: 'buffer' })) {
      const name = raw.toString('utf8');
      if (!JOB_NAME.test(name)) continue;
      if (!isUtf8(raw)) {
        const shown = [...raw].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
        log.warn(`job file ${this.jobsDir}/${shown} has a name that is not valid UTF-8; fspool cannot open it: rename it`);
        continue;
      }
      names.push(name);
    }
    return names.sort();
  }

  /** Read the header of a job file that is not a plain packet: through the decoder or its encodings. */
  private async readEncodedHeader(name: string, ctx: DecodeContext): Promise<ScannedJob> {
    const path = this.jobPath(name);
    try {
      const { fd, stat } = openJobFile(path);
      const identity = identityOf(stat);
      try {
        const p = await openPacket(fd, ctx, 0);
        if (p.kind === 'raw') return { name, path, header: p.header, identity };
        p.abort(); // the header is all a scan needs
        return { name, path, header: p.header, layers: p.layers, identity };
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { name, path, vanished: true };
      // A key file that cannot be used is the configuration's fault, not this file's.
      if (e instanceof KeyFileError) throw e;
      return { name, path, error: describe(e) };
    }
  }

  /**
   * Read the headers of `names` (all job files by default): through the header cache when the
   * queue has a state database (issue 4), else from the files. `complete`: `names` is all of
   * jobs/ (lets the cache forget files that are gone).
   */
  async scan(ctx: DecodeContext, names?: string[], complete = names === undefined): Promise<ScannedJob[]> {
    const list = names ?? this.jobNames();
    const jobs = this.headerIndex ? await this.headerIndex.scan(this, ctx, list, complete) : await this.readHeaders(ctx, list);
    return jobs.filter((j) => !j.vanished);
  }

  /** Read the headers of `names` from the files: plain packets in one synchronous pass, the others a few at a time. */
  async readHeaders(ctx: DecodeContext, names: string[]): Promise<ScannedJob[]> {
    const out: ScannedJob[] = new Array(names.length);
    const slow: number[] = [];
    names.forEach((name, i) => {
      const path = this.jobPath(name);
      if (ctx.decoder) return slow.push(i);
      try {
        const { fd, stat } = openJobFile(path);
        try {
          const header = peekPlainHeader(fd);
          if (header) out[i] = { name, path, header, identity: identityOf(stat) };
          else slow.push(i);
        } finally {
          closeSync(fd);
        }
      } catch (e) {
        out[i] = (e as NodeJS.ErrnoException).code === 'ENOENT' ? { name, path, vanished: true } : { name, path, error: describe(e) };
      }
    });
    let next = 0;
    const worker = async () => {
      while (next < slow.length) {
        const i = slow[next++]!;
        out[i] = await this.readEncodedHeader(names[i]!, ctx);
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, slow.length) }, worker));
    return out;
  }

  /** The one job with this seq. Identical copies count as one; different ones are an error. */
  async findJob(seq: bigint, ctx: DecodeContext): Promise<ScannedJob & { header: Header }> {
    const jobs = await this.scan(ctx);
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
  async write(fromFd: number, check?: (fd: number) => Promise<string | undefined>): Promise<string> {
    const t = this.openTemp();
    const progress = Progress.start('queue-write', bytesLeft(fromFd));
    try {
      if (copyFd(fromFd, t.fd, progress) === 0) throw new FspoolError('no packet on stdin (0 bytes); nothing written');
      progress?.done();
      if (check) {
        // A descriptor of its own, at offset 0 (a decoder reads from its stdin's offset).
        const fd = openSync(t.tmpPath, 'r');
        let wrong: string | undefined;
        try {
          wrong = await check(fd);
        } finally {
          closeSync(fd);
        }
        if (wrong) throw new FspoolError(`${wrong}; nothing was queued (--raw queues it anyway)`);
      }
      t.durable();
      return t.publish();
    } catch (e) {
      t.discard();
      if (e instanceof FspoolError || (e as NodeJS.ErrnoException).syscall === 'read') throw e;
      throw new FspoolError(`cannot write ${t.tmpPath}: ${describe(e)}; nothing was queued`);
    }
  }

  /**
   * A packet file written in steps: write to `fd` (a temp name, invisible to processors),
   * `durable()` fsyncs it, `publish()` renames it to its job name and fsyncs jobs/, and
   * `discard()` removes it if it was not published. enqueue consumes its sequence number
   * between durable() and publish() (spec/queue-layout.md).
   */
  openTemp(): { fd: number; tmpPath: string; durable(): void; publish(): string; discard(): void } {
    this.check();
    const uuid = randomUUID();
    const name = `fspl-${uuid}.fspl`;
    const tmpPath = this.jobPath(`tmp-fspl-${uuid}.fspl.tmp`);
    const fd = openSync(tmpPath, 'wx', 0o644);
    let open = true;
    let published = false;
    return {
      fd,
      tmpPath,
      durable: () => {
        fsyncSync(fd);
        closeSync(fd);
        open = false;
      },
      publish: () => {
        crashPoint('queue-write-before-rename');
        renameSync(tmpPath, this.jobPath(name));
        published = true;
        crashPoint('queue-write-after-rename');
        fsyncDir(this.jobsDir);
        return name;
      },
      discard: () => {
        if (open) closeSync(fd);
        open = false;
        if (published) return;
        try {
          unlinkSync(tmpPath);
        } catch {
          /* never written */
        }
      },
    };
  }
}
