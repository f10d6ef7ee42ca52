// From an opened packet to what the receiver reads, by delivery mode (spec/encoding.md):
//
// - plain packet in a file: the file itself (zero-copy);
// - `stream` (default): decoded plaintext flows into the receiver's pipe as it is decoded;
//   EOF only after every layer verified (src/run/deliver.ts);
// - `verified`: decoded into an unlinked temp file in the queue, verified, and only then
//   handed over; a failure means the receiver never starts.
//
// A packet the decode worker opened (src/codec/decodeThread.ts) is drained by it into the
// temp file, or into nothing for a pass that only verifies: its bytes never come here.
//
// With --require-signature, the header (seq, params, env) must be trusted before the receiver
// starts, and an OpenPGP signature is only checked at the end of the message. So in `stream`
// mode the packet is decoded and verified once without a receiver, then decoded again into the
// receiver; `verified` mode does that by construction.
import { closeSync, constants, lstatSync, mkdirSync, openSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Keyring } from '../codec/keys.js';
import type { Drained, OpenedPacket, Sink, StreamPacket } from '../codec/decode.js';
import { describe, FspoolError } from '../errors.js';
import { encodeHeader } from '../packet/codec.js';
import type { Header } from '../packet/header.js';
import { Progress } from '../progress.js';
import { randomUUID } from '../sys/lazy.js';
import { after } from '../sys/timer.js';
import type { PayloadSource } from './job.js';
import { asOwner, type Owner, SYMLINK_FIX, symlinkProblem } from '../queue/owner.js';

export type DeliveryMode = 'stream' | 'verified';

export interface SourceOptions {
  mode: DeliveryMode;
  keys: Keyring;
  /** The fd the packet was opened from (for zero-copy). */
  fd: number;
  /** Where the packet starts in `fd`, when the caller knows it (a file it has just opened: 0). */
  at?: number;
  /** Where `verified` mode decodes to: a directory on the queue's filesystem. */
  spoolDir: string;
  /** Whose identity makes `spoolDir` when it is missing: the queue's owner, for a root fspool (owner.ts). */
  spoolAs?: Owner;
  /** Open the same packet again, for a second pass; absent when the input cannot be re-read. */
  reopen?: () => Promise<OpenedPacket>;
  /**
   * What decoding into `spoolDir` needs at least (the packet's own size, when it is a file):
   * less free space than that is refused before anything is written.
   */
  spoolAtLeast?: number;
  /** The option that sets `spoolDir`, for the message saying where else it could go. */
  spoolOption?: string;
  /** --timeout: bounds each pass made before the receiver starts, on a clock of its own. */
  timeoutSeconds?: number;
}

export type Prepared =
  | { ok: true; header: Header; payload: PayloadSource; layers: string[]; cleanup(): void }
  /**
   * `unverified`: a signature was required and the packet did not prove it: its header (the
   * seq it claims included) cannot be trusted, so it is no job at all, not a failed one.
   * `timedOut`: --timeout stopped the pass. `local`: the trouble is this machine's (no room to
   * decode into, a decode folder that may not be used), not the packet's.
   */
  | { ok: false; reason: string; unverified?: boolean; timedOut?: boolean; local?: boolean };

/**
 * One pass over the payload before the receiver starts (verifying it, or decoding it into the
 * temp file): into `sink` when the decode worker decodes it, else each chunk to `each`; every
 * layer verified at the end. Bounded by --timeout as the receiver is: a packet (a hostile one,
 * in parts of a byte; a huge one) must not hold the queue for as long as its reading takes.
 * Returns why it failed, if it did, and whether --timeout stopped it (`expired`).
 */
async function pass(p: StreamPacket, sink: Sink, each: (chunk: Buffer) => void, progress: Progress | undefined, seconds: number | undefined): Promise<{ failure?: unknown; expired: boolean }> {
  let expired = false;
  const timer =
    seconds === undefined
      ? undefined
      : after(seconds, () => {
          expired = true;
          p.abort();
        });
  try {
    if (p.via === 'worker') {
      verdict(await p.drain(sink, progress));
    } else {
      for await (const chunk of p.payload) {
        if (expired) break;
        each(chunk);
        progress?.add(chunk.length);
      }
      if (!expired) await p.verify();
    }
    return { expired };
  } catch (e) {
    return { failure: e, expired };
  } finally {
    timer?.clear();
    progress?.done();
  }
}

/**
 * The folder to decode into, opened: `path` names it, as openat would, for as long as `close()`
 * is not called. A root fspool in a queue another user owns (`owner`) opens the two names that
 * user controls, the state folder and its `tmp/`, each below the one before and without
 * following a symlink (through /proc/self/fd), and makes them as the owner when missing: a
 * symlink the owner put at either leads root nowhere (owner.ts).
 */
function openSpoolDir(dir: string, owner: Owner | undefined): { path: string; close(): void } {
  if (!owner) {
    mkdirSync(dir, { recursive: true });
    return { path: dir, close() {} };
  }
  let fd = openSync(dirname(dirname(dir)), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    for (const path of [dirname(dir), dir]) {
      const at = `/proc/self/fd/${fd}/${basename(path)}`;
      asOwner(owner, () => {
        try {
          mkdirSync(at);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
      });
      let next: number;
      try {
        next = openSync(at, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      } catch (e) {
        // O_NOFOLLOW with O_DIRECTORY: a symlink is ENOTDIR, as a file is.
        if ((e as NodeJS.ErrnoException).code === 'ENOTDIR' && lstatSync(at, { throwIfNoEntry: false })?.isSymbolicLink()) {
          throw new FspoolError(`${symlinkProblem(path)}; ${SYMLINK_FIX}`);
        }
        throw e;
      }
      closeSync(fd);
      fd = next;
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return { path: `/proc/self/fd/${fd}`, close: () => closeSync(fd) };
}

/** Decode the payload into a temp file that is unlinked at once, and verify it. */
async function spool(p: StreamPacket, opts: SourceOptions): Promise<{ fd: number } | { reason: string; local: boolean; timedOut?: boolean }> {
  const dir = opts.spoolDir;
  let into: { path: string; close(): void };
  try {
    into = openSpoolDir(dir, opts.spoolAs);
  } catch (e) {
    p.abort();
    return { reason: `cannot decode into ${dir}: ${describe(e)}; the command was not started`, local: true };
  }
  try {
    return await spoolInto(p, opts, dir, into.path);
  } finally {
    into.close();
  }
}

/** spool(), into the folder `dir` opened as `at`. */
async function spoolInto(p: StreamPacket, opts: SourceOptions, dir: string, at: string): Promise<{ fd: number } | { reason: string; local: boolean; timedOut?: boolean }> {
  if (opts.spoolAtLeast !== undefined) {
    const st = statfsSync(at);
    const free = st.bavail * st.bsize;
    if (free < opts.spoolAtLeast) {
      p.abort();
      const elsewhere = opts.spoolOption ? `; ${opts.spoolOption} DIR decodes it elsewhere` : '';
      return { reason: `not enough free space in ${dir} to decode the payload before running the command: ${free} bytes free, at least ${opts.spoolAtLeast} needed${elsewhere}; the command was not started`, local: true };
    }
  }
  const progress = Progress.start(`decode seq ${p.header.seq} into ${dir}`);
  // The temp file itself is root's when we are root, and readable by no one else: it holds
  // the plaintext.
  const path = join(at, `decoded-${randomUUID()}.tmp`);
  let fd: number;
  try {
    fd = openSync(path, 'wx+', 0o600);
  } catch (e) {
    // No inode left, a tmp/ this user may not write: the machine's, as a full disk is.
    progress?.done();
    p.abort();
    return { reason: `cannot decode into ${dir}: ${describe(e)}; the command was not started`, local: true };
  }
  // Unlinked now, so no outcome (not even a crash) leaves it behind; the fd keeps the data.
  unlinkSync(path);
  // Positional writes leave the fd's offset at 0, where the receiver will start reading.
  let pos = 0;
  const write = (chunk: Buffer) => {
    let off = 0;
    while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off, pos + off);
    pos += chunk.length;
  };
  const { failure, expired } = await pass(p, { kind: 'file', fd }, write, progress, opts.timeoutSeconds);
  if (failure === undefined && !expired) return { fd };
  closeSync(fd);
  p.abort();
  if (expired) return { reason: `${timedOut('decoded', opts.timeoutSeconds!)}; the command was not started`, local: false, timedOut: true };
  // A write that failed (a full disk) is this machine's trouble, not the packet's.
  const e = failure as NodeJS.ErrnoException;
  if (e.syscall !== 'write') return { reason: `${describe(failure)}; the command was not started`, local: false };
  const room = e.code === 'ENOSPC' || e.code === 'EDQUOT' ? `; free space there${opts.spoolOption ? `, or decode elsewhere with ${opts.spoolOption} DIR` : ''}, and run it again` : '';
  return { reason: `cannot decode into ${dir}: ${describe(failure)}; the command was not started${room}`, local: true };
}

/** A worker's drain that did not end verified: why, as an error. */
function verdict(d: Drained): void {
  if (d.outcome === 'verified') return;
  if (typeof d.outcome === 'object') throw d.outcome.failure;
  throw new Error(d.outcome === 'aborted' ? 'decoding was stopped' : 'the output stopped taking the payload');
}

/** Why a pass before the receiver was stopped by --timeout. */
function timedOut(what: string, seconds: number): string {
  return `not ${what} within --timeout (${seconds}s); a larger --timeout lets it finish`;
}

/** Why a packet does not prove a required signature; `timedOut`: --timeout stopped the pass that would have told. */
export interface Unverified {
  reason: string;
  timedOut?: boolean;
}

/** Read the whole payload and verify it, without a receiver. */
async function check(p: StreamPacket, timeoutSeconds: number | undefined): Promise<Unverified | undefined> {
  const progress = Progress.start(`verify seq ${p.header.seq} (first of two passes)`);
  const { failure, expired } = await pass(p, { kind: 'discard' }, () => {}, progress, timeoutSeconds);
  if (failure !== undefined) p.abort();
  if (expired) return { reason: timedOut('verified', timeoutSeconds!), timedOut: true };
  return failure === undefined ? undefined : { reason: describe(failure) };
}

/**
 * Why the packet does not prove a required signature, or undefined when it does: the whole
 * packet is read and verified, without a receiver.
 */
export async function verifyOnly(p: OpenedPacket, timeoutSeconds?: number): Promise<Unverified | undefined> {
  if (p.kind === 'raw') return { reason: 'packet is not signed (a plain fspl packet), and --require-signature was given' };
  return check(p, timeoutSeconds);
}

export async function preparePayload(p: OpenedPacket, opts: SourceOptions): Promise<Prepared> {
  const none = () => {};
  if (p.kind === 'raw') {
    if (opts.keys.requiresSignature) return { ok: false, unverified: true, reason: 'packet is not signed (a plain fspl packet), and --require-signature was given' };
    return { ok: true, header: p.header, payload: { kind: 'fd', fd: opts.fd, offset: opts.at === undefined ? undefined : opts.at + p.headerLength }, layers: [], cleanup: none };
  }
  if (opts.mode === 'verified' || (opts.keys.requiresSignature && !opts.reopen)) {
    const s = await spool(p, opts);
    if ('reason' in s && s.local && opts.keys.requiresSignature && opts.reopen) {
      // Whether it is a job at all, before this machine's trouble keeps it due: a forged packet
      // that fills the disk as it is decoded must not hold the queue. Verified without the disk.
      const bad = await verifyOnly(await opts.reopen(), opts.timeoutSeconds);
      if (bad) return { ok: false, unverified: true, reason: `${bad.reason}; the command was not started`, timedOut: bad.timedOut };
    }
    if ('reason' in s) return { ok: false, reason: s.reason, unverified: opts.keys.requiresSignature && !s.local, timedOut: s.timedOut, local: s.local };
    return { ok: true, header: p.header, payload: { kind: 'fd', fd: s.fd, offset: 0 }, layers: p.layers, cleanup: () => closeSync(s.fd) };
  }
  let live = p;
  if (opts.keys.requiresSignature) {
    const bad = await check(p, opts.timeoutSeconds);
    if (bad) return { ok: false, unverified: true, reason: `${bad.reason}; the command was not started`, timedOut: bad.timedOut };
    const again = await opts.reopen!();
    // The header the receiver is given must be the one that was verified.
    if (again.kind !== 'stream' || !encodeHeader(again.header).equals(encodeHeader(p.header))) {
      if (again.kind === 'stream') again.abort();
      return { ok: false, reason: 'packet changed while it was being verified; the command was not started' };
    }
    live = again;
  }
  return {
    ok: true,
    header: live.header,
    payload: live.via === 'worker' ? { kind: 'stream', via: 'worker', drain: live.drain, abort: live.abort } : { kind: 'stream', chunks: live.payload, verify: live.verify, abort: live.abort },
    layers: live.layers,
    cleanup: none,
  };
}
