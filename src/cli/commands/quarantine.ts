// queue-quarantine: what --on-error quarantine set aside, and the two ways out of it: release a
// packet back into the queue to run once more (out of turn: its seq has passed), or drop it
// for good. Both are journaled and done under the queue lock, like every change to job files.
import { UsageError } from '../../errors.js';
import { log } from '../../log.js';
import { forgetQuarantined, quarantineEntries, type Quarantined, releaseJob } from '../../queue/quarantine.js';
import { Queue } from '../../queue/queue.js';
import { attachState, READER_BUSY_MS } from '../../queue/state.js';
import { doc, msIso } from '../json.js';
import { queuedir, type Subcommand, waitLock } from '../options.js';
import { print } from './out.js';
import { json } from './queueState.js';
import { who } from '../../sys/access.js';

interface QuarantineArgs {
  queuedir: string;
  release?: string;
  drop?: string;
  json: boolean;
  'wait-lock'?: number;
}

const noteText = (e: Quarantined) => {
  const n = e.note ?? {};
  const why = [n.last_outcome, n.last_detail].filter(Boolean).join(': ');
  return `${e.name}  seq ${String(n.seq ?? '?')}  quarantined ${String(n.quarantined_at ?? '?')}${why ? `  (${why})` : ''}`;
};

export const queueQuarantine: Subcommand<QuarantineArgs> = {
  command: 'queue-quarantine',
  describe: 'List the jobs --on-error quarantine set aside; --release one to run once more, or --drop it',
  builder: (y) =>
    y
      .option('queuedir', queuedir)
      .option('release', { type: 'string', requiresArg: true, value: 'NAME', describe: 'Put this quarantined job back: the next queue-process runs it once more, before the due job' })
      .option('drop', { type: 'string', requiresArg: true, value: 'NAME', describe: 'Delete this quarantined job (and its note) for good; the journal keeps a record' })
      .option('json', json)
      .option('wait-lock', waitLock)
      .example('$0 queue-quarantine -q q', 'what is set aside, and why')
      .example('$0 queue-quarantine -q q --release fspl-7c1e.fspl', 'run it again once the cause is fixed')
      .example('$0 queue-quarantine -q q --drop fspl-7c1e.fspl', 'give up on it') as never,
  handler: async (a) => {
    if (a.release !== undefined && a.drop !== undefined) throw new UsageError('give --release or --drop, not both');
    const q = new Queue(a.queuedir).checkProcessable();
    const name = a.release ?? a.drop;
    if (name === undefined) {
      const entries = quarantineEntries(q.dir);
      if (a.json) {
        print(doc('queue-quarantine', q.dir, { jobs: entries.map((e) => ({ file: e.name, path: e.path, note: e.note ?? null })) }));
      } else {
        print(entries.map((e) => `${noteText(e)}\n`).join(''));
      }
      return;
    }
    const entry = quarantineEntries(q.dir).find((e) => e.name === name);
    if (!entry) throw new UsageError(`${name} is not in quarantine (${q.dir.replace(/\/$/, '')}/fspool/quarantine/); list it with queue-quarantine -q ${q.dir}`);
    const packet = typeof entry.note?.packet === 'string' ? entry.note.packet : undefined;
    const lock = await q.nextseq.lock({ create: false, waitSeconds: a['wait-lock'], what: `queue ${q.dir}` });
    const state = attachState(q, { create: true, busyMs: READER_BUSY_MS, cacheHeaders: false, without: 'a release needs the journal' });
    try {
      const last = packet ? state.journal.lastRow(packet) : undefined;
      if (!last || !packet) {
        throw new UsageError(`${name}: the journal does not know its packet (its note or the state database is missing), so it cannot be released or dropped with a record; move it by hand`);
      }
      const ref = { seq: last.seq, file: name, packet, ctimeSecs: last.ctimeSecs, ctimeNanos: last.ctimeNanos };
      const by = `by ${who()} at ${msIso(Date.now())}`;
      if (a.release !== undefined) {
        if (!state.journal.recordDecision(ref, 'released', `released from quarantine ${by}`)) throw new UsageError('the journal cannot be written: nothing was released');
        releaseJob(q, name);
        log.info(`${name} (seq ${last.seq}) is back in ${q.jobsDir}: the next queue-process runs it once more, before the due job`);
      } else {
        if (!state.journal.recordDecision(ref, 'dropped', `dropped from quarantine ${by}`)) throw new UsageError('the journal cannot be written: nothing was dropped');
        forgetQuarantined(q, name);
        log.info(`${name} (seq ${last.seq}) dropped for good`);
      }
    } finally {
      state.close();
      lock.release();
    }
  },
};
