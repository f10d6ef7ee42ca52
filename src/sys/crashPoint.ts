// Test-only crash points: with FSPOOL_CRASH_AT=<name> in the environment, fspool SIGKILLs
// itself when it reaches the point of that name, so that tests can check what the next run does
// after a crash exactly there (spec/job-lifecycle.md, "Crash points"). Without the variable
// a crash point costs next to nothing (the environment is looked at once per process).
//
// FSPOOL_CRASH_AT=<name>@<n> crashes at the n-th time the point is reached (1 = the first).

/** Every named point. Add new ones here and to the table in spec/job-lifecycle.md. */
export const CRASH_POINTS = [
  'prepare-before-seqfile',
  'prepare-after-seqfile',
  'queue-write-before-rename',
  'queue-write-after-rename',
  'lock-taken',
  'attempt-recorded',
  'receiver-running',
  'receiver-exited',
  'outcome-recorded',
  'nextseq-written',
  'quarantined',
  'files-removed',
  'backoff',
  'cleaning',
  'outbox-copied',
  'outbox-pending',
  'outbox-acked-marked',
  'outbox-pruned',
  'outbox-recorded',
  'outbox-resend-before-rename',
] as const;

export type CrashPointName = (typeof CRASH_POINTS)[number];

/**
 * The points one command or run has reached, and the crash it is to have. Each run of a
 * processor has its own, so that `<name>@<n>` counts that run's passages, whatever else the
 * process runs beside it.
 */
export class CrashPoints {
  private readonly reached = new Map<string, number>();
  private readonly point: string;
  private readonly nth: number;

  constructor(spec = process.env.FSPOOL_CRASH_AT ?? '') {
    const [point = '', nth = '1'] = spec.split('@');
    this.point = point;
    this.nth = Number(nth);
  }

  reach(name: CrashPointName): void {
    if (this.point !== name) return;
    const count = (this.reached.get(name) ?? 0) + 1;
    this.reached.set(name, count);
    if (count === this.nth) process.kill(process.pid, 'SIGKILL');
  }
}

let commandPoints: CrashPoints | undefined;

/** A crash point of a one-shot command (prepare, queue-write, queue-clean). */
export function crashPoint(name: CrashPointName): void {
  (commandPoints ??= new CrashPoints()).reach(name);
}
