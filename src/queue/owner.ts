// fspool often runs as root (a `zfs receive` needs it) on a queue that another user owns (the
// user a transport writes as). That owner can put anything in the queue's state folder
// (QUEUE/fspool/), a symlink at any name in it or in place of the folder itself, at any moment.
// So a root fspool works there as the owner: with the owner's file-system identity
// (setfsuid(2), per thread) and none of root's supplementary groups, it can open, create, chown
// and write there only what the owner could, and what it creates is the owner's. A symlink the owner placed cannot take root's
// privileges anywhere (as root, a database made where a symlinked folder leads, and chowned to
// the owner so that the owner's processor can write it, would give the owner that directory, or
// any file there). Only the state folder's own files are touched this way: anything else a step
// needs (an addon to load, a job file to read) is opened as we are, before or outside the step.
import { statSync } from 'node:fs';
import { native } from '../sys/native.js';

/** A file-system identity: a user and its group. */
export interface Owner {
  uid: number;
  gid: number;
}

/**
 * The owner of `queueDir` (and group) when fspool runs as root and the queue is someone else's,
 * whose identity fspool takes in the queue's state folder; undefined otherwise.
 */
export function foreignOwner(queueDir: string): Owner | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const { uid, gid } = statSync(queueDir);
  return uid === 0 ? undefined : { uid, gid };
}

/**
 * The identity this thread has now, when it is not its own. It mirrors the thread's own
 * (kernel) state: a nested call with the same owner runs as it is, and only the outermost
 * call gives root's identity back.
 */
let taken: Owner | undefined;

/**
 * `fn()` with the file-system identity of `owner` (none: as we are): the owner's user and group,
 * and no supplementary group, so no group of root's counts either (the owner's own groups are
 * not needed in the owner's folder). `fn` must be synchronous: an await would let other work
 * run as the owner, or the owner's work run as root.
 */
export function asOwner<T>(owner: Owner | undefined, fn: () => T): T {
  if (!owner || (taken && taken.uid === owner.uid && taken.gid === owner.gid)) return fn();
  if (taken) throw new Error(`working as uid ${taken.uid} already, not as uid ${owner.uid}`);
  const ours = native().groups();
  const back = () => native().fsIds(process.geteuid!(), process.getegid!(), ours);
  if (!native().fsIds(owner.uid, owner.gid, [])) {
    back();
    throw new Error(`cannot work as uid ${owner.uid} (setfsuid)`);
  }
  taken = owner;
  try {
    const r = fn();
    if (r instanceof Promise) throw new Error('asOwner: fn returned a promise');
    return r;
  } finally {
    taken = undefined;
    // Back to root: the effective ids always may be taken again.
    if (!back()) throw new Error('cannot take back our own file-system identity (setfsuid)');
  }
}

/** What a symlink in the state folder (or in its place) is called wherever it is met. */
export function symlinkProblem(link: string): string {
  return `${link} is a symlink, which fspool does not follow there`;
}

/** How to mend what symlinkProblem says. */
export const SYMLINK_FIX = 'replace the symlink with what it points to, or remove it';
