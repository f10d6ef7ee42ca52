// At the start of a run, under the queue lock: what an earlier processor left between the
// steps of a job's life (lifecycle.ts). Attempts it left 'running' are closed: crashed (the job
// runs again when due: at-least-once) or unrecorded (the queue moved past it while the journal
// was unavailable); actions it recorded but did not finish are completed without running the
// job again (exactly-once). The crash points: spec/job-lifecycle.md. And who processes the
// queue now (Journal.recordRunner), for a status read by another user.
import { packetId, type RunRow } from '../queue/journal.js';
import type { ScannedJob } from '../queue/queue.js';
import { carryOut, type Processing } from './lifecycle.js';

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Returns the job files it removed or moved, for the caller's picture of jobs/. `resuming`: a
 * run taking up again the journal it lost (processor.ts); what this process left is not a
 * crash, and what it recorded but could not mark done it had carried out.
 */
export function recover(p: Pick<Processing, 'queue' | 'journal' | 'ctx'>, jobs: ScannedJob[], resuming = false): string[] {
  const { queue, journal, ctx } = p;
  journal.recordRunner();
  const next = queue.nextseq.readIfExists();
  // This process's rows: its pid, since it started (a pid can be an earlier fspool's too).
  const ours = (r: RunRow) => resuming && r.pid === process.pid && r.startedAt >= performance.timeOrigin;
  const movedPast = (r: RunRow) => r.orderBy === 'sequence' && next !== undefined && r.seq < next;
  const { crashed, unrecorded } = journal.closeAbandoned((r) => (movedPast(r) ? 'moved-past' : ours(r) ? 'lost' : 'crashed'));
  for (const r of crashed) {
    ctx.log.warn(
      `job ${r.seq} (${queue.jobPath(r.file)}): attempt ${r.attempt}, started at ${iso(r.startedAt)} by fspool pid ${r.pid}, was interrupted: fspool died while it ran; the job runs again when due`,
    );
  }
  for (const r of unrecorded) {
    ctx.log.info(
      `job ${r.seq} (${queue.jobPath(r.file)}): attempt ${r.attempt}, started at ${iso(r.startedAt)} by fspool pid ${r.pid}, ended while the journal was unavailable; ${movedPast(r) ? 'the queue has moved past it' : 'the job stays due'}`,
    );
  }
  const pending = journal.pending();
  if (pending.length === 0) return [];
  const ids = new Map<string, ScannedJob[]>();
  for (const j of jobs) {
    if (!j.header) continue;
    const id = packetId(j.header);
    const same = ids.get(id);
    if (same) same.push(j);
    else ids.set(id, [j]);
  }
  const gone: string[] = [];
  for (const r of pending) {
    const files = ids.get(r.packet) ?? [];
    const action = r.action!;
    const movedTo = carryOut(p, { id: r.id, seq: r.seq, orderBy: r.orderBy, action, note: recoveredNote(r) }, files, true);
    if (action !== 'keep') gone.push(...files.map((f) => f.name));
    const what = r.outcome === 'success' ? 'succeeded' : `failed (${r.outcome})`;
    if (ours(r)) {
      ctx.log.info(`job ${r.seq} (${queue.jobPath(r.file)}) ${what} at ${iso(r.endedAt ?? r.startedAt)}; what followed was carried out while the journal was unavailable, and is marked done now`);
      continue;
    }
    ctx.log.warn(
      `job ${r.seq} (${queue.jobPath(r.file)}) ${what} at ${iso(r.endedAt ?? r.startedAt)}, but fspool stopped before it was done with it; ` +
        `completed now without running it again (${describeAction(r)}${movedTo ? ` to ${movedTo}` : ''})`,
    );
  }
  return gone;
}

function recoveredNote(r: RunRow): object {
  return {
    seq: String(r.seq),
    file: r.file,
    packet: r.packet,
    quarantined_at: iso(Date.now()),
    attempts: r.attempt,
    last_outcome: r.outcome,
    last_detail: r.detail,
    exit_code: r.exitCode,
    signal: r.signal,
    stderr_tail: r.stderrTail,
  };
}

function describeAction(r: Pick<RunRow, 'action' | 'orderBy'>): string {
  const next = r.orderBy === 'sequence' ? 'nextseq advanced, ' : '';
  if (r.action === 'delete') return `${next}file deleted`;
  if (r.action === 'quarantine') return `${next}file quarantined`;
  return `${next}file kept`;
}

