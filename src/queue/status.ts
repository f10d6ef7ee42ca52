// queue-status: what a queue is doing, from its files (authoritative), the journal and
// /proc/locks, without taking any lock (spec/state-db.md, "Status"). The verdict, for
// monitoring: healthy, stalled (work is waiting and nothing has moved it for a while) or
// failing (a person is needed).
import { type Stats, statSync } from 'node:fs';
import { someOf } from '../errors.js';
import { ownerAndMode } from '../sys/access.js';
import type { Header } from '../packet/header.js';
import { FAILED_RUNS, type Journal, packetId, type RunRow } from './journal.js';
import { lockHolder } from './lockHolder.js';
import { quarantined } from './quarantine.js';
import type { FileIdentity } from './jobfile.js';
import type { Queue, ScannedJob } from './queue.js';
import { lackOfRoom, readOnlyFs } from './room.js';

export type Verdict = 'healthy' | 'stalled' | 'failing';

/** Exit statuses of queue-status (spec/exit-codes.md); 1 and 2 keep their usual meaning. */
export const VERDICT_EXIT: Record<Verdict, number> = { healthy: 0, stalled: 3, failing: 4 };

export interface FileJob {
  name: string;
  path: string;
  header: Header;
  packet: string;
}

export interface Status {
  verdict: Verdict;
  reasons: string[];
  nextSeq: bigint | undefined;
  /** Jobs (distinct seqs) at or above nextseq: due or waiting. */
  pending: number;
  due: FileJob[];
  gap: { seq: bigint; waiting: number; lowest: bigint; since: number } | undefined;
  stale: StaleJob[];
  duplicates: Array<{ seq: bigint; files: FileJob[] }>;
  ambiguous: Array<{ seq: bigint; files: FileJob[] }>;
  unreadable: ScannedJob[];
  quarantine: string[];
  lastSuccess: RunRow | undefined;
  lastFailure: RunRow | undefined;
  /** Attempts left 'running' by a processor that is gone. */
  interrupted: RunRow[];
  processor: { known: boolean; pid?: number; current?: RunRow };
  journal: boolean;
  /** Why no job can be recorded (the queue's file system mounted read-only or too full, or its folder shut to the processor), with the fix; never for an append-only queue. */
  noRoom: string | undefined;
  /** Why the queue's processor cannot read the due job, which this reader can, with the fix. */
  dueShut: string | undefined;
  /** When nextseq was last rewritten (its mtime): a processor's progress, fspl's too. */
  nextseqChanged: number | undefined;
  /**
   * Files of packets released from quarantine that have not run to an end since, with the
   * latest finished run of each after its release: a processor runs them before the due job.
   */
  released: Array<FileJob & { last: RunRow | undefined }>;
}

/** The files of packets released from quarantine, waiting to run once more (see Status.released). */
function releasedJobs(jobs: FileJob[], next: bigint | undefined, journal: Journal): Status['released'] {
  if (!journal.active || next === undefined) return [];
  const released = journal.releasedFiles();
  if (released.size === 0) return [];
  return jobs
    .filter((j) => j.header.seq < next && released.get(j.name) === j.packet)
    .map((j) => {
      const rows = journal.history({ seq: j.header.seq }).filter((r) => r.packet === j.packet);
      const since = rows.findIndex((r) => r.outcome === 'released');
      const last = rows.slice(0, since < 0 ? rows.length : since).find((r) => r.outcome !== 'running');
      return { ...j, last };
    });
}

/**
 * A file below nextseq and what the journal knows of its packet: `processed` (a success),
 * `ran` (a run the queue moved past: it failed under delete, leave or quarantine, or its
 * outcome went unrecorded), or neither: it never ran here (its sender may have restarted its
 * numbering), and it is no one's to remove without a look. Without a journal nothing is known.
 */
export type StaleJob = FileJob & { processed: RunRow | undefined; ran: RunRow | undefined };

/**
 * The stale files, told apart by the journal. A file a person released from quarantine is not
 * stale though its seq is below nextseq: it waits to run once more, out of turn (releasedJobs).
 */
export function staleJobs(jobs: FileJob[], next: bigint, journal: Journal): StaleJob[] {
  const released = journal.active ? journal.releasedFiles() : new Map<string, string>();
  const below = jobs.filter((j) => j.header.seq < next && released.get(j.name) !== j.packet);
  if (below.length === 0) return [];
  const ends = journal.active ? journal.endsOf(below.map((j) => j.packet)) : new Map<string, { processed?: RunRow; ran?: RunRow }>();
  return below.map((j) => ({ ...j, processed: ends.get(j.packet)?.processed, ran: ends.get(j.packet)?.ran }));
}

export interface StatusOptions {
  /** A gap waited on longer than this, or a due job no processor runs, is "stalled". */
  stalledAfterSeconds: number;
  now?: number;
}

/**
 * When a file arrived in jobs/: its inode change time, which the rename into jobs/ sets (an
 * mtime may be the sender's, kept by rsync -t). The scan's lstat has it, so a queue of many
 * waiting jobs costs no stat each (a scrape of serve's metrics reads it every time).
 */
const arrivedMs = (path: string, identity?: FileIdentity): number | undefined => {
  if (identity) return identity.ctimeMs;
  try {
    return statSync(path).ctimeMs;
  } catch {
    return undefined;
  }
};

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The uid of the queue's processor, whose rights judge whether a job can be recorded. nextseq is
 * the processor's own file (each commit renames its temp file into place), so its owner is the
 * processor's user; without one, the queue directory's owner. A root processor of a queue another
 * user owns leaves it that user's (seqfile.ts), and is judged as that user: a room that root's
 * reserved blocks would still give is not counted on, as the owner's tools cannot use it.
 */
function processorUid(queue: Queue, nextseq: Stats | undefined): number | undefined {
  if (nextseq) return nextseq.uid;
  try {
    return statSync(queue.dir).uid;
  } catch {
    return undefined;
  }
}

export function queueStatus(queue: Queue, scanned: ScannedJob[], journal: Journal, opts: StatusOptions): Status {
  const now = opts.now ?? Date.now();
  const next = queue.nextseq.readIfExists();
  const jobs: FileJob[] = [];
  const identities = new Map<FileJob, FileIdentity | undefined>();
  const unreadable: ScannedJob[] = [];
  // Files a processor refused under --require-signature: their headers proved nothing, so they
  // are not jobs (nor due, nor ambiguous beside the genuine packet), but files to look at.
  const packets = scanned.map((j) => (j.header ? packetId(j.header) : ''));
  // Named field by field: a scanned job may be a view whose fields are getters, which a spread drops.
  const refused = journal.stillRefused(scanned.flatMap((j, i) => (j.header ? [{ name: j.name, packet: packets[i]!, identity: j.identity }] : [])));
  for (const [i, j] of scanned.entries()) {
    const why = refused.get(j.name);
    if (!j.header) unreadable.push(j);
    else if (why !== undefined) unreadable.push({ name: j.name, path: j.path, identity: j.identity, error: why, refused: true });
    else {
      const job = { name: j.name, path: j.path, header: j.header, packet: packets[i]! };
      jobs.push(job);
      identities.set(job, j.identity);
    }
  }
  const bySeq = new Map<bigint, FileJob[]>();
  for (const j of jobs) {
    const same = bySeq.get(j.header.seq);
    // Pushed, not copied: a copy per file is quadratic in the copies of one seq, and hard links
    // make tens of thousands of them cost nothing to whoever may write jobs/.
    if (same) same.push(j);
    else bySeq.set(j.header.seq, [j]);
  }

  const stale = next === undefined ? [] : staleJobs(jobs, next, journal);
  const ahead = [...bySeq.entries()].filter(([seq]) => next === undefined || seq >= next).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const duplicates: Status['duplicates'] = [];
  const ambiguous: Status['ambiguous'] = [];
  for (const [seq, files] of ahead) {
    if (files.length < 2) continue;
    if (new Set(files.map((f) => f.packet)).size > 1) ambiguous.push({ seq, files });
    else duplicates.push({ seq, files });
  }
  const due = next === undefined ? [] : (bySeq.get(next) ?? []);
  let gap: Status['gap'];
  if (next !== undefined && due.length === 0 && ahead.length > 0) {
    const waitingFiles = ahead.flatMap(([, f]) => f);
    // A loop, not Math.min(...times): spread into arguments, a few hundred thousand files
    // would overflow the stack.
    let since = Infinity;
    for (const f of waitingFiles) since = Math.min(since, arrivedMs(f.path, identities.get(f)) ?? Infinity);
    gap = { seq: next, waiting: ahead.length, lowest: ahead[0]![0], since: since === Infinity ? now : since };
  }

  const nextseqStat = statSync(queue.nextseq.path, { throwIfNoEntry: false });
  const writer = processorUid(queue, nextseqStat);
  const holder = lockHolder(queue.nextseq.lockPath);
  const running = journal.history({ outcomes: ['running'] });
  const current = holder.pid !== undefined ? running.find((r) => r.pid === holder.pid) : undefined;
  const interrupted = running.filter((r) => r !== current && !(holder.pid !== undefined && r.pid === holder.pid));

  const s: Status = {
    verdict: 'healthy',
    reasons: [],
    nextSeq: next,
    pending: ahead.length,
    due,
    gap,
    stale,
    duplicates,
    ambiguous,
    unreadable,
    quarantine: quarantined(queue.dir),
    lastSuccess: journal.latest(['success']),
    lastFailure: journal.latest(FAILED_RUNS),
    interrupted,
    processor: { known: holder.known, pid: holder.pid, current },
    journal: journal.active,
    // An append-only queue runs no job: a full disk is for its sender to see, when it writes.
    noRoom: next === undefined ? undefined : (noRoom(queue, writer) ?? shutToProcessor(queue, writer)),
    dueShut: dueShutToProcessor(queue, due, () => readerOfJobs(queue, writer, journal)),
    nextseqChanged: nextseqStat?.mtimeMs,
    released: releasedJobs(jobs, next, journal),
  };
  judge(s, journal, now, opts.stalledAfterSeconds);
  return s;
}

/** Why no job can be recorded on the queue's file system, with the fix; undefined if one can. */
function noRoom(queue: Queue, writer: number | undefined): string | undefined {
  if (readOnlyFs(queue.dir)) return `the file system of ${queue.dir} is mounted read-only: no job runs until it is writable; remount it read-write`;
  const lack = lackOfRoom(queue.dir, writer === 0);
  return lack && `${lack}: no job runs until there is room; free some space`;
}

/**
 * Why the queue's processor (`uid`, processorUid) cannot record a job, the queue's folder being
 * shut to it (nextseq is renamed into it), with the fix; undefined if it can, or may. jobs/ is
 * not judged: a processor under --never-delete needs no more than to read it. Judged from the
 * mode bits, as this reader cannot ask access(2) for another user: the owner's bits for the
 * owner, the others' for anyone else; a folder whose group may write is given the benefit of the
 * doubt (the processor may be in that group).
 */
function shutToProcessor(queue: Queue, uid: number | undefined): string | undefined {
  if (uid === undefined || uid === 0) return undefined;
  let st;
  try {
    st = statSync(queue.dir);
  } catch {
    return undefined;
  }
  if (mayBy(st, uid, 0o3)) return undefined;
  return `${queue.dir} (${ownerAndMode(queue.dir)}) is not writable by uid ${uid}, the owner of nextseq (the processor's user): no job can be recorded, so none runs; make it writable, or run the processor as a user who may write it`;
}

/**
 * Whether the mode bits let `uid` have `need` (0o4 read, 0o2 write, 0o1 search) of a file: the
 * owner's bits for its owner; for anyone else the others' bits, or the group's, as this reader
 * cannot know another user's groups (the benefit of the doubt).
 */
function mayBy(st: Stats, uid: number, need: number): boolean {
  const bits = st.uid === uid ? (st.mode >> 6) & 0o7 : (st.mode & 0o7) | ((st.mode >> 3) & 0o7);
  return (bits & need) === need;
}

/**
 * The user whose rights the queue's processor reads job files with, when it can be known.
 * nextseq's owner (`writer`) is the processor's user, but for a root fspool processing a queue
 * another user owns, which leaves nextseq that user's: when nextseq's owner is the queue's owner,
 * the processor is the one fspool recorded at its latest start (Journal.recordRunner), and unknown
 * if none did (fspl keeps no journal; a queue not processed since this was recorded).
 */
function readerOfJobs(queue: Queue, writer: number | undefined, journal: Journal): number | undefined {
  let owner: number;
  try {
    owner = statSync(queue.dir).uid;
  } catch {
    return undefined;
  }
  return writer !== owner ? writer : journal.runnerUid();
}

/**
 * Why the queue's processor (`reader()`: readerOfJobs, asked only when a job is due) cannot read
 * the due job, with the fix; undefined if it can, or may, or the processor is not known. A status read by root (a monitoring job) reads
 * every file, and would call healthy a queue whose processor stops at its due job at every run; one
 * read by the processor's user finds the file unreadable itself. Judged from the mode bits as
 * shutToProcessor judges the folder (jobs/ too: it is read and searched), a group's read given the
 * benefit of the doubt; a root processor reads every file. One copy of the due job that cannot be
 * read is enough: after the job ran from another, the queue stops at it (it could hold the next seq).
 */
function dueShutToProcessor(queue: Queue, due: FileJob[], reader: () => number | undefined): string | undefined {
  if (due.length === 0) return undefined;
  const uid = reader();
  if (uid === undefined || uid === 0 || uid === process.geteuid?.()) return undefined;
  const shut = (path: string, need: number): boolean => {
    try {
      return !mayBy(statSync(path), uid, need);
    } catch {
      return false;
    }
  };
  const jobs = queue.jobsDir;
  const fix = 'let that user read it, and have whatever writes the queue make files that user may read';
  if (shut(jobs, 0o5)) return `${jobs} (${ownerAndMode(jobs)}) cannot be read by uid ${uid}, the queue's processor: no job runs; ${fix}`;
  const file = due.find((d) => shut(d.path, 0o4));
  return file && `job ${file.header.seq} (${file.name}, ${ownerAndMode(file.path)}) cannot be read by uid ${uid}, the queue's processor: the queue stops at it; ${fix}`;
}

/** When the journal's latest run ended, if one did. */
function lastEnd(s: Status): number | undefined {
  const ends = [s.lastSuccess?.endedAt, s.lastFailure?.endedAt].filter((t): t is number => typeof t === 'number');
  return ends.length ? Math.max(...ends) : undefined;
}

function judge(s: Status, journal: Journal, now: number, stalledAfter: number): void {
  const failing: string[] = [];
  const stalled: string[] = [];
  const dueAmbiguous = s.nextSeq !== undefined && new Set(s.due.map((d) => d.packet)).size > 1;
  if (dueAmbiguous) failing.push(`seq ${s.nextSeq} is ambiguous: ${s.due.length} different packets have it; remove the wrong one`);
  if (s.due.length > 0 && !dueAmbiguous) {
    const last = journal.history({ seq: s.nextSeq }).find((r) => r.packet === s.due[0]!.packet && r.outcome !== 'running');
    if (last && FAILED_RUNS.includes(last.outcome)) {
      failing.push(`job ${s.nextSeq} failed at ${iso(last.endedAt ?? last.startedAt)} (${last.outcome}${last.detail ? `: ${last.detail}` : ''}); it is kept and retried`);
    }
  }
  for (const r of s.released) {
    if (!r.last || !FAILED_RUNS.includes(r.last.outcome)) continue;
    const at = iso(r.last.endedAt ?? r.last.startedAt);
    failing.push(
      `job ${r.header.seq} (${r.name}), released from quarantine, failed again at ${at} (${r.last.outcome}${r.last.detail ? `: ${r.last.detail}` : ''}); it is kept, and each run tries it again before job ${s.nextSeq}`,
    );
  }
  if (s.noRoom) failing.push(s.noRoom);
  if (s.dueShut) failing.push(s.dueShut);
  if (s.quarantine.length > 0) {
    failing.push(`${s.quarantine.length} job(s) in quarantine wait for a person: ${someOf(s.quarantine)}; see queue-quarantine`);
  }
  if (s.unreadable.length > 0) {
    const files = someOf(s.unreadable.map((u) => `${u.name} (${u.error})`));
    failing.push(`${s.unreadable.length} job file(s) cannot be read: ${files}; ${unreadableFix(s.unreadable)}`);
  }
  const neverRan = journal.active ? s.stale.filter((f) => !f.processed && !f.ran) : [];
  if (neverRan.length > 0) {
    const lowest = neverRan.reduce((m, f) => (f.header.seq < m ? f.header.seq : m), neverRan[0]!.header.seq);
    failing.push(
      `${neverRan.length} packet(s) below next seq ${s.nextSeq} never ran here: ${someOf(neverRan.map((f) => `${f.name} (seq ${f.header.seq})`))}; ` +
        `if their sender restarted its numbering, queue-set-next ${lowest} runs them; if not, queue-clean --stale --force removes them`,
    );
  }

  const working = s.processor.pid !== undefined;
  const limit = stalledAfter * 1000;
  // A processor waiting at a gap (a watch) does not move it: only the missing packet does.
  if (s.gap && now - s.gap.since >= limit) {
    stalled.push(`waiting for seq ${s.gap.seq} since ${iso(s.gap.since)} (${s.gap.waiting} job(s) behind the gap)`);
  }
  if (s.due.length > 0 && failing.length === 0) {
    const since = Math.min(...s.due.map((d) => arrivedMs(d.path) ?? now));
    if (!working) {
      if (now - since >= limit) stalled.push(`job ${s.nextSeq} is due since ${iso(since)} and no processor has run it`);
    } else if (!s.processor.current && s.journal && now - Math.max(since, lastEnd(s) ?? since, s.nextseqChanged ?? since) >= limit) {
      // The lock's holder has no run of it in the journal, which this reader can read: a script
      // holding nextseq.lock, or a processor that hangs, or waits for a slot all this time.
      // Counted from the last sign of progress (a run's end; nextseq rewritten, which fspl does
      // after each job too): a processor between two jobs of a backlog is not sitting on it.
      stalled.push(
        `job ${s.nextSeq} is due since ${iso(since)}, and pid ${s.processor.pid} holds the queue lock with no run of it in the journal (a processor that hangs or waits for a slot of serve's max_parallel, or a script holding nextseq.lock)`,
      );
    }
  }
  if (failing.length > 0) {
    s.verdict = 'failing';
    s.reasons = [...failing, ...stalled];
  } else if (stalled.length > 0) {
    s.verdict = 'stalled';
    s.reasons = stalled;
  }
}

/**
 * What to do about job files that cannot be read, from why: a processor not allowed to open
 * them needs access, not a key; one that refused a signature needs the signer's key, unless
 * the file is a forgery.
 */
export function unreadableFix(jobs: ScannedJob[]): string {
  const kinds = new Set(jobs.map((j) => (j.nameNotUtf8 ? 'name' : j.refused ? 'refused' : /\(EACCES\)|\(EPERM\)/.test(j.error ?? '') ? 'denied' : 'other')));
  const fixes: string[] = [];
  if (kinds.has('denied')) fixes.push('give the reader access to them (or run as their owner)');
  if (kinds.has('name')) fixes.push('rename those whose names are not UTF-8');
  if (kinds.has('other')) fixes.push('give the key or decoder they need (-d, --decrypt-key)');
  if (kinds.has('refused')) fixes.push("give a genuine one's signing key to --require-signature (or, if verifying it timed out, a larger --timeout)");
  return `${fixes.join('; ')}, or remove them`;
}
