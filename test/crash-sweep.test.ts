// Crash points: one queue driven through EVERY named crash point in turn
// (src/sys/crashPoint.ts, spec/job-lifecycle.md), each crash followed by what a sender or an
// operator would do next and a normal processor run to completion. At every step, and at the
// end: every packet applied at least once, in sequence order, none skipped, none lost; re-runs
// reported as such; no job file half-written under a job name; temp leftovers never counted as
// jobs; the queue lock free; no receiver left running.
//
// Sender side: prepare, enqueue and queue-write killed at each of their points, keeping the
// invariant "no gap that blocks forever": a packet whose number was consumed exists (as a job,
// on prepare's stdout, or as enqueue's complete temp file, which the sender renames as the
// README says), and a packet whose number was not consumed is simply made again.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeHeader } from '../src/packet/codec.js';
import { CRASH_POINTS } from '../src/sys/crashPoint.js';
import { fspool, makeQueue, type Result, tempDir } from './helpers/cli.js';
import { allInJobs, fileLines, jobFiles, liveProcesses, nextseq as queueNextseq } from './helpers/queue.js';

// The receiver: hashes its payload, fails once for seq $FAIL_ONCE, and appends "seq:hash" to
// the log under flock (so that order and multiplicity can be checked even if two ever ran at once).
const RECEIVER = `
h=$(sha256sum | cut -c1-16)
if [ -n "$FAIL_ONCE" ] && [ "$FSPL_SEQ" = "$FAIL_ONCE" ] && [ ! -e "$LOG.failed.$FSPL_SEQ" ]; then
  : > "$LOG.failed.$FSPL_SEQ"; echo "refusing seq $FSPL_SEQ once" >&2; exit 3
fi
exec 9>>"$LOG.lock"; flock 9
printf '%s:%s\\n' "$FSPL_SEQ" "$h" >> "$LOG"
`;

type Expect = 'once' | 'twice' | 'at-least-once' | 'quarantined';

interface Sweep {
  dir: string;
  q: string;
  seq: string;
  log: string;
  /** seq -> payload hash (as the receiver logs it) and how often it must be applied. */
  expected: Map<number, { hash: string; times: Expect; step: string }>;
  /** Crash points driven so far. */
  hit: Set<string>;
  /** fspool processes that SIGKILLed themselves at a crash point. */
  kills: number;
  /** Processed packets' bytes, re-delivered later as stale copies for queue-clean. */
  saved: Buffer[];
}

let S: Sweep;
const env = (extra: NodeJS.ProcessEnv = {}) => ({ ...process.env, LOG: S.log, SWEEP_MARK: S.dir, FSPOOL_CRASH_AT: '', ...extra });
const crashEnv = (point: string) => env({ FSPOOL_CRASH_AT: point });
const payload = (tag: string) => Buffer.from(`${tag}\n`.repeat(2000)); // ~20-40 KB
const hash16 = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16);

function point(p: string): string {
  S.hit.add(p.split('@')[0]!);
  return p;
}

function killed(r: Result, what: string): void {
  expect(r.signal, `${what} was to SIGKILL itself: ${r.stderr}`).toBe('SIGKILL');
  if (S) S.kills++;
}

/** The sender's seqfile, read as fspl reads it (spec/queue-layout.md): a missing one counts as 1. */
const senderNext = () => (existsSync(S.seq) ? Number(readFileSync(S.seq, 'latin1').trim()) : 1);
const nextseq = () => Number(queueNextseq(S.q));
const jobNames = () => jobFiles(S.q);
const tmpNames = () => allInJobs(S.q).filter((n) => n.startsWith('tmp-fspl-'));
const logLines = () => fileLines(S.log);

function expectPacket(seq: number, tag: string, times: Expect, step: string): void {
  expect(S.expected.has(seq), `seq ${seq} made twice`).toBe(false);
  S.expected.set(seq, { hash: hash16(payload(tag)), times, step });
}

function enqueue(tag: string, crash?: string): Result {
  return fspool(['enqueue', '-q', S.q, '-s', S.seq, '-i', '-'], { input: payload(tag), env: crash ? crashEnv(point(crash)) : env() });
}

function prepare(tag: string, crash?: string): Result {
  return fspool(['prepare', '-s', S.seq, '-i', '-'], { input: payload(tag), env: crash ? crashEnv(point(crash)) : env() });
}

function queueWrite(bytes: Buffer, crash?: string): Result {
  return fspool(['queue-write', '-q', S.q], { input: bytes, env: crash ? crashEnv(point(crash)) : env() });
}

/** Enqueue a packet normally, expecting it to get the sender's next number. */
function send(tag: string, step: string, times: Expect = 'once'): number {
  const n = senderNext();
  const r = enqueue(tag);
  expect(r.code, r.stderr).toBe(0);
  expectPacket(n, tag, times, step);
  return n;
}

function proc(opts: string[] = [], e: NodeJS.ProcessEnv = env()): Result {
  return fspool(['queue-process', '-q', S.q, ...opts, 'sh', '--', '-c', RECEIVER], { env: e, timeoutMs: 60_000 });
}

/** A complete raw packet: its header decodes and its payload is what the sender gave. */
function decodePacket(bytes: Buffer): { seq: number; hash: string } {
  const { header, length } = decodeHeader(bytes);
  return { seq: Number(header.seq), hash: hash16(bytes.subarray(length)) };
}

function lockFree(): boolean {
  return spawnSync('flock', ['-n', join(S.q, 'nextseq.lock'), 'true']).status === 0;
}

/** Processes of ours (receivers and their children) still alive: found by SWEEP_MARK. */
function leftovers(): number[] {
  const mark = Buffer.from(`SWEEP_MARK=${S.dir}\0`);
  return liveProcesses((p) => p.environ().includes(mark));
}

/** The invariants that hold after every crash, before anything repairs it. */
function checkQueue(where: string): void {
  expect(lockFree(), `${where}: the queue lock is free`).toBe(true);
  for (const name of jobNames()) {
    const bytes = readFileSync(join(S.q, 'jobs', name));
    let got: { seq: number; hash: string };
    try {
      got = decodePacket(bytes);
    } catch (e) {
      throw new Error(`${where}: job file ${name} does not decode: ${String(e)}`);
    }
    const want = S.expected.get(got.seq);
    expect(want, `${where}: job file ${name} holds seq ${got.seq}, which no sender made`).toBeDefined();
    if (want!.times !== 'quarantined') expect(got.hash, `${where}: ${name} (seq ${got.seq}) is whole`).toBe(want!.hash);
  }
  // Temp names are never jobs: queue-ls lists exactly the job files.
  const ls = fspool(['queue-ls', '-q', S.q, '--json'], { env: env() });
  expect(ls.code, ls.stderr).toBe(0);
  const listed = JSON.parse(ls.stdout.toString()) as { jobs: Array<{ file: string }>; unreadable: unknown[] };
  expect(listed.jobs.map((j) => j.file).sort(), `${where}: queue-ls lists the job files, no temp file`).toEqual(jobNames().sort());
  expect(listed.unreadable, where).toEqual([]);
}

/** A normal run; afterwards every packet sent so far has run and jobs/ holds no job. */
function runToCompletion(where: string, opts: string[] = [], e: NodeJS.ProcessEnv = env()): string {
  const r = proc(opts, e);
  expect(r.code, `${where}: ${r.stderr}`).toBe(0);
  expect(nextseq(), `${where}: nextseq caught up with the sender`).toBe(senderNext());
  expect(jobNames(), `${where}: no job left`).toEqual([]);
  checkApplied(where);
  expect(leftovers(), `${where}: no receiver left running`).toEqual([]);
  return r.stderr;
}

/** The log so far: non-decreasing seqs, each with its payload's hash, multiplicities as expected. */
function checkApplied(where: string): void {
  const seen = logLines().map((l) => {
    const [s, h] = l.split(':');
    return { seq: Number(s), hash: h! };
  });
  for (let i = 1; i < seen.length; i++) {
    expect(seen[i]!.seq, `${where}: applied in order (line ${i + 1} of the log)`).toBeGreaterThanOrEqual(seen[i - 1]!.seq);
  }
  const done = nextseq();
  for (const [seq, want] of S.expected) {
    if (seq >= done) continue;
    const runs = seen.filter((x) => x.seq === seq);
    for (const r of runs) expect(r.hash, `${where}: seq ${seq} got its own payload`).toBe(want.hash);
    const n = runs.length;
    const what = `${where}: seq ${seq} (${want.step}) applied ${n} time(s), expected ${want.times}`;
    if (want.times === 'once') expect(n, what).toBe(1);
    else if (want.times === 'twice') expect(n, what).toBe(2);
    else if (want.times === 'at-least-once') expect(n, what).toBeGreaterThanOrEqual(1);
    else expect(n, what).toBe(0);
  }
  for (const x of seen) expect(S.expected.has(x.seq), `${where}: seq ${x.seq} applied but never sent`).toBe(true);
}

interface JournalRow {
  seq: number;
  attempt: number;
  outcome: string;
  action: string | null;
  commit: string | null;
}
function journal(seq: number): JournalRow[] {
  const r = fspool(['queue-history', '-q', S.q, '-j', String(seq), '--json'], { env: env() });
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout.toString()).runs as JournalRow[]).reverse(); // oldest first
}
const rowsOf = (seq: number) => journal(seq).map((r) => `${r.attempt}:${r.outcome}:${r.action ?? '-'}:${r.commit ?? '-'}`);

beforeAll(() => {
  const dir = tempDir('fspool-sweep-');
  S = { dir, q: makeQueue(dir), seq: join(dir, 'sender.seq'), log: join(dir, 'applied.log'), expected: new Map(), hit: new Set(), kills: 0, saved: [] };
});

describe('crash sweep: one queue through every crash point', () => {
  // ------------------------------------------------------------------------------------------
  // The sender: prepare, enqueue, queue-write.

  it('prepare killed before the seqfile update: number not consumed; the sender discards the output and prepares again', () => {
    const n = senderNext();
    const r = prepare('s1-first', 'prepare-before-seqfile');
    killed(r, 'prepare');
    expect(senderNext(), 'the number was not consumed').toBe(n);
    // What left the process is a complete packet with seq n: exactly why it must not be delivered
    // (test below: a pipeline that delivers it anyway).
    expect(decodePacket(r.stdout)).toEqual({ seq: n, hash: hash16(payload('s1-first')) });
    const again = prepare('s1');
    expect(again.code, again.stderr).toBe(0);
    expect(decodePacket(again.stdout).seq).toBe(n);
    expect(queueWrite(again.stdout).code).toBe(0);
    expectPacket(n, 's1', 'once', 'prepare-before-seqfile');
    S.saved.push(again.stdout);
    checkQueue('prepare-before-seqfile');
    runToCompletion('prepare-before-seqfile');
  });

  it('prepare killed after the seqfile update: number consumed, the packet on stdout is whole and is delivered', () => {
    const n = senderNext();
    const r = prepare('s2', 'prepare-after-seqfile');
    killed(r, 'prepare');
    expect(senderNext(), 'the number was consumed').toBe(n + 1);
    expect(decodePacket(r.stdout)).toEqual({ seq: n, hash: hash16(payload('s2')) });
    expect(queueWrite(r.stdout).code).toBe(0);
    expectPacket(n, 's2', 'once', 'prepare-after-seqfile');
    S.saved.push(r.stdout);
    checkQueue('prepare-after-seqfile');
    runToCompletion('prepare-after-seqfile');
  });

  it('enqueue killed before the seqfile update: number not consumed, a temp file no reader counts; enqueue again', () => {
    const n = senderNext();
    const tmpBefore = tmpNames().length;
    killed(enqueue('s3-first', 'prepare-before-seqfile'), 'enqueue');
    expect(senderNext()).toBe(n);
    expect(jobNames()).toEqual([]);
    expect(tmpNames().length).toBe(tmpBefore + 1);
    checkQueue('enqueue prepare-before-seqfile');
    const r = proc();
    expect(r.code, r.stderr).toBe(0);
    expect(nextseq(), 'the temp file was not run').toBe(n);
    send('s3', 'enqueue prepare-before-seqfile');
    runToCompletion('enqueue prepare-before-seqfile');
  });

  for (const p of ['prepare-after-seqfile', 'queue-write-before-rename'] as const) {
    it(`enqueue killed at ${p}: number consumed, the packet complete in its temp file; renaming it fills the gap`, () => {
      const n = senderNext();
      const tmpBefore = new Set(tmpNames());
      killed(enqueue(`s-${p}`, p), 'enqueue');
      expect(senderNext(), 'the number was consumed').toBe(n + 1);
      expect(jobNames(), 'nothing published').toEqual([]);
      const fresh = tmpNames().filter((t) => !tmpBefore.has(t));
      expect(fresh).toHaveLength(1);
      const tmp = join(S.q, 'jobs', fresh[0]!);
      expect(decodePacket(readFileSync(tmp)), 'the temp file holds the whole packet').toEqual({ seq: n, hash: hash16(payload(`s-${p}`)) });
      expectPacket(n, `s-${p}`, 'once', `enqueue ${p}`);
      checkQueue(`enqueue ${p}`);
      // A later packet queues up behind the gap; the processor waits, it does not skip.
      const later = send(`s-${p}-later`, `after enqueue ${p}`);
      const r = proc();
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`waiting for seq ${n}: it has not arrived; 1 later job\\(s\\) queued, the lowest is seq ${later}`));
      expect(nextseq()).toBe(n);
      const st = fspool(['queue-status', '-q', S.q, '--stalled-after', '0', '--json'], { env: env() });
      expect(st.code, 'queue-status says stalled').toBe(3);
      expect(JSON.parse(st.stdout.toString()).gap.seq).toBe(n);
      // What the README tells the sender: rename the temp file to a job name.
      renameSync(tmp, join(S.q, 'jobs', fresh[0]!.replace(/^tmp-(fspl-.*\.fspl)\.tmp$/, '$1')));
      checkQueue(`enqueue ${p}, renamed`);
      runToCompletion(`enqueue ${p}`);
    });
  }

  it('enqueue killed after the rename: the job is there and the number consumed', () => {
    const n = senderNext();
    killed(enqueue('s6', 'queue-write-after-rename'), 'enqueue');
    expect(senderNext()).toBe(n + 1);
    expect(jobNames()).toHaveLength(1);
    expectPacket(n, 's6', 'once', 'enqueue queue-write-after-rename');
    checkQueue('enqueue queue-write-after-rename');
    runToCompletion('enqueue queue-write-after-rename');
  });

  it('queue-write killed before the rename: no job, a temp leftover; the sender sends the same bytes again', () => {
    const p = prepare('s7');
    expect(p.code).toBe(0);
    const n = decodePacket(p.stdout).seq;
    expectPacket(n, 's7', 'once', 'queue-write-before-rename');
    const tmpBefore = tmpNames().length;
    killed(queueWrite(p.stdout, 'queue-write-before-rename'), 'queue-write');
    expect(jobNames()).toEqual([]);
    expect(tmpNames().length).toBe(tmpBefore + 1);
    checkQueue('queue-write-before-rename');
    expect(queueWrite(p.stdout).code).toBe(0);
    S.saved.push(p.stdout);
    runToCompletion('queue-write-before-rename');
  });

  it('queue-write killed after the rename: the job is there; the sender, not told, sends it again: run once', () => {
    const p = prepare('s8');
    const n = decodePacket(p.stdout).seq;
    expectPacket(n, 's8', 'once', 'queue-write-after-rename');
    killed(queueWrite(p.stdout, 'queue-write-after-rename'), 'queue-write');
    expect(jobNames()).toHaveLength(1);
    checkQueue('queue-write-after-rename');
    expect(queueWrite(p.stdout).code).toBe(0);
    expect(jobNames()).toHaveLength(2);
    const err = runToCompletion('queue-write-after-rename');
    expect(err).toMatch(new RegExp(`seq ${n} arrived 2 times with identical content`));
  });

  // ------------------------------------------------------------------------------------------
  // The processor: every point of a job's life, each followed by a normal run.

  it('lock-taken: nothing happened; the next run runs the queue', () => {
    const a = send('p-lock-a', 'lock-taken');
    send('p-lock-b', 'lock-taken');
    killed(proc([], crashEnv(point('lock-taken'))), 'queue-process');
    expect(nextseq()).toBe(a);
    expect(journal(a)).toEqual([]);
    checkQueue('lock-taken');
    const err = runToCompletion('lock-taken');
    expect(err).not.toMatch(/interrupted|completed now/);
  });

  const interrupted: Array<[string, Expect]> = [
    ['attempt-recorded', 'once'],
    ['receiver-running', 'at-least-once'],
    ['receiver-exited', 'twice'],
  ];
  for (const [p, times] of interrupted) {
    it(`${p}: the next run reports the interrupted attempt and runs the job again (${times})`, () => {
      const a = send(`p-${p}-a`, p, times);
      send(`p-${p}-b`, p);
      killed(proc([], crashEnv(point(p))), 'queue-process');
      expect(nextseq()).toBe(a);
      expect(rowsOf(a)).toEqual(['1:running:-:-']);
      checkQueue(p);
      const err = runToCompletion(p);
      expect(err).toMatch(new RegExp(`job ${a} .*attempt 1, started at .* was interrupted: fspool died while it ran`));
      expect(rowsOf(a)).toEqual(['1:crashed:-:-', '2:success:delete:done']);
    });
  }

  const completed: Array<[string, number, string]> = [
    // point, nextseq after the crash (relative to the job), what the next run marks
    ['outcome-recorded', 0, 'recovered'],
    ['nextseq-written', 1, 'recovered'],
    ['files-removed', 1, 'recovered'],
  ];
  for (const [p, advanced] of completed) {
    it(`${p}: the next run completes the job without running it again`, () => {
      const a = send(`p-${p}-a`, p);
      send(`p-${p}-b`, p);
      killed(proc([], crashEnv(point(p))), 'queue-process');
      expect(nextseq()).toBe(a + advanced);
      expect(rowsOf(a)).toEqual(['1:success:delete:pending']);
      checkQueue(p);
      const err = runToCompletion(p);
      expect(err).toMatch(new RegExp(`job ${a} .*succeeded at .*completed now without running it again`));
      expect(rowsOf(a)).toEqual(['1:success:delete:recovered']);
    });
  }

  it('a crash in the middle of a run (outcome-recorded@2): the first job stays done, the second is completed', () => {
    const a = send('p-mid-a', 'outcome-recorded@2');
    const b = send('p-mid-b', 'outcome-recorded@2');
    send('p-mid-c', 'outcome-recorded@2');
    killed(proc([], crashEnv(point('outcome-recorded@2'))), 'queue-process');
    expect(nextseq()).toBe(b);
    checkQueue('outcome-recorded@2');
    const err = runToCompletion('outcome-recorded@2');
    expect(err).toMatch(new RegExp(`job ${b} .*completed now without running it again`));
    expect(rowsOf(a)).toEqual(['1:success:delete:done']);
    expect(rowsOf(b)).toEqual(['1:success:delete:recovered']);
  });

  it('quarantined: a Fail packet moved aside, the journal not yet done; the next run marks it and goes on', () => {
    const n = senderNext();
    const f = fspool(['prepare-fail', '-s', S.seq], { env: env() });
    expect(f.code).toBe(0);
    expect(queueWrite(f.stdout).code).toBe(0);
    S.expected.set(n, { hash: '', times: 'quarantined', step: 'quarantined' });
    send('p-q-b', 'quarantined');
    killed(proc(['--on-error', 'quarantine'], crashEnv(point('quarantined'))), 'queue-process');
    expect(nextseq()).toBe(n + 1);
    const qdir = join(S.q, 'fspool/quarantine');
    expect(readdirSync(qdir).filter((x) => x.endsWith('.json'))).toHaveLength(1);
    checkQueue('quarantined');
    const err = runToCompletion('quarantined', ['--on-error', 'quarantine']);
    expect(err).toMatch(new RegExp(`job ${n} .*failed \\(fail-packet\\).*completed now without running it again`));
    expect(rowsOf(n)).toEqual(['1:fail-packet:quarantine:recovered']);
  });

  it('backoff: killed in the pause before a retry; the next run retries, the failure counted', () => {
    const a = send('p-backoff-a', 'backoff');
    send('p-backoff-b', 'backoff');
    const opts = ['--retries', '2', '--backoff', '0'];
    const r = proc(opts, { ...crashEnv(point('backoff')), FAIL_ONCE: String(a) });
    killed(r, 'queue-process');
    expect(r.stderr).toMatch(new RegExp(`job ${a} .*retry 1 in 0s \\(1 failure\\(s\\) of 3 allowed\\)`));
    expect(nextseq()).toBe(a);
    checkQueue('backoff');
    runToCompletion('backoff', opts, env({ FAIL_ONCE: String(a) }));
    expect(rowsOf(a)).toEqual(['1:exit-code:retry:-', '2:success:delete:done']);
  });

  // ------------------------------------------------------------------------------------------
  // queue-clean.

  it('cleaning: killed after the first removal; the lock is free, processing unaffected, the next clean finishes', () => {
    // Late copies of packets that ran: stale, known to the journal as processed.
    for (const b of S.saved) expect(queueWrite(b).code).toBe(0);
    const stale = jobNames();
    expect(stale.length).toBeGreaterThanOrEqual(3);
    const before = logLines().length;
    killed(fspool(['queue-clean', '-q', S.q], { env: crashEnv(point('cleaning')) }), 'queue-clean');
    expect(jobNames()).toHaveLength(stale.length - 1);
    checkQueue('cleaning');
    const r = proc();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/stale job file .* queue-clean removes it/);
    expect(logLines().length, 'stale copies are never run').toBe(before);
    const c = fspool(['queue-clean', '-q', S.q], { env: env() });
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout.toString().trim().split('\n')).toHaveLength(stale.length - 1);
    expect(jobNames()).toEqual([]);
    expect(lockFree()).toBe(true);
  });

  // ------------------------------------------------------------------------------------------

  it('at the end: every point was driven; every packet applied in order, none skipped or lost; nothing left behind', () => {
    // Every point of a queue's life; the outbox's own are swept in test/receipts-crash.test.ts.
    expect([...S.hit].sort()).toEqual(CRASH_POINTS.filter((p) => !p.startsWith('outbox-')).sort());
    const last = senderNext() - 1;
    expect([...S.expected.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    expect(nextseq()).toBe(last + 1);
    checkApplied('end');
    const applied = new Set(logLines().map((l) => Number(l.split(':')[0])));
    for (const [seq, want] of S.expected) expect(applied.has(seq), `seq ${seq} (${want.step})`).toBe(want.times !== 'quarantined');
    expect(lockFree()).toBe(true);
    expect(leftovers()).toEqual([]);
    // The temp leftovers of the killed writers are still there, and no reader counts them.
    expect(tmpNames().length).toBeGreaterThanOrEqual(2);
    const st = fspool(['queue-status', '-q', S.q, '--json'], { env: env() });
    const status = JSON.parse(st.stdout.toString());
    expect(status.pending).toBe(0);
    expect(status.interrupted).toEqual([]);
    const applications = logLines().length;
    // The figures quoted in spec/reliability.md.
    console.log(
      `crash sweep: ${S.hit.size} crash points, ${S.kills} processes killed at them, ${last} packets, ` +
        `${applications} applications (${applications - (last - 1)} re-runs), 1 quarantined Fail packet, 0 lost, 0 out of order`,
    );
  });
});

describe('prepare killed after its last byte, delivered anyway by a pipeline', () => {
  /**
   * `prepare | queue-write`: queue-write stores whatever arrived before EOF, and prepare's last
   * byte had gone out when it died. The sender sees the pipeline fail and sends again.
   */
  function firstTryKilled(prefix: string) {
    const dir = tempDir(prefix);
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    const log = join(dir, 'log');
    const e = { ...process.env, LOG: log, SWEEP_MARK: dir };
    const first = fspool(['prepare', '-s', seq, '-i', '-'], { input: 'first try\n', env: { ...e, FSPOOL_CRASH_AT: 'prepare-before-seqfile' } });
    killed(first, 'prepare');
    expect(fspool(['queue-write', '-q', q], { input: first.stdout }).code).toBe(0);
    return { q, seq, log, e };
  }

  it('two different packets with one number: processing refuses the seq as ambiguous, runs neither, skips nothing', () => {
    const { q, seq, log, e } = firstTryKilled('fspool-sweep-pipe-');
    const second = fspool(['prepare', '-s', seq, '-i', '-'], { input: 'second try\n', env: e });
    expect(fspool(['queue-write', '-q', q], { input: second.stdout }).code).toBe(0);
    writeFileSync(log, '');
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', RECEIVER], { env: e });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/seq 1 is ambiguous: .* hold different packets; remove the wrong one/);
    expect(readFileSync(log, 'utf8')).toBe('');
  });

  it('...and if the first copy ran before the second arrived: the second is stale, reported, never run, kept by queue-clean', () => {
    const { q, seq, log, e } = firstTryKilled('fspool-sweep-pipe2-');
    const run = () => fspool(['queue-process', '-q', q, 'sh', '--', '-c', RECEIVER], { env: e });
    expect(run().code).toBe(0);
    const second = fspool(['prepare', '-s', seq, '-i', '-'], { input: 'second try\n', env: e });
    expect(decodePacket(second.stdout).seq).toBe(1);
    expect(fspool(['queue-write', '-q', q], { input: second.stdout }).code).toBe(0);
    const r = run();
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/stale job file .*: seq 1 is below the queue's next seq 2; not run: it never ran here; if its sender restarted its numbering, queue-set-next 1 runs it/);
    expect(readFileSync(log, 'utf8')).toBe(`1:${hash16(Buffer.from('first try\n'))}\n`);
    const c = fspool(['queue-clean', '-q', q], { env: e });
    expect(c.code).toBe(0);
    expect(c.stderr).toMatch(/kept .* \(seq 1: its packet never ran here\): if its sender restarted its numbering, queue-set-next 1 runs it; --stale --force removes it/);
  });
});
