// The journal: one row per run of a job (an attempt), in QUEUE/fspool/state.db's `runs`
// table (spec/state-db.md). A processor writes a row when it starts a job ('running'), and
// finishes it with the outcome and the action decided (advance and delete, quarantine, retry,
// stop...). An action that changes the queue is recorded durably *before* it is carried out
// and marked done after, so that a crash in between is completed by the next run instead of
// running the job again (spec/job-lifecycle.md, "Crash points").
//
// Without a database (none, read-only, damaged, locked) the journal keeps its counts in
// memory for the current run, and fspool behaves as fspl's order of commit allows.
import type { Header } from '../packet/header.js';
import type { StateDb, Tx } from './stateDb.js';

/** How a run ended, in the journal's words (spec/state-db.md lists them). */
export type RunKind =
  | 'success'
  | 'exit-code'
  | 'signal'
  | 'timeout'
  | 'decoder-failure'
  | 'early-exit'
  | 'fail-packet'
  | 'bad-packet'
  | 'cannot-start'
  | 'kept'
  | 'interrupted'
  | 'error';

/** What the journal records of a run besides the verdict. */
export interface RunFacts {
  kind: RunKind;
  exitCode?: number;
  signal?: string;
  /** Payload bytes the receiver took (read from the file, or written into its pipe). */
  bytes?: number;
  stderrTail?: string;
  /**
   * The job file's size, when it ran as a plain packet (no decoding layer): receipts carry it,
   * so that a sender can tell a copy cut short in transit from the packet it sent.
   */
  fileSize?: number;
}

/** Outcomes of the journal: a run's RunKind, or what the processor could not write itself. */
export type JournalOutcome = RunKind | 'running' | 'crashed' | 'unrecorded' | 'released' | 'dropped' | 'refused';

export const OUTCOMES: readonly JournalOutcome[] = [
  'running',
  'success',
  'exit-code',
  'signal',
  'timeout',
  'decoder-failure',
  'early-exit',
  'fail-packet',
  'bad-packet',
  'cannot-start',
  'kept',
  'error',
  'interrupted',
  'crashed',
  'unrecorded',
  'released',
  'dropped',
  'refused',
];

/** Outcomes that count as the job failing (toward --retries and quarantine). */
export const FAILURES: readonly JournalOutcome[] = ['exit-code', 'signal', 'timeout', 'decoder-failure', 'early-exit', 'fail-packet', 'bad-packet', 'error'];

/**
 * Runs that did not succeed and left the job due: the failures, and those that stopped the run
 * without being the job's (cannot-start, kept). What `--outcome failure` selects and
 * queue-status reports as the last failure.
 */
export const FAILED_RUNS: readonly JournalOutcome[] = [...FAILURES, 'cannot-start', 'kept'];

/**
 * What the processor decided after a run:
 * delete     - the job is done: nextseq advanced (sequence order), its file(s) deleted;
 * keep       - the job is done, its file(s) kept (--never-delete, or a failure under leave);
 * quarantine - the job is done: its file(s) moved to QUEUE/fspool/quarantine/;
 * retry      - it failed and is run again in this run after a pause (--retries);
 * stop       - it failed; the run stopped and the job stays queued.
 */
export type Action = 'delete' | 'keep' | 'quarantine' | 'retry' | 'stop';
/** Actions that change the queue, recorded before they are carried out. */
export const COMMITTING: readonly Action[] = ['delete', 'keep', 'quarantine'];

/**
 * Why the job ran when it did: its turn in sequence order, by timestamp, or out of turn after
 * `queue-quarantine --release` (then nextseq is not touched).
 */
export type OrderBy = 'sequence' | 'timestamp' | 'released';
export type CommitState = 'pending' | 'done' | 'recovered';

export interface RunRow {
  id: number;
  seq: bigint;
  packet: string;
  file: string;
  ctimeSecs: bigint;
  ctimeNanos: number;
  attempt: number;
  orderBy: OrderBy;
  pid: number;
  startedAt: number;
  endedAt: number | null;
  outcome: JournalOutcome;
  exitCode: number | null;
  signal: string | null;
  detail: string | null;
  bytes: number | null;
  stderrTail: string | null;
  action: Action | null;
  movedTo: string | null;
  commit: CommitState | null;
}

interface RawRow {
  id: number;
  seq: string;
  packet: string;
  file: string;
  ctime_secs: string;
  ctime_nanos: number;
  attempt: number;
  order_by: OrderBy;
  pid: number;
  started_at: number;
  ended_at: number | null;
  outcome: JournalOutcome;
  exit_code: number | null;
  signal: string | null;
  detail: string | null;
  bytes: number | null;
  stderr_tail: string | null;
  action: Action | null;
  moved_to: string | null;
  commit_state: CommitState | null;
}

const toRow = (r: RawRow): RunRow => ({
  id: r.id,
  seq: BigInt(r.seq),
  packet: r.packet,
  file: r.file,
  ctimeSecs: BigInt(r.ctime_secs),
  ctimeNanos: r.ctime_nanos,
  attempt: r.attempt,
  orderBy: r.order_by,
  pid: r.pid,
  startedAt: r.started_at,
  endedAt: r.ended_at,
  outcome: r.outcome,
  exitCode: r.exit_code,
  signal: r.signal,
  detail: r.detail,
  bytes: r.bytes,
  stderrTail: r.stderr_tail,
  action: r.action,
  movedTo: r.moved_to,
  commit: r.commit_state,
});

export { packetId } from '../packet/identity.js';

/** The uid of the latest fspool processor of the queue, kept in meta. */
const RECORD_RUNNER = "INSERT INTO meta (key, value) VALUES ('runner_uid', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/** The job a run is about. */
export interface JobRef {
  seq: bigint;
  file: string;
  header: Header;
  packet: string;
}

/** A run in progress: its row (when there is a database) and its attempt number. */
export interface Attempt {
  id: number | undefined;
  attempt: number;
  job: JobRef;
}

// A journal's history is never pruned, so every lookup of one packet must go through its
// index: with outcome = 'success' as an indexable term, SQLite's planner (no ANALYZE
// statistics) picks the outcome index and walks every success the queue ever had, at each job.
// The unary + keeps the outcome a filter on the packet's own rows.
const LAST_SUCCESS = "SELECT * FROM runs WHERE packet = ? AND +outcome = 'success' ORDER BY id DESC LIMIT 1";
const COUNT_FAILURES = `SELECT count(*) AS n FROM runs WHERE packet = ? AND outcome IN (${FAILURES.map(() => '?').join(', ')})`;

export interface HistoryFilter {
  seq?: bigint;
  outcomes?: JournalOutcome[];
  limit?: number;
}

export class Journal {
  /** Counts of this process, used when the database is not (or no longer) there. */
  private readonly localAttempts = new Map<string, number>();
  private readonly localFailures = new Map<string, number>();

  constructor(private readonly state: StateDb | undefined) {}

  /** True while runs are being recorded in the database. */
  get active(): boolean {
    return this.state?.usable === true;
  }

  /**
   * Rows left 'running' by an earlier processor (the caller holds the queue lock, so no live
   * processor owns them), oldest first. Either that fspool died while the job ran ('crashed':
   * the job is still due and runs again), or it lost the journal during the run (another
   * program locked the database, the disk filled) and went on without it: then `judge` says
   * the queue moved past the job (its seq is below nextseq) or that this very process lost
   * the journal ('lost': it is alive, and only the record of how the attempt ended is
   * missing), and the row is 'unrecorded', not a crash.
   */
  closeAbandoned(judge: (r: RunRow) => 'crashed' | 'moved-past' | 'lost', now = Date.now()): { crashed: RunRow[]; unrecorded: RunRow[] } {
    // Almost always there are none: a read says so without taking the write lock.
    if (this.state?.read((tx) => tx.stmt("SELECT 1 FROM runs WHERE outcome = 'running' LIMIT 1").get()) === undefined) {
      return { crashed: [], unrecorded: [] };
    }
    return (
      this.state?.write((tx) => {
        const rows = (tx.stmt("SELECT * FROM runs WHERE outcome = 'running' ORDER BY id").all() as RawRow[]).map(toRow);
        const mark = tx.stmt('UPDATE runs SET outcome = ?, detail = ? WHERE id = ?');
        const at = `found by pid ${process.pid} at ${new Date(now).toISOString()}`;
        const out = { crashed: [] as RunRow[], unrecorded: [] as RunRow[] };
        for (const r of rows) {
          const verdict = judge(r);
          if (verdict !== 'crashed') {
            const after = verdict === 'moved-past' ? 'the queue has moved past it' : 'the job stays due';
            mark.run('unrecorded', `fspool (pid ${r.pid}) could not record how this attempt ended (the journal was unavailable); ${after}; ${at}`, r.id);
            out.unrecorded.push(r);
          } else {
            mark.run('crashed', `fspool (pid ${r.pid}) died during this attempt; ${at}`, r.id);
            out.crashed.push(r);
          }
        }
        return out;
      }) ?? { crashed: [], unrecorded: [] }
    );
  }

  /** Runs whose action was recorded but not (known to be) carried out, oldest first. */
  pending(): RunRow[] {
    return this.state?.read((tx) => (tx.stmt("SELECT * FROM runs WHERE commit_state = 'pending' ORDER BY id").all() as RawRow[]).map(toRow)) ?? [];
  }

  /**
   * Record the start of a run. With `lookBack`, also return the packet's latest earlier
   * success, read in the same transaction (one transaction per job start, not two).
   */
  begin(job: JobRef, orderBy: OrderBy, lookBack = false): Attempt & { lastSuccess?: RunRow } {
    const startedAt = Date.now();
    const local = (this.localAttempts.get(job.packet) ?? 0) + 1;
    this.localAttempts.set(job.packet, local);
    const r = this.state?.write((tx) => {
      const success = lookBack ? (tx.stmt(LAST_SUCCESS).get(job.packet) as RawRow | undefined) : undefined;
      const before = (tx.stmt('SELECT count(*) AS n FROM runs WHERE packet = ? AND attempt > 0').get(job.packet) as { n: number }).n;
      const attempt = before + 1;
      const info = tx
        .stmt(
          `INSERT INTO runs (seq, packet, file, ctime_secs, ctime_nanos, attempt, order_by, pid, started_at, outcome, stream)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)`,
        )
        .run(String(job.seq), job.packet, job.file, String(job.header.ctimeSecs), job.header.ctimeNanos, attempt, orderBy, process.pid, startedAt, job.header.stream ?? null);
      return { id: Number(info.lastInsertRowid), attempt, lastSuccess: success && toRow(success) };
    });
    return { id: r?.id, attempt: r?.attempt ?? local, job, lastSuccess: r?.lastSuccess };
  }

  /** A run that did not happen after all (its file vanished before it could start). */
  discard(a: Attempt): void {
    const count = this.localAttempts.get(a.job.packet) ?? 1;
    this.localAttempts.set(a.job.packet, count - 1);
    if (a.id !== undefined) this.state?.write((tx) => tx.stmt('DELETE FROM runs WHERE id = ?').run(a.id));
  }

  /**
   * Record how a run ended and what was decided. An action that changes the queue is
   * committed durably (fsync) and left 'pending' until done() says it was carried out.
   */
  finish(a: Attempt, facts: RunFacts, detail: string | undefined, action: Action | undefined, movedTo?: string): void {
    if (FAILURES.includes(facts.kind)) this.localFailures.set(a.job.packet, (this.localFailures.get(a.job.packet) ?? 0) + 1);
    if (a.id === undefined) return;
    const commits = action !== undefined && COMMITTING.includes(action);
    this.state?.write(
      (tx) =>
        tx
          .stmt(
            `UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ?, signal = ?, detail = ?, bytes = ?, stderr_tail = ?,
               file_size = ?, action = ?, moved_to = ?, commit_state = ? WHERE id = ?`,
          )
          .run(
            Date.now(),
            facts.kind,
            facts.exitCode ?? null,
            facts.signal ?? null,
            detail ?? null,
            facts.bytes ?? null,
            facts.stderrTail ?? null,
            facts.fileSize ?? null,
            action ?? null,
            movedTo ?? null,
            commits ? 'pending' : null,
            a.id,
          ),
      commits,
    );
  }

  /** The recorded action was carried out (by its own run, or completed by a later one). */
  done(id: number | undefined, how: 'done' | 'recovered' = 'done', movedTo?: string): void {
    if (id === undefined) return;
    this.state?.write((tx) => tx.stmt('UPDATE runs SET commit_state = ?, moved_to = coalesce(?, moved_to) WHERE id = ?').run(how, movedTo ?? null, id));
  }

  /** Failed runs of this packet, in every run the journal knows (this one included). */
  failures(packet: string): number {
    const n = this.state?.read((tx) => (tx.stmt(COUNT_FAILURES).get(packet, ...FAILURES) as { n: number }).n);
    return Math.max(n ?? 0, this.localFailures.get(packet) ?? 0);
  }

  /** The latest successful run of this packet, if any. */
  lastSuccess(packet: string): RunRow | undefined {
    return this.state?.read((tx) => {
      const r = tx.stmt(LAST_SUCCESS).get(packet) as RawRow | undefined;
      return r && toRow(r);
    });
  }

  /**
   * What the journal knows of each of `packets` (stale files' packets, by identity): its
   * latest success (`processed`), and its latest end of any kind (`ran`): a success, a failure
   * the queue moved past (deleted, kept, quarantined), or an outcome that went unrecorded after
   * the queue moved past it. A stale file with neither never ran here. Read through the packet
   * index, so its cost follows the stale files, not the length of the history.
   */
  endsOf(packets: string[]): Map<string, { processed?: RunRow; ran?: RunRow }> {
    const ends = new Map<string, { processed?: RunRow; ran?: RunRow }>();
    const rows =
      this.state?.read((tx) =>
        (
          tx
            .stmt(
              `SELECT * FROM runs WHERE packet IN (SELECT value FROM json_each(?))
                 AND (outcome IN ('success', 'unrecorded') OR action IN ('delete', 'keep', 'quarantine')) ORDER BY id`,
            )
            .all(JSON.stringify([...new Set(packets)])) as RawRow[]
        ).map(toRow),
      ) ?? [];
    for (const r of rows) {
      const e = ends.get(r.packet) ?? {};
      e.ran = r;
      if (r.outcome === 'success') e.processed = r;
      ends.set(r.packet, e);
    }
    return ends;
  }

  /**
   * A person's act on a quarantined packet, journaled beside its runs (attempt 0, not a run):
   * `released` back into the queue to run once more out of turn, or `dropped` for good.
   */
  recordDecision(ref: Omit<JobRef, 'header'> & { ctimeSecs: bigint; ctimeNanos: number }, what: 'released' | 'dropped', detail: string): boolean {
    const now = Date.now();
    return (
      this.state?.write(
        (tx) =>
          tx
            .stmt(
              `INSERT INTO runs (seq, packet, file, ctime_secs, ctime_nanos, attempt, order_by, pid, started_at, ended_at, outcome, detail, action, commit_state)
               VALUES (?, ?, ?, ?, ?, 0, 'released', ?, ?, ?, ?, ?, ?, 'done')`,
            )
            .run(String(ref.seq), ref.packet, ref.file, String(ref.ctimeSecs), ref.ctimeNanos, process.pid, now, now, what, detail, what === 'dropped' ? 'delete' : null),
        true,
      ) !== undefined
    );
  }

  /**
   * A file the processor will not run under --require-signature (its signature is missing or
   * wrong, or was not verified within --timeout): journaled (attempt 0, not a run) so that
   * queue-status can say why the job it claims does not run. Its header proved nothing, so the
   * row carries no stream (receipts never see it). Once per file and verdict, and again only
   * when the file has changed since (`changedMs`, its ctime: a cron run refusing it again adds
   * nothing, a touched file is refused anew). False if it could not be written.
   */
  recordRefusal(ref: Omit<JobRef, 'header'> & { ctimeSecs: bigint; ctimeNanos: number }, orderBy: OrderBy, detail: string, changedMs: number): boolean {
    const now = Date.now();
    const wrote = this.state?.write((tx) => {
      const last = tx.stmt('SELECT outcome, detail, ended_at FROM runs WHERE packet = ? AND file = ? ORDER BY id DESC LIMIT 1').get(ref.packet, ref.file) as
        | Pick<RawRow, 'outcome' | 'detail' | 'ended_at'>
        | undefined;
      if (last && last.outcome === 'refused' && last.detail === detail && (last.ended_at ?? 0) >= changedMs) return true;
      tx.stmt(
        `INSERT INTO runs (seq, packet, file, ctime_secs, ctime_nanos, attempt, order_by, pid, started_at, ended_at, outcome, detail, commit_state)
         VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, 'refused', ?, 'done')`,
      ).run(String(ref.seq), ref.packet, ref.file, String(ref.ctimeSecs), ref.ctimeNanos, orderBy, process.pid, now, now, detail);
      return true;
    });
    return wrote === true;
  }

  /**
   * Of `packets` (those of the files present), the files whose latest row is a refusal (by
   * packet, then file name): why, and when. Read through the packet index, so that the cost
   * follows the files present, not the refusals of the past (the unary + keeps the planner off
   * the outcome index). A file changed since (renamed
   * over, written) is not the file refused.
   */
  refusals(packets: string[]): Map<string, Map<string, { detail: string; at: number }>> {
    const rows =
      this.state?.read(
        (tx) =>
          tx
            .stmt(
              `SELECT packet, file, detail, ended_at FROM runs r WHERE r.packet IN (SELECT value FROM json_each(?)) AND +r.outcome = 'refused' AND NOT EXISTS (
                 SELECT 1 FROM runs l WHERE l.packet = r.packet AND l.file = r.file AND l.id > r.id)`,
            )
            .all(JSON.stringify([...new Set(packets)])) as Array<{ packet: string; file: string; detail: string; ended_at: number }>,
      ) ?? [];
    const byPacket = new Map<string, Map<string, { detail: string; at: number }>>();
    for (const r of rows) {
      const files = byPacket.get(r.packet) ?? new Map<string, { detail: string; at: number }>();
      files.set(r.file, { detail: r.detail, at: r.ended_at });
      byPacket.set(r.packet, files);
    }
    return byPacket;
  }

  /**
   * Of `files`, those a refusal still holds for, by name, with why: a refusal holds for the file
   * as it was then, and one renamed over it, or written, since (a later inode change) is new.
   */
  stillRefused(files: Array<{ name: string; packet: string; identity?: { ctimeMs: number } }>): Map<string, string> {
    const out = new Map<string, string>();
    if (!this.active || files.length === 0) return out;
    const refusals = this.refusals(files.map((f) => f.packet));
    for (const f of files) {
      const r = refusals.get(f.packet)?.get(f.name);
      if (r && !(f.identity && f.identity.ctimeMs > r.at)) out.set(f.name, r.detail);
    }
    return out;
  }

  /**
   * The files released from quarantine whose packet has not run to an end since (a run that
   * stopped at it under --on-error retry leaves it released), by name, with their packet: each
   * runs once more, out of turn. By file, not by packet: another copy of the packet below
   * nextseq (delivered again, a hard link) ran already, and is stale, not released.
   */
  releasedFiles(): Map<string, string> {
    const rows =
      this.state?.read((tx) =>
        tx
          .stmt(
            // A drop of another quarantined copy of the packet ends no release; the newest
            // release of a name counts.
            `SELECT r.file, r.packet FROM runs r WHERE r.outcome = 'released' AND NOT EXISTS (
               SELECT 1 FROM runs l WHERE l.packet = r.packet AND l.id > r.id AND l.outcome != 'dropped' AND l.action IN ('delete', 'keep', 'quarantine'))
             ORDER BY r.id`,
          )
          .raw(true)
          .all() as Array<[string, string]>,
      ) ?? [];
    return new Map(rows);
  }

  /** The latest row of a packet, if the journal has one. */
  lastRow(packet: string): RunRow | undefined {
    return this.state?.read((tx) => {
      const r = tx.stmt('SELECT * FROM runs WHERE packet = ? ORDER BY id DESC LIMIT 1').get(packet) as RawRow | undefined;
      return r && toRow(r);
    });
  }

  /** Runs, newest first. */
  history(f: HistoryFilter = {}): RunRow[] {
    return this.state?.read((tx) => query(tx, f)) ?? [];
  }

  /**
   * Record that this process's user processes the queue (runner_uid): whose rights its jobs are
   * read with, by which a status read by another user (root's monitoring) judges whether the due
   * job can be read (status.ts). At a processor's start, before it meets a file it cannot read;
   * written only when it changes (every write transaction moves the journal's position).
   */
  recordRunner(): void {
    const uid = process.geteuid?.();
    if (uid === undefined || !this.active || this.runnerUid() === uid) return;
    this.state?.write((tx) => tx.stmt(RECORD_RUNNER).run(BigInt(uid)));
  }

  /** The uid of the latest fspool processor of the queue (recordRunner), if one recorded it. */
  runnerUid(): number | undefined {
    const v = this.state?.read((tx) => (this.state!.schema >= 3 ? tx.stmt("SELECT value FROM meta WHERE key = 'runner_uid'").pluck().get() : undefined));
    return typeof v === 'number' ? v : undefined;
  }

  /** The newest run with one of these outcomes. */
  latest(outcomes: readonly JournalOutcome[]): RunRow | undefined {
    return this.history({ outcomes: [...outcomes], limit: 1 })[0];
  }
}

function query(tx: Tx, f: HistoryFilter): RunRow[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (f.seq !== undefined) {
    where.push('seq = ?');
    args.push(String(f.seq));
  }
  if (f.outcomes && f.outcomes.length > 0) {
    where.push(`outcome IN (${f.outcomes.map(() => '?').join(', ')})`);
    args.push(...f.outcomes);
  }
  const sql = `SELECT * FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC ${f.limit !== undefined ? 'LIMIT ?' : ''}`;
  if (f.limit !== undefined) args.push(f.limit);
  return (tx.stmt(sql).all(...args) as RawRow[]).map(toRow);
}
