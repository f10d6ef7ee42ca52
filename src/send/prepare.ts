// The sender: prepare, prepare-nop, prepare-fail write a packet to stdout.
//
// Unlike fspl, the sequence number is consumed only when the whole packet was written: the
// input is opened first, the seqfile lock is held while the packet is written, and the
// seqfile advances (durably) only after the last byte went out. A missing input file or a
// full disk leaves no gap at the receiver.
import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { encodeHeader } from '../packet/codec.js';
import { type CmdType, type Header, U64_MAX } from '../packet/header.js';
import { packetId } from '../packet/identity.js';
import type { Outbox, PrepareCopy } from '../outbox/outbox.js';
import { describe, errnoWords, FspoolError } from '../errors.js';
import { SeqFile } from '../queue/seqfile.js';
import { who } from '../sys/access.js';
import { crashPoint } from '../sys/crashPoint.js';
import { native } from '../sys/native.js';
import { splitNul } from '../sys/argv.js';
import { copyFd, fdChunks, writeAll } from '../sys/fd.js';
import { allocated, collectIfDue } from '../sys/youngGc.js';
import { bytesLeft, Progress } from '../progress.js';
import { type EncodeOptions, makeEncoder } from './encode.js';

export interface PrepareOptions {
  /** Path of the seqfile, or '-' for none (seq 1). */
  seqfile: string;
  kind: CmdType['kind'];
  /** '-' for stdin, a path, or none for no payload. */
  input?: string;
  /** Params as bytes (see src/sys/argv.ts). */
  params?: Buffer[];
  waitLockSeconds?: number;
  /** Where the packet goes; fd 1 by default. */
  outFd?: number;
  /** zstd and OpenPGP around the whole packet. */
  encode?: EncodeOptions;
  /**
   * For a packet written to a file (enqueue): `durable` runs once the whole packet was
   * written, before the sequence number is consumed (if it throws, the number is not);
   * `publish` runs after the number was consumed durably.
   */
  finish?: { durable(): void; publish(): void };
  /** The subcommand running, for the progress line: prepare (default) or enqueue. */
  command?: string;
  /**
   * Keep a copy in this outbox (spec/receipts.md): the packet carries the outbox's stream id,
   * is written to the outbox first, and is published there before its number is consumed.
   */
  outbox?: Outbox;
}

/**
 * FSPL_SET_* variables, prefix removed, in environment order, values as raw bytes. Read from
 * /proc/self/environ because process.env would turn non-UTF-8 bytes into U+FFFD.
 */
export function fsplSetEnv(): Array<[Buffer, Buffer]> {
  const prefix = Buffer.from('FSPL_SET_');
  const out: Array<[Buffer, Buffer]> = [];
  for (const entry of splitNul(readFileSync('/proc/self/environ'))) {
    if (!entry.subarray(0, prefix.length).equals(prefix)) continue;
    const eq = entry.indexOf(0x3d);
    if (eq < 0) continue;
    out.push([entry.subarray(prefix.length, eq), entry.subarray(eq + 1)]);
  }
  return out;
}

/**
 * The input file, opened and checked before anything is written: a directory opens, and its
 * first read would fail only after the packet's header went out.
 */
function openInput(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const fix = code === 'ENOENT' ? 'check the path given to -i' : code === 'EACCES' ? `-i takes a file ${who()} may read` : 'give -i a readable file';
    throw new FspoolError(`input ${path}: ${errnoWords(e)}; ${fix}; nothing was written`);
  }
  if (fstatSync(fd).isDirectory()) {
    closeSync(fd);
    throw new FspoolError(`input ${path} is a directory; -i takes a file, or - for stdin (tar cf - DIR | fspool prepare -i - ...); nothing was written`);
  }
  return fd;
}

/** An error of writing the packet out (not of reading the input). */
const isWriteError = (e: unknown) => (e as NodeJS.ErrnoException).syscall === 'write';

/**
 * Now, as seconds and nanoseconds since the epoch: the wall clock's milliseconds, and below them
 * the monotonic clock's, so that two packets made in one millisecond still differ. Not
 * `performance`, whose sub-millisecond wall time costs loading perf_hooks (~2 ms of the start).
 */
function now(): { secs: bigint; nanos: number } {
  const ns = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  return { secs: ns / 1_000_000_000n, nanos: Number(ns % 1_000_000_000n) };
}

function cmdOf(opts: PrepareOptions): CmdType {
  if (opts.kind !== 'Command') return { kind: opts.kind };
  return {
    kind: 'Command',
    params: opts.params ?? [],
    env: fsplSetEnv(),
  };
}

/**
 * Whether fd 1 is a terminal. Asked of the addon only for a character device other than
 * /dev/null (where a benchmark or a dry run sends it), so that the usual file or pipe costs one
 * fstat and no addon.
 */
function stdoutIsTerminal(): boolean {
  let st;
  try {
    st = fstatSync(1);
  } catch {
    return false; // no fd 1: the write says so
  }
  if (!st.isCharacterDevice() || st.rdev === statSync('/dev/null').rdev) return false;
  return native().isatty(1);
}

export async function prepare(opts: PrepareOptions): Promise<bigint> {
  const out = opts.outFd ?? 1;
  // A packet on a terminal is lost (fspl writes it there all the same): and its number with it,
  // so the receiver would wait for it for ever.
  if (out === 1 && stdoutIsTerminal()) {
    throw new FspoolError('stdout is a terminal, and a packet is binary: send it to a file (> p.fspl) or a pipe (| fspool queue-write -q QUEUE); nothing was written, no number was taken');
  }
  // Everything that can fail for a reason of its own comes before taking a number: the input
  // must open and the keys must load, or a missing file would leave a gap at the receiver.
  const encoder = await makeEncoder(opts.encode ?? {});
  const inFd = opts.input === undefined ? undefined : opts.input === '-' ? 0 : openInput(opts.input);
  try {
    const cmd = cmdOf(opts);
    const header = (seq: bigint): Header => {
      const t = now();
      return { seq, ctimeSecs: t.secs, ctimeNanos: t.nanos, cmd, ...(opts.outbox ? { stream: opts.outbox.stream } : {}) };
    };
    let copy: PrepareCopy | undefined;
    const emit = async (seq: bigint) => {
      try {
        await write(seq);
      } catch (e) {
        if (e instanceof FspoolError || !isWriteError(e)) throw e;
        throw new FspoolError(`cannot write the packet ${out === 1 ? 'to stdout' : 'out'}: ${describe(e)}; sequence number ${seq} was not used`);
      }
    };
    const write = async (seq: bigint) => {
      const progress = inFd === undefined ? undefined : Progress.start(`${opts.command ?? 'prepare'} seq ${seq}`, bytesLeft(inFd));
      const h = header(seq);
      // With an outbox the packet is made into its copy, then the copy is written out.
      const target = copy ? copy.open(packetId(h)) : out;
      try {
        await make(encodeHeader(h), target, progress);
      } catch (e) {
        if (!copy || e instanceof FspoolError || !isWriteError(e)) throw e;
        throw new FspoolError(`cannot write the outbox copy ${copy.tmpPath}: ${describe(e)}; sequence number ${seq} was not used`);
      }
      if (copy) {
        copy.durable();
        const fd = openSync(copy.tmpPath, 'r');
        try {
          copyFd(fd, out);
        } finally {
          closeSync(fd);
        }
      }
      progress?.done();
    };
    const make = async (head: Buffer, out: number, progress: Progress | undefined) => {
      if (!encoder) {
        writeAll(out, head);
        if (inFd !== undefined) copyFd(inFd, out, progress);
      } else {
        async function* packet(): AsyncGenerator<Buffer> {
          yield head;
          if (inFd === undefined) return;
          for await (const chunk of fdChunks(inFd, 512 * 1024).chunks) {
            progress?.add(chunk.length);
            allocated(chunk.length);
            yield chunk;
          }
        }
        for await (const chunk of await encoder(packet())) {
          writeAll(out, chunk);
          allocated(chunk.length);
          collectIfDue();
        }
      }
    };
    if (opts.seqfile === '-') {
      if (opts.outbox) throw new FspoolError('--outbox needs a sequence file (-s FILE), not "-"');
      await emit(1n);
      opts.finish?.durable();
      opts.finish?.publish();
      return 1n;
    }
    const sf = new SeqFile(opts.seqfile);
    const lock = await sf.lock({ create: true, waitSeconds: opts.waitLockSeconds, what: `sequence file ${sf.path}` });
    try {
      const seq = sf.readIfExists() ?? 1n;
      if (seq === U64_MAX) {
        throw new FspoolError(`sequence file ${sf.path} is at ${seq}, the largest sequence number: no number can follow it; reset it with prepare-set-next`);
      }
      // The next number is written (and fsynced) under the seqfile's temp name before the packet
      // goes out, where a full disk shows up: then nothing has gone out. After the packet, only
      // a rename is left to do.
      const staged = sf.stage(seq + 1n);
      try {
        copy = await opts.outbox?.startPrepare(seq);
        await emit(seq);
        opts.finish?.durable();
        // The copy is in the outbox before the number is consumed: a consumed number always
        // has its copy (a `.pending` one until the seqfile has moved).
        await copy?.publish();
      } catch (e) {
        staged.abort();
        copy?.abort();
        throw e;
      }
      crashPoint('prepare-before-seqfile');
      try {
        staged.commit();
      } catch (e) {
        // Whether the number moved is for the seqfile to say: the next outbox command decides.
        copy?.leave();
        throw e;
      }
      crashPoint('prepare-after-seqfile');
      copy?.finalize();
      opts.finish?.publish();
      return seq;
    } finally {
      lock.release();
    }
  } finally {
    if (inFd !== undefined && inFd !== 0) closeSync(inFd);
  }
}

/** prepare-get-next: the number the next prepare will use (1 for a new seqfile, created as fspl does). */
export async function prepareGetNext(seqfile: string): Promise<bigint> {
  if (seqfile === '-') return 1n;
  const sf = new SeqFile(seqfile);
  const lock = await sf.lock({ create: true, what: `sequence file ${sf.path}` });
  try {
    const n = sf.readIfExists();
    if (n !== undefined) return n;
    sf.write(1n);
    return 1n;
  } finally {
    lock.release();
  }
}

export async function prepareSetNext(seqfile: string, n: bigint): Promise<void> {
  if (seqfile === '-') return;
  const sf = new SeqFile(seqfile);
  const lock = await sf.lock({ create: true, what: `sequence file ${sf.path}` });
  try {
    sf.write(n);
  } finally {
    lock.release();
  }
}
