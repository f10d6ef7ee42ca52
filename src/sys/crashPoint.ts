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

const reached = new Map<string, number>();
/** FSPOOL_CRASH_AT, read once: a processor passes several points per job. */
let wanted: string | undefined;

export function crashPoint(name: CrashPointName): void {
  const want = (wanted ??= process.env.FSPOOL_CRASH_AT ?? '');
  if (!want) return;
  const [point, nth = '1'] = want.split('@');
  if (point !== name) return;
  const count = (reached.get(name) ?? 0) + 1;
  reached.set(name, count);
  if (count === Number(nth)) process.kill(process.pid, 'SIGKILL');
}
