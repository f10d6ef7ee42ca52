// outbox-resend: send again every kept packet that the newest receipt does not show the
// receiver holding (spec/receipts.md). The outbox is only read: the lock is held while the
// list is taken, not while packets are sent, so prepare and outbox-apply are never kept
// waiting by a slow transport. A packet pruned meanwhile is skipped.
import { closeSync, fstatSync, fsyncSync, lstatSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, FspoolError } from '../errors.js';
import { log } from '../log.js';
import { crashPoint } from '../sys/crashPoint.js';
import { createNew, fsyncDir } from '../sys/durable.js';
import { copyFd, openAsIs } from '../sys/fd.js';
import { runShell, shellFailure } from '../sys/shell.js';
import { type Entry, type Outbox, standing } from './outbox.js';

export interface ResendOptions {
  toDir?: string;
  exec?: string;
  olderThanSeconds: number;
}

export interface ResendPlan {
  send: Entry[];
  held: number;
  passed: number;
  beyond: number;
  /** Ran on the receiver cut short: a copy sent again would not run there (its seq is done). */
  cutShort: number;
  recent: number;
}

/** What would be sent now, and why the others are not. */
export async function planResend(outbox: Outbox, olderThanSeconds: number, now = Date.now()): Promise<ResendPlan> {
  const lock = await outbox.lock(60);
  let kept: Entry[];
  try {
    outbox.tidy();
    kept = outbox.list().kept;
  } finally {
    lock.release();
  }
  const s = outbox.readState();
  const plan: ResendPlan = { send: [], held: 0, passed: 0, beyond: 0, cutShort: 0, recent: 0 };
  for (const e of kept) {
    const at = standing(e, s);
    if (at === 'cut-short') plan.cutShort++;
    else if (at !== 'missing') plan[at]++;
    else {
      const mtime = statSync(outbox.packetPath(e), { throwIfNoEntry: false })?.mtimeMs;
      if (mtime === undefined) continue;
      if ((now - mtime) / 1000 < olderThanSeconds) plan.recent++;
      else plan.send.push(e);
    }
  }
  return plan;
}

/** Send the plan's packets; returns how many went, and throws at the end if any failed. */
export async function resend(outbox: Outbox, opts: ResendOptions): Promise<{ sent: number; plan: ResendPlan }> {
  const plan = await planResend(outbox, opts.olderThanSeconds);
  let sent = 0;
  const failed: string[] = [];
  for (const e of plan.send) {
    let fd: number;
    try {
      // As it is (never a FIFO's wait, never a symlink's target): only the packet file prepare kept.
      fd = openAsIs(outbox.packetPath(e));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // acknowledged meanwhile
      throw new FspoolError(`cannot read ${outbox.packetPath(e)}: ${describe(err)}; it is not the packet prepare kept`);
    }
    try {
      if (!fstatSync(fd).isFile()) throw new FspoolError(`${outbox.packetPath(e)} is not a regular file: it is not the packet prepare kept; nothing more was re-sent`);
      if (opts.toDir !== undefined) {
        const r = intoDir(opts.toDir, e, fd);
        if (r === 'sent') sent++;
        else if (r !== 'there') {
          failed.push(`seq ${e.seq}: ${r}`);
          log.error(`re-sending seq ${e.seq}: ${r}`);
        }
      } else {
        const r = await runShell(opts.exec!, fd, { FSPOOL_SEQ: String(e.seq), FSPOOL_PACKET: e.id, FSPOOL_STREAM: outbox.stream });
        const why = shellFailure(r);
        if (why) {
          failed.push(`seq ${e.seq}: "${opts.exec}" ${why}`);
          log.error(`re-sending seq ${e.seq}: "${opts.exec}" ${why}`);
        } else {
          sent++;
          log.info(`re-sent seq ${e.seq}`);
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  if (failed.length > 0) throw new FspoolError(`${failed.length} of ${plan.send.length} packet(s) could not be re-sent (${failed[0]}${failed.length > 1 ? ', ...' : ''}); they stay in the outbox`);
  return { sent, plan };
}

/**
 * Into a directory as a synced folder wants it: a temp name that is not a job name, fsync,
 * rename to `fspl-ID.fspl`, fsync the directory. A regular file of that name and size already
 * there is this packet, not yet taken away: it is not written again. Anything else under the
 * name (a symlink, an empty file: the directory may be shared) is replaced, but a directory:
 * that packet is not sent (said, and the others go on). Returns what became of it, or why not.
 */
function intoDir(dir: string, e: Entry, fd: number): 'sent' | 'there' | string {
  const name = `fspl-${e.id}.fspl`;
  const dest = join(dir, name);
  const there = lstatSync(dest, { throwIfNoEntry: false });
  if (there?.isFile() && there.size === fstatSync(fd).size) {
    log.info(`seq ${e.seq}: ${dest} is there already`);
    return 'there';
  }
  // A directory cannot be renamed over: this packet waits for a person (the others go on).
  if (there?.isDirectory()) return `${dest} is a directory, which the packet cannot replace; remove it`;
  const tmp = join(dir, `.${name}.tmp`);
  let out: number;
  try {
    out = createNew(tmp);
  } catch (err) {
    throw new FspoolError(`cannot write into ${dir}: ${describe(err)}`);
  }
  try {
    copyFd(fd, out);
    fsyncSync(out);
  } catch (err) {
    closeSync(out);
    rmSync(tmp, { force: true });
    throw new FspoolError(`cannot write ${tmp}: ${describe(err)}; nothing more was re-sent`);
  }
  closeSync(out);
  crashPoint('outbox-resend-before-rename');
  try {
    renameSync(tmp, dest);
  } catch (err) {
    rmSync(tmp, { force: true });
    return `cannot put it at ${dest}: ${describe(err)}`;
  }
  fsyncDir(dir);
  log.info(`re-sent seq ${e.seq} as ${dest}`);
  return 'sent';
}
