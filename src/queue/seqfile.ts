// Sequence files: one line, the next number in decimal. Shared by the sender (`prepare -s`)
// and the queue (`nextseq`), and by fspl: same parsing, same temp name, same lock file.
import { closeSync, constants, fstatSync, openSync, readSync, renameSync, rmSync } from 'node:fs';
import { describe, FspoolError } from '../errors.js';
import { U64_MAX } from '../packet/header.js';
import { type FileOwner, renameDurably, writeSynced, writeSyncedConcurrently } from '../sys/durable.js';
import { FileLock } from './lock.js';

const SET_IT_AGAIN = "; set it again: queue-set-next for a queue's nextseq, prepare-set-next for a sender's seqfile";

/** Parse a u64 as Rust's `str::parse::<u64>` does after trim(): optional `+`, digits. */
export function parseU64(text: string): bigint | undefined {
  const t = text.trim();
  if (!/^\+?[0-9]+$/.test(t)) return undefined;
  const n = BigInt(t);
  return n <= U64_MAX ? n : undefined;
}

/** A new number written and fsynced under the temp name, not yet in place. */
export interface Staged {
  /**
   * Rename it into place, then fsync the directory unless `durable` is false: a caller that
   * has recorded the change elsewhere durably (the journal) can redo a rename a power cut lost.
   */
  commit(durable?: boolean): void;
  /** Remove the temp file. */
  abort(): void;
}

/** More than any first line fspl writes or parses ("18446744073709551615\n", with spaces). */
const SEQ_READ_MAX = 4096;

export class SeqFile {
  /**
   * `ownerOf`: whom a temp file made here is given to, asked at the first staging: the queue's
   * owner when a root processor works in a queue another user owns. A crash between staging and
   * commit leaves the temp file behind, and fspl run as the owner, which truncates and replaces
   * it, could not write one of root's: the job would run at every fspl run, and never advance.
   */
  constructor(
    readonly path: string,
    private readonly ownerOf: () => FileOwner | undefined = () => undefined,
  ) {}

  private owner?: { is: FileOwner | undefined };

  get lockPath(): string {
    return `${this.path}.lock`;
  }

  /**
   * The stored number; undefined if the file does not exist. Only the start of the file is
   * read, without blocking: a number is a few bytes, and a seqfile that is huge, endless
   * (`/dev/zero`) or a FIFO must give an error, not exhaust memory or hang.
   */
  readIfExists(): bigint | undefined {
    let fd: number;
    try {
      fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    let text: string;
    try {
      if (!fstatSync(fd).isFile()) throw new FspoolError(`sequence file ${this.path} is not a regular file`);
      const buf = Buffer.alloc(SEQ_READ_MAX);
      text = buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0));
    } finally {
      closeSync(fd);
    }
    const end = text.indexOf('\n');
    if (end < 0 && text.length === SEQ_READ_MAX) throw new FspoolError(`sequence file ${this.path} does not hold a number (its first line is over ${SEQ_READ_MAX} bytes)${SET_IT_AGAIN}`);
    const n = parseU64(end < 0 ? text : text.slice(0, end));
    if (n === undefined) throw new FspoolError(`sequence file ${this.path} does not hold a number${SET_IT_AGAIN}`);
    return n;
  }

  read(): bigint {
    const n = this.readIfExists();
    if (n === undefined) throw new FspoolError(`sequence file ${this.path} does not exist`);
    return n;
  }

  /** Temp, fsync, rename, fsync dir: a crash leaves the old number or the new, never neither. */
  write(n: bigint): void {
    this.stage(n).commit();
  }

  /**
   * The first half of write(): the new number is written and fsynced under the temp name,
   * where it changes nothing yet; commit() renames it into place (and fsyncs the directory),
   * abort() removes it. Staging first means that the step which can fail for lack of space
   * comes before, not after, whatever the number is for (prepare's packet).
   */
  stage(n: bigint): Staged {
    const temp = this.tempFor(n);
    try {
      writeSynced(temp, `${n}\n`, this.tempOwner());
    } catch (e) {
      throw new FspoolError(`cannot write ${temp}: ${describe(e)}`);
    }
    return this.staged(temp);
  }

  /**
   * stage(), with the temp file's fsync left running in libuv's thread pool while the caller
   * does other work (a processor: the job itself), so that it costs no time of its own. The
   * temp file is written before this returns, and this throws at once if it cannot be (no
   * permission, no space): a processor stages before it starts a job, so that a job whose
   * completion could not be recorded never starts. Await the result before commit(); the
   * caller holds the lock for as long as the promise is pending.
   */
  stageConcurrently(n: bigint): Promise<Staged> {
    const temp = this.tempFor(n);
    let written: Promise<void>;
    try {
      written = writeSyncedConcurrently(temp, `${n}\n`, this.tempOwner());
    } catch (e) {
      throw new FspoolError(`cannot write ${temp}: ${describe(e)}`);
    }
    return written.then(
      () => this.staged(temp),
      (e) => Promise.reject(new FspoolError(`cannot write ${temp}: ${describe(e)}`)),
    );
  }

  private tempOwner(): FileOwner | undefined {
    this.owner ??= { is: this.ownerOf() };
    return this.owner.is;
  }

  private tempFor(n: bigint): string {
    if (n < 0n || n > U64_MAX) throw new FspoolError(`cannot store ${n} in ${this.path}: sequence numbers are 0 to ${U64_MAX}`);
    return `${this.path}.temp`;
  }

  private staged(temp: string): Staged {
    return {
      commit: (durable = true) => {
        try {
          if (durable) renameDurably(temp, this.path);
          else renameSync(temp, this.path);
        } catch (e) {
          throw new FspoolError(`cannot update ${this.path}: ${describe(e)}`);
        }
      },
      abort: () => rmSync(temp, { force: true }),
    };
  }

  lock(opts: { create: boolean; waitSeconds?: number; what: string; giveUp?: () => boolean }): Promise<FileLock> {
    return FileLock.acquire(this.lockPath, opts);
  }
}
