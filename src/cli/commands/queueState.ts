// The state database's commands: queue-status, queue-history and queue-clean, all reading (and queue-clean
// acting on) the queue's files and its journal in QUEUE/fspool/state.db.
import { accessSync, constants } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { describe, UsageError } from '../../errors.js';
import { log, printable } from '../../log.js';
import { rfc3339Local } from '../../packet/jobenv.js';
import { type Cleaned, cleanQueue } from '../../queue/clean.js';
import { FAILED_RUNS, type JournalOutcome, OUTCOMES, type RunRow } from '../../queue/journal.js';
import { Queue } from '../../queue/queue.js';
import { attachState, READER_BUSY_MS } from '../../queue/state.js';
import { stateDir } from '../../queue/stateDb.js';
import { type FileJob, type Status, type Verdict, VERDICT_EXIT } from '../../queue/status.js';
import { READER_WITHOUT, readStatus } from '../../serve/status.js';
import { type DecodeArgs, decodeContext, decodeOptions, queuedir, seconds, type Subcommand, u64, waitLock } from '../options.js';
import { doc, jobJson, msTime, runJson } from '../json.js';
import { print } from './out.js';

export const json = { type: 'boolean', nargs: 0, default: false, describe: 'Print one JSON object (its fields: spec/json.md, installed with fspool)' } as const;

/** --stalled-after, said of what it judges ("the queue", or each queue of a configuration). */
export const stalledAfter = (what: string) =>
  ({
    type: 'string',
    value: 'SECONDS',
    helpType: 'number',
    requiresArg: true,
    default: '3600',
    coerce: seconds('--stalled-after'),
    describe: `A gap waited on this many seconds, or a due job no processor runs, makes ${what} "stalled"`,
  }) as const;

const localMs = (ms: number | null) => (ms === null ? '-' : rfc3339Local(BigInt(Math.floor(ms / 1000))));

// ---------------------------------------------------------------------------------------------
// queue-status

interface StatusArgs extends DecodeArgs {
  queuedir: string;
  json: boolean;
  nagios: boolean;
  prometheus: boolean;
  'queue-name'?: string;
  'stalled-after': number;
}

function statusJson(q: Queue, s: Status): string {
  return doc('queue-status', q.dir, statusFields(s));
}

/** What queue-status --json says of a queue (spec/json.md); `fspool status --json` says it of each. */
export function statusFields(s: Status) {
  const job = (f: FileJob) => jobJson(f.header, f.name, f.path, f.packet);
  return {
    state: s.verdict,
    exit_code: VERDICT_EXIT[s.verdict],
    reasons: s.reasons,
    next_seq: s.nextSeq ?? null,
    pending: s.pending,
    due: s.due.map(job),
    gap: s.gap ? { seq: s.gap.seq, ...msTime('since', s.gap.since), waiting: s.gap.waiting, lowest_waiting_seq: s.gap.lowest } : null,
    stale: s.stale.map((f) => ({
      ...job(f),
      processed: f.processed !== undefined,
      ...msTime('processed_at', f.processed?.endedAt),
      ran: f.ran !== undefined,
      never_ran: s.journal ? f.ran === undefined && f.processed === undefined : null,
    })),
    released: s.released.map((r) => ({ ...job(r), last_run: r.last ? runJson(r.last) : null })),
    duplicates: s.duplicates.map((d) => ({ seq: d.seq, files: d.files.map(job) })),
    ambiguous: s.ambiguous.map((d) => ({ seq: d.seq, files: d.files.map(job) })),
    unreadable: s.unreadable.map((u) => ({ file: u.name, path: u.nameNotUtf8 ? null : u.path, error: u.error })),
    quarantine: s.quarantine,
    last_success: s.lastSuccess ? runJson(s.lastSuccess) : null,
    last_failure: s.lastFailure ? runJson(s.lastFailure) : null,
    interrupted: s.interrupted.map(runJson),
    processor: { running: s.processor.pid !== undefined, known: s.processor.known, pid: s.processor.pid ?? null, job: s.processor.current ? runJson(s.processor.current) : null },
    journal: s.journal,
  };
}

/** Nagios plugin states for queue-status's verdicts; 3 (UNKNOWN) is any error. */
export const NAGIOS: Record<Verdict, { code: number; state: string }> = {
  healthy: { code: 0, state: 'OK' },
  stalled: { code: 1, state: 'WARNING' },
  failing: { code: 2, state: 'CRITICAL' },
};
export const NAGIOS_UNKNOWN = { code: 3, state: 'UNKNOWN' };

/** A Nagios plugin's first line: state, summary, and performance data after `|`. */
function nagiosLine(q: Queue, s: Status): string {
  const next = s.nextSeq === undefined ? 'append-only' : `next ${s.nextSeq}`;
  const why = s.reasons.length ? `; ${s.reasons.join('; ')}` : '';
  const perf = `pending=${s.pending} stale=${s.stale.length} unreadable=${s.unreadable.length} quarantine=${s.quarantine.length}`;
  return `FSPOOL ${NAGIOS[s.verdict].state} - ${q.dir}: ${next}, ${s.pending} pending${why} | ${perf}\n`;
}

function staleWhy(f: { processed?: RunRow; ran?: RunRow }, journal: boolean): string {
  if (f.processed) return `processed ${localMs(f.processed.endedAt)}`;
  if (f.ran) return `ran ${localMs(f.ran.endedAt)} (${f.ran.outcome}), not processed`;
  return journal ? 'never ran here' : 'unknown (no journal)';
}

function runLine(r: RunRow): string {
  const how = r.exitCode !== null && r.outcome !== 'success' ? ` status ${r.exitCode}` : r.signal ? ` ${r.signal}` : '';
  return `seq ${r.seq} at ${localMs(r.endedAt ?? r.startedAt)}, attempt ${r.attempt}: ${r.outcome}${how}${r.detail ? ` (${r.detail})` : ''}`;
}

function statusText(q: Queue, s: Status): string {
  const out: string[] = [];
  const row = (k: string, v: string) => out.push(`${`${k}:`.padEnd(14)}${v}`);
  const file = (f: { name: string }, extra = '') => out.push(`  ${f.name}${extra}`);
  row('queue', q.dir);
  row('state', s.verdict + (s.reasons.length ? ` - ${s.reasons.join('; ')}` : ''));
  row('next seq', s.nextSeq === undefined ? '- (append-only queue)' : String(s.nextSeq));
  row('pending', String(s.pending));
  if (s.due.length > 0) row('due', `seq ${s.nextSeq}: ${s.due.map((d) => d.name).join(', ')}`);
  if (s.gap) row('gap', `waiting for seq ${s.gap.seq} since ${localMs(s.gap.since)}; ${s.gap.waiting} job(s) behind it, the lowest is seq ${s.gap.lowest}`);
  row('stale', String(s.stale.length));
  for (const f of s.stale) file(f, `  seq ${f.header.seq}  ${staleWhy(f, s.journal)}`);
  if (s.released.length > 0) {
    row('released', `${s.released.length} (from quarantine: each run tries them before the due job)`);
    for (const r of s.released) file(r, `  seq ${r.header.seq}  ${r.last ? `last ran ${localMs(r.last.endedAt ?? r.last.startedAt)} (${r.last.outcome})` : 'not run since'}`);
  }
  row('duplicates', String(s.duplicates.reduce((n, d) => n + d.files.length - 1, 0)));
  for (const d of s.duplicates) for (const f of d.files) file(f, `  seq ${d.seq}`);
  if (s.ambiguous.length > 0) {
    row('ambiguous', String(s.ambiguous.length));
    for (const d of s.ambiguous) for (const f of d.files) file(f, `  seq ${d.seq}`);
  }
  row('unreadable', String(s.unreadable.length));
  for (const u of s.unreadable) file(u, `  ${u.error}`);
  row('quarantine', String(s.quarantine.length));
  for (const n of s.quarantine) file({ name: n });
  row('last success', s.lastSuccess ? runLine(s.lastSuccess) : '-');
  row('last failure', s.lastFailure ? runLine(s.lastFailure) : '-');
  for (const r of s.interrupted) {
    // Past it in sequence order, it does not run again: its run ended unrecorded (a journal
    // that could not be written then, a full disk), and what it did is not known here.
    const past = r.orderBy === 'sequence' && s.nextSeq !== undefined && r.seq < s.nextSeq;
    row('interrupted', `seq ${r.seq}, attempt ${r.attempt} started ${localMs(r.startedAt)} by pid ${r.pid}, ${past ? 'whose outcome went unrecorded; nextseq has moved past it' : 'which died; it runs again'}`);
  }
  const p = s.processor;
  let proc: string;
  if (p.pid !== undefined) proc = `running, pid ${p.pid}${p.current ? ` (job ${p.current.seq} since ${localMs(p.current.startedAt)})` : ''}`;
  else if (s.nextSeq === undefined) proc = 'none (an append-only queue is not processed)';
  else proc = p.known ? 'not running' : 'unknown (/proc/locks unreadable)';
  row('processor', proc);
  if (!s.journal) row('journal', 'none (no state database)');
  // Names and details come from the queue's files: their control characters are escaped.
  return `${out.map(printable).join('\n')}\n`;
}

export const queueStatusCmd: Subcommand<StatusArgs> = {
  command: 'queue-status',
  describe: 'Show what a queue is doing; the exit status says healthy (0), stalled (3) or failing (4)',
  builder: (y) =>
    decodeOptions(y.option('queuedir', queuedir), { decoder: true, signature: false })
      .option('json', json)
      .option('nagios', {
        type: 'boolean',
        nargs: 0,
        default: false,
        describe: 'Be a Nagios plugin: a summary line first, then the report; exit 0 OK (healthy), 1 WARNING (stalled), 2 CRITICAL (failing), 3 UNKNOWN (an error)',
      })
      .option('prometheus', {
        type: 'boolean',
        nargs: 0,
        default: false,
        describe:
          "Print the queue's metrics in Prometheus' text format, as fspool serve exposes them (for node_exporter's textfile collector); exit 0 whenever they are printed",
      })
      .option('queue-name', {
        type: 'string',
        value: 'NAME',
        requiresArg: true,
        describe: "With --prometheus: the metrics' queue label (default: the queue directory's name)",
      })
      .option('stalled-after', stalledAfter('the queue'))
      .example('$0 queue-status -q q', '')
      .example('$0 queue-status -q q --json --stalled-after 600 || alert', 'for cron')
      .example('$0 queue-status -q /var/spool/q --nagios --stalled-after 600', 'a Nagios (or Icinga) check command')
      .example('$0 queue-status -q /var/spool/q --prometheus > q.prom.tmp && mv q.prom.tmp /var/lib/node_exporter/q.prom', "for node_exporter's textfile collector") as never,
  handler: async (a) => {
    try {
      const outputs = (['json', 'nagios', 'prometheus'] as const).filter((o) => a[o]);
      if (outputs.length > 1) throw new UsageError(`${outputs.map((o) => `--${o}`).join(' and ')} are different outputs: give one`);
      const { queue: q, status: s } = await readStatus(a.queuedir, decodeContext(a), a['stalled-after']);
      if (a.prometheus) {
        const { Metrics } = await import('../../serve/metrics.js');
        const metrics = new Metrics({ counters: false });
        metrics.setStatus([{ queue: a['queue-name'] ?? basename(resolve(q.dir)), status: s }]);
        print(await metrics.text());
        return;
      }
      if (a.nagios) print(nagiosLine(q, s) + statusText(q, s));
      else print(a.json ? statusJson(q, s) : statusText(q, s));
      process.exitCode = a.nagios ? NAGIOS[s.verdict].code : VERDICT_EXIT[s.verdict];
    } catch (e) {
      if (!a.nagios) throw e;
      print(`FSPOOL ${NAGIOS_UNKNOWN.state} - ${describe(e)}\n`);
      process.exitCode = NAGIOS_UNKNOWN.code;
    }
  },
};

// ---------------------------------------------------------------------------------------------
// queue-history

interface HistoryArgs {
  queuedir: string;
  job?: bigint;
  outcome?: string | string[];
  limit?: bigint;
  json: boolean;
}

/** `--outcome a,b --outcome c`; "failure" stands for every failing outcome. */
function outcomes(v: string | string[] | undefined): JournalOutcome[] | undefined {
  if (v === undefined) return undefined;
  const out: JournalOutcome[] = [];
  for (const w of (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(','))) {
    const o = w.trim().toLowerCase();
    if (o === 'failure') out.push(...FAILED_RUNS);
    else if ((OUTCOMES as readonly string[]).includes(o)) out.push(o as JournalOutcome);
    else throw new UsageError(`invalid value "${w}" for --outcome: must be failure or one of ${OUTCOMES.join(', ')}`);
  }
  return out;
}

function historyText(rows: RunRow[]): string {
  const line = (c: string[]) => `${c[0]!.padEnd(26)}${c[1]!.padEnd(10)}${c[2]!.padEnd(8)}${c[3]!.padEnd(17)}${c[4]!.padEnd(10)}${c[5]!.padEnd(11)}${c[6]}\n`;
  let text = line(['started', 'seq', 'try', 'outcome', 'seconds', 'action', 'file  detail']);
  for (const r of rows) {
    const secs = r.endedAt === null ? '-' : ((r.endedAt - r.startedAt) / 1000).toFixed(1);
    const how = r.exitCode !== null && r.outcome !== 'success' ? `status ${r.exitCode}` : r.signal ? r.signal : '';
    const detail = [how, r.detail].filter(Boolean).join('; ');
    text += line([localMs(r.startedAt), String(r.seq), String(r.attempt), r.outcome, secs, r.action ?? '-', printable(`${r.file}${detail ? `  ${detail}` : ''}`)]);
  }
  return text;
}

/** Why there is no history to show: none was written yet, or this user may not read it. */
function noJournal(q: Queue): void {
  const dir = stateDir(q.dir);
  const db = join(dir, 'state.db');
  for (const [path, mode] of [[dir, constants.R_OK | constants.X_OK], [db, constants.R_OK]] as const) {
    try {
      accessSync(path, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') break;
      log.warn(`cannot read the journal of queue ${q.dir}: ${describe(e)}; run as the queue's owner, or give read access to ${path}`);
      return;
    }
  }
  log.info(`queue ${q.dir} has no journal yet (${db})`);
}

export const queueHistory: Subcommand<HistoryArgs> = {
  command: 'queue-history',
  describe: "Show the journal of a queue's runs, newest first",
  builder: (y) =>
    y
      .option('queuedir', queuedir)
      .option('job', { alias: 'j', type: 'string', value: 'ID', helpType: 'number', requiresArg: true, coerce: u64('--job'), describe: 'Only runs of the job with this seq' })
      .option('outcome', {
        type: 'string',
        value: 'OUTCOMES',
        requiresArg: true,
        describe: `Only runs that ended so (comma-separated, repeatable): failure, ${OUTCOMES.join(', ')}`,
      })
      .option('limit', { alias: 'n', type: 'string', value: 'N', helpType: 'number', requiresArg: true, coerce: u64('--limit'), describe: 'At most this many runs' })
      .option('json', json)
      .example('$0 queue-history -q q -n 20', 'the last 20 runs')
      .example('$0 queue-history -q q -j 42 --outcome failure', 'why job 42 keeps failing') as never,
  handler: (a) => {
    const q = new Queue(a.queuedir).check();
    const wanted = outcomes(a.outcome);
    const state = attachState(q, { create: false, busyMs: READER_BUSY_MS, cacheHeaders: false, without: READER_WITHOUT });
    try {
      if (!state.db) noJournal(q);
      const rows = state.journal.history({ seq: a.job, outcomes: wanted, limit: a.limit === undefined ? undefined : Number(a.limit) });
      print(a.json ? doc('queue-history', q.dir, { runs: rows.map(runJson) }) : historyText(rows));
    } finally {
      state.close();
    }
  },
};

// ---------------------------------------------------------------------------------------------
// queue-clean

interface CleanArgs extends DecodeArgs {
  queuedir: string;
  stale: boolean;
  force: boolean;
  'dry-run': boolean;
  'wait-lock'?: number;
}

function cleanedWhy(c: Cleaned): string {
  if (c.kind === 'processed') return `copy of a packet processed ${localMs(c.run!.endedAt)}`;
  if (c.kind === 'ran') return `its packet ran ${localMs(c.run!.endedAt)} (${c.run!.outcome}) and the queue moved past it`;
  return 'its packet never ran here';
}

export const queueClean: Subcommand<CleanArgs> = {
  command: 'queue-clean',
  describe: 'Remove job files below nextseq that already ran (--stale: also those that failed; --stale --force: also those that never ran here)',
  builder: (y) =>
    decodeOptions(y.option('queuedir', queuedir), { decoder: true, signature: false })
      .option('stale', { type: 'boolean', nargs: 0, default: false, describe: 'Also remove stale files whose packet ran and failed (the queue moved past it)' })
      .option('force', {
        type: 'boolean',
        nargs: 0,
        default: false,
        describe: 'With --stale: also remove stale files whose packet never ran here (their data was never applied)',
      })
      .option('dry-run', { type: 'boolean', nargs: 0, default: false, describe: 'Only say what would be removed' })
      .option('wait-lock', waitLock)
      .example('$0 queue-clean -q q --dry-run', '')
      .example('$0 queue-clean -q q --stale', 'also stale files whose packet ran and failed') as never,
  handler: async (a) => {
    if (a.force && !a.stale) throw new UsageError('--force only applies with --stale');
    const q = new Queue(a.queuedir).checkProcessable();
    const decode = decodeContext(a);
    const lock = await q.nextseq.lock({ create: false, waitSeconds: a['wait-lock'], what: `queue ${q.dir}` });
    const state = attachState(q, { create: true, busyMs: READER_BUSY_MS, cacheHeaders: true, without: 'going on without it: nothing is known as processed, so only --stale --force removes anything' });
    try {
      const done = await cleanQueue(q, state.journal, { stale: a.stale, force: a.force, dryRun: a['dry-run'], decode });
      let text = '';
      for (const c of done) {
        const why = `seq ${c.seq}: ${cleanedWhy(c)}`;
        if (c.removed) text += `${a['dry-run'] ? 'would remove' : 'removed'} ${c.path} (${why})\n`;
        else if (c.changed) log.warn(`kept ${c.path}: it changed since it was read; run queue-clean again`);
        else if (c.kind === 'ran') log.info(`kept ${c.path} (${why}); --stale removes it`);
        else log.warn(`kept ${c.path} (${why}): if its sender restarted its numbering, queue-set-next ${c.seq} runs it; --stale --force removes it`);
      }
      print(text);
    } finally {
      state.close();
      lock.release();
    }
  },
};
