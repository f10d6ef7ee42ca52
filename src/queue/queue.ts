// The queue directory, laid out as fspl lays it out (spec/queue-layout.md):
//   QUEUE/nextseq        next sequence number to process
//   QUEUE/nextseq.lock   the processing lock (flock)
//   QUEUE/jobs/          packets, fspl-<anything>.fspl; any other name is ignored
import { closeSync, constants, existsSync, lstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type DecodeContext, openPacket } from '../codec/decode.js';
import { KeyFileError } from '../codec/keys.js';
import { describe, errnoWords, FspoolError, someOf } from '../errors.js';
import { log } from '../log.js';
import { bytesLeft, Progress } from '../progress.js';
import { randomUUID } from '../sys/lazy.js';
import type { Header } from '../packet/header.js';
import { mayAccess, ownerAndMode, READ_ONLY, who, writable } from '../sys/access.js';
import { foreignOwner, SYMLINK_FIX } from './owner.js';
import { crashPoint } from '../sys/crashPoint.js';
import { fsyncDir } from '../sys/durable.js';
import { copyFd } from '../sys/fd.js';
import { native } from '../sys/native.js';
import { peekPlainHeader } from '../codec/plainHeader.js';
import { type FileIdentity, identityOf, type JobDir, openJobFile, readJobDir, sameFile } from './jobfile.js';
import { Listing } from './listing.js';
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
  /** That file is not readable by everyone: its header is not put in the header cache. */
  private?: true;
  /** Its name is not UTF-8: `name` shows its bytes (\xNN), and `path` is no path to open. */
  nameNotUtf8?: true;
  /** A processor refused it under --require-signature (the journal says so): its header proved nothing. */
  refused?: true;
}

/**
 * A job file not readable by everyone is kept out of the header cache: its params and
 * variables would be read there by users the file itself keeps out (the database is readable
 * by whoever may list the queue).
 */
const privacy = (stat: { mode: number }): { private?: true } => ((stat.mode & 0o004) === 0 ? { private: true } : {});

/** Bytes compared per read, and per turn of the event loop (identicalAsync). */
const COMPARE_READ = 1 << 20;
const COMPARE_TURN = 64 << 20;

/** Files compared against the first at once: whoever may write jobs/ may drop any number of copies. */
const COMPARE_BATCH = 32;

/**
 * A comparison of the files' bytes, a turn at a time: `turn()` compares up to `bytes` more and
 * says true or false once it knows, undefined while there is more. Hard links of one file are
 * the same bytes without a read, and a hole that every copy has (sparse files: a forger's
 * terabytes cost it no disk) is skipped without one. The copies are looked at one at a time and
 * compared with the first a batch at a time, so that tens of thousands of them (hard links cost
 * a forger nothing) need neither as many descriptors nor as many buffers.
 */
function comparison(paths: string[]): { turn(bytes: number): boolean | undefined; close(): void } {
  let verdict: boolean | undefined;
  const { fd: first, stat: firstStat } = openJobFile(paths[0]!);
  const size = firstStat.size;
  // The first is held open throughout, so every batch compares with the same bytes.
  let batch: number[] = [];
  const close = () => {
    for (const fd of batch) closeSync(fd);
    batch = [];
  };
  const others: string[] = [];
  try {
    const seen = new Set([`${firstStat.dev}:${firstStat.ino}`]);
    for (const p of paths.slice(1)) {
      const { fd, stat } = openJobFile(p);
      closeSync(fd);
      if (stat.size !== size) verdict = false;
      const inode = `${stat.dev}:${stat.ino}`;
      if (!seen.has(inode)) {
        seen.add(inode);
        others.push(p);
      }
    }
  } catch (e) {
    closeSync(first);
    throw e;
  }
  if (verdict === undefined && others.length === 0) verdict = true;
  let next = 0;
  let pos = 0;
  const bufs: Buffer[] = [Buffer.allocUnsafe(COMPARE_READ)];
  const sys = native();
  /** The next batch of copies opened, from the start; false when none is left. */
  const openBatch = (): boolean => {
    close();
    pos = 0;
    for (const p of others.slice(next, next + COMPARE_BATCH)) {
      const { fd, stat } = openJobFile(p);
      batch.push(fd);
      // Changed since it was looked at: a difference, never a compare of other bytes.
      if (stat.size !== size) verdict = false;
    }
    next += batch.length;
    while (bufs.length <= batch.length) bufs.push(Buffer.allocUnsafe(COMPARE_READ));
    return batch.length > 0;
  };
  /**
   * From `pos`: how far the next stretch goes in which no copy changes between data and hole,
   * and whether every copy is in a hole there (then it is zeros in all: nothing to read).
   */
  const stretch = (): { end: number; holes: boolean } => {
    let end = size;
    let holes = true;
    for (const fd of [first, ...batch]) {
      const data = sys.seek(fd, pos, false);
      if (data === pos) {
        holes = false;
        end = Math.min(end, sys.seek(fd, pos, true));
      } else {
        end = Math.min(end, data < 0 ? size : data);
      }
    }
    return { end, holes };
  };
  return {
    turn(bytes: number) {
      let budget = bytes;
      while (verdict === undefined && budget > 0) {
        if (batch.length === 0 || pos >= size) {
          if (!openBatch()) {
            verdict = true;
            break;
          }
          if (verdict !== undefined) break;
        }
        const end = Math.min(size, pos + budget);
        while (verdict === undefined && pos < end) {
          const s = stretch();
          if (s.holes) {
            budget -= s.end - pos;
            pos = s.end;
            continue;
          }
          const len = Math.min(COMPARE_READ, s.end - pos);
          const n = readSync(first, bufs[0]!, 0, len, pos);
          // A short read (the file shrank meanwhile) is a difference, never a compare of stale bytes.
          if (n !== len) verdict = false;
          for (let i = 0; i < batch.length && verdict === undefined; i++) {
            const m = readSync(batch[i]!, bufs[i + 1]!, 0, len, pos);
            if (m !== n || !bufs[i + 1]!.subarray(0, n).equals(bufs[0]!.subarray(0, n))) verdict = false;
          }
          pos += len;
          budget -= len;
        }
      }
      return verdict;
    },
    close() {
      close();
      closeSync(first);
    },
  };
}

/**
 * Whether the file opened as the i-th name of `dir` is the one the listing found there (device
 * and inode): a file put in its place since, or one reached through a jobs/ made a symlink since
 * (the listing does not follow one where root works in another user's queue), is not what was
 * listed. It is taken as vanished, and the next look finds what is there now.
 */
function listedAs(dir: JobDir, i: number, stat: { dev: number; ino: number }): boolean {
  const listed = dir.identity(i);
  return listed !== undefined && sameFile(listed, stat);
}

/** Why a job file whose name is not UTF-8 is unreadable. */
const NOT_UTF8 = 'its name is not valid UTF-8: fspool cannot open it; rename it';

/** True if all files have the same bytes: a packet delivered twice is not ambiguous. */
export function identical(paths: string[]): boolean {
  const c = comparison(paths);
  try {
    return c.turn(Infinity)!;
  } finally {
    c.close();
  }
}

/**
 * identical(), giving the event loop a turn every 64 MiB (a signal to a processor must not
 * wait for two big files to be read through), and given up, undefined, once `stopped()`.
 */
export async function identicalAsync(paths: string[], stopped: () => boolean): Promise<boolean | undefined> {
  const c = comparison(paths);
  try {
    for (;;) {
      if (stopped()) return undefined;
      const verdict = c.turn(COMPARE_TURN);
      if (verdict !== undefined) return verdict;
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    c.close();
  }
}

/**
 * A file the header cache knew, unchanged: its index in the JobDir, its seq and ctime's seconds
 * as the decimal text they are stored as (a listing needs no BigInt of them), and its header.
 */
export type CacheHit = (i: number, seq: string, ctimeSecs: string, ctimeNanos: number, header: Header | undefined) => void;

/** What gives headers for a scan in place of the files themselves (the header cache). */
export interface HeaderSource {
  /**
   * Look up the files `which` of `dir` (indices, ascending): `hit` for each one the cache holds
   * with the same identity (with its whole header if `commands`, else undefined). `complete`:
   * `which` is the whole of jobs/, so the rows of files that are gone are found too. Undefined
   * when the cache cannot be read (then every file is read).
   */
  lookup(ctx: DecodeContext, dir: JobDir, which: readonly number[], complete: boolean, commands: boolean, hit: CacheHit): { gone: string[] } | undefined;
  /** Keep the headers read from files, and forget the rows of files that are `gone`. */
  remember(ctx: DecodeContext, read: ScannedJob[], gone: string[]): void;
}

/** A job the header cache knew: its name and lstat stay in the JobDir, its path is made when asked for. */
class CachedJob implements ScannedJob {
  constructor(
    private readonly dir: JobDir,
    private readonly i: number,
    readonly header: Header,
  ) {}

  get name(): string {
    return this.dir.names[this.i]!;
  }

  get path(): string {
    return `${this.dir.path}/${this.dir.names[this.i]}`;
  }

  get identity(): FileIdentity | undefined {
    return this.dir.identity(this.i);
  }
}

export class Queue {
  readonly jobsDir: string;
  readonly nextseq: SeqFile;
  /** The header cache (src/queue/headerIndex.ts), set by commands that use one. */
  headerIndex?: HeaderSource;

  /** `dir` is kept as the user gave it: it is what FSPL_JOB_QUEUEDIR shows. */
  constructor(readonly dir: string) {
    this.jobsDir = `${dir}/jobs`;
    this.nextseq = new SeqFile(join(dir, 'nextseq'), () => foreignOwner(dir));
  }

  /**
   * Create a queue; like fspl, refuse if the directory exists already. Durable when it returns:
   * the new directories are fsynced into their parents.
   */
  static init(dir: string, appendOnly: boolean): Queue {
    const q = new Queue(dir);
    const parent = dirname(dir);
    try {
      mkdirSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new FspoolError(`cannot create queue: ${dir} already exists`);
      if (code === 'ENOENT') throw new FspoolError(`cannot create queue ${dir}: directory ${parent} does not exist; create it first (mkdir -p ${parent})`);
      if (code === 'EACCES') throw new FspoolError(`cannot create queue ${dir}: ${parent} is not writable by ${who()}; create it as ${parent}'s owner, or elsewhere`);
      throw new FspoolError(`cannot create queue ${dir}: ${describe(e)}`);
    }
    mkdirSync(q.jobsDir);
    if (!appendOnly) {
      q.nextseq.write(1n);
      writeFileSync(q.nextseq.lockPath, '');
    }
    fsyncDir(dir);
    try {
      fsyncDir(parent);
    } catch {
      // A parent one may write but not read (a drop box, mode 0733) cannot be opened to be
      // fsynced: the queue is there all the same, only not yet durable in it.
    }
    return q;
  }

  /** Fail clearly unless this looks like a queue (jobs/ exists). */
  check(): this {
    let ok = false;
    try {
      ok = statSync(this.jobsDir).isDirectory();
    } catch (e) {
      // A queue this user may not enter is a queue all the same: queue-init would fail on it.
      if ((e as NodeJS.ErrnoException).code === 'EACCES') {
        // The first folder on the way this user may not search (enter).
        const way = resolve(this.dir).split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/') || '/');
        const shut = way.find((d) => !mayAccess(d, constants.X_OK)) ?? this.dir;
        throw new FspoolError(`cannot look into queue ${this.dir}: ${shut} (${ownerAndMode(shut)}) may not be entered by ${who()}; run as the queue's owner, or let ${who()} in`);
      }
      ok = false;
    }
    if (!ok) {
      let st;
      try {
        st = statSync(this.dir, { throwIfNoEntry: false });
      } catch {
        st = undefined; // a path through a file (afile/sub): no such directory
      }
      if (st && !st.isDirectory()) throw new FspoolError(`${this.dir} is a file, not a queue directory; give -q the queue's directory`);
      if (!st) throw new FspoolError(`${this.dir} is not a queue (no such directory); create one with queue-init`);
      throw new FspoolError(`${this.dir} is not a queue (no jobs/ directory); create one with queue-init`);
    }
    return this;
  }

  /** Fail clearly unless this queue can be processed (not append-only). */
  checkProcessable(): this {
    this.check();
    if (!existsSync(this.nextseq.path)) {
      throw new FspoolError(`${this.dir} has no nextseq: it is an append-only queue, which can be written and listed but not processed (to process it, set its next seq: fspool queue-set-next -q ${this.dir} 1)`);
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
   * jobs/: the job files (fspl's glob, JOB_NAME) with their lstat, in one native call that
   * opens no file, sorted by name (by their bytes) for a stable order of reports. A name that
   * is not valid UTF-8 cannot be carried through Node's string paths: it is reported, not
   * silently dropped.
   */
  jobDir(): JobDir {
    let dir: JobDir;
    // A root fspool in a queue another user owns does not follow a symlink at jobs/: it would
    // run, and delete, packets wherever the owner points it, root's own included (owner.ts).
    // What the scan read keeps its identity, so a jobs/ swapped for a symlink later reaches no
    // file it names (a job's open and removal check it).
    const foreign = foreignOwner(this.dir) !== undefined;
    try {
      dir = readJobDir(this.jobsDir, foreign);
    } catch (e) {
      if (foreign && (e as NodeJS.ErrnoException).code === 'ENOTDIR' && lstatSync(this.jobsDir, { throwIfNoEntry: false })?.isSymbolicLink()) {
        throw new FspoolError(`${this.jobsDir} is a symlink, which root does not follow in a queue another user owns; ${SYMLINK_FIX}`);
      }
      if ((e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
      throw new FspoolError(`cannot read ${this.jobsDir}: ${errnoWords(e)} (${ownerAndMode(this.jobsDir)}); run as the queue's owner, or let ${who()} read it`);
    }
    for (const shown of dir.unnamed) log.warn(`job file ${this.jobsDir}/${shown} has a name that is not valid UTF-8; fspool cannot open it: rename it`);
    return dir;
  }

  /** The job files of `dir` whose names are not UTF-8, as unreadable ones: they may hold any seq. */
  unnamedJobs(dir: JobDir): ScannedJob[] {
    return dir.unnamed.map((name) => ({ name, path: this.jobPath(name), error: NOT_UTF8, nameNotUtf8: true }));
  }

  /** Read the header of a job file that is not a plain packet: through the decoder or its encodings. */
  private async readEncodedHeader(dir: JobDir, i: number, ctx: DecodeContext): Promise<ScannedJob> {
    const name = dir.name(i);
    const path = this.jobPath(name);
    try {
      const { fd, stat } = openJobFile(path);
      const identity = identityOf(stat);
      const seen = { identity, ...privacy(stat) };
      try {
        if (!listedAs(dir, i, stat)) return { name, path, vanished: true };
        const p = await openPacket(fd, ctx, 0);
        if (p.kind === 'raw') return { name, path, header: p.header, ...seen };
        p.abort(); // the header is all a scan needs
        return { name, path, header: p.header, layers: p.layers, ...seen };
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
   * Read the headers of the files `which` of `dir` (indices, ascending; all job files by
   * default): through the header cache when the queue has a state database, else from the
   * files. `complete`: `which` is all of jobs/ (lets the cache forget files that are gone).
   */
  async scan(ctx: DecodeContext, dir = this.jobDir(), which?: readonly number[], complete = which === undefined): Promise<ScannedJob[]> {
    const files = which ?? Array.from({ length: dir.length }, (_, i) => i);
    const found = new Map<number, ScannedJob>();
    const looked = this.headerIndex?.lookup(ctx, dir, files, complete, true, (i, _seq, _secs, _nanos, header) => {
      found.set(i, new CachedJob(dir, i, header!));
    });
    const missed = files.filter((i) => !found.has(i));
    const read = await this.readHeaders(ctx, dir, missed);
    read.forEach((j, n) => found.set(missed[n]!, j));
    if (looked) this.headerIndex!.remember(ctx, read, looked.gone);
    const scanned = files.map((i) => found.get(i)!).filter((j) => !j.vanished);
    return which === undefined ? [...scanned, ...this.unnamedJobs(dir)] : scanned;
  }

  /**
   * Every job file's seq and creation time, as queue-ls shows them: a scan that keeps no object
   * per job (Listing), nor the commands, which the header cache then does not read.
   */
  async list(ctx: DecodeContext): Promise<Listing> {
    const dir = this.jobDir();
    const listing = new Listing(dir);
    const all = Array.from({ length: dir.length }, (_, i) => i);
    const seen = new Uint8Array(dir.length);
    const looked = this.headerIndex?.lookup(ctx, dir, all, true, false, (i, seq, ctimeSecs, ctimeNanos) => {
      listing.set(i, seq, ctimeSecs, ctimeNanos);
      seen[i] = 1;
    });
    const missed = all.filter((i) => !seen[i]);
    const read = await this.readHeaders(ctx, dir, missed);
    read.forEach((j, n) => {
      if (j.header) listing.set(missed[n]!, j.header.seq, j.header.ctimeSecs, j.header.ctimeNanos);
      else if (j.error) listing.fail(missed[n]!, j.error);
    });
    if (looked) this.headerIndex!.remember(ctx, read, looked.gone);
    return listing;
  }

  /**
   * Read the headers of the files `which` of `dir` from the files: plain packets in one
   * synchronous pass, the others a few at a time. A name that lstat found not to be a regular
   * file is not opened.
   */
  async readHeaders(ctx: DecodeContext, dir: JobDir, which: readonly number[]): Promise<ScannedJob[]> {
    const out: ScannedJob[] = new Array(which.length);
    const slow: number[] = [];
    which.forEach((i, k) => {
      const name = dir.name(i);
      const path = this.jobPath(name);
      if (dir.vanished(i)) return (out[k] = { name, path, vanished: true });
      const problem = dir.problem(i);
      if (problem) return (out[k] = { name, path, error: problem });
      if (ctx.decoder) return slow.push(k);
      try {
        const { fd, stat } = openJobFile(path);
        try {
          if (!listedAs(dir, i, stat)) return (out[k] = { name, path, vanished: true });
          const header = peekPlainHeader(fd);
          if (header) out[k] = { name, path, header, identity: identityOf(stat), ...privacy(stat) };
          else slow.push(k);
        } finally {
          closeSync(fd);
        }
      } catch (e) {
        out[k] = (e as NodeJS.ErrnoException).code === 'ENOENT' ? { name, path, vanished: true } : { name, path, error: describe(e) };
      }
    });
    let next = 0;
    const worker = async () => {
      while (next < slow.length) {
        const k = slow[next++]!;
        out[k] = await this.readEncodedHeader(dir, which[k]!, ctx);
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
      throw new FspoolError(`job ${seq} is ambiguous: ${someOf(hits.map((h) => h.path))} hold different packets`);
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
    let fd: number;
    try {
      fd = openSync(tmpPath, 'wx', 0o644);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const problem = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? writable(this.jobsDir) : undefined;
      if (!problem) throw e;
      const fix = problem.includes(READ_ONLY) ? 'mount it read-write' : "write as the queue's owner, or make jobs/ writable for this user";
      throw new FspoolError(`cannot queue a packet: ${problem}; ${fix}; nothing was queued`);
    }
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
