// The journal's commit order, tested by SIGKILLing fspool at every named crash point
// (FSPOOL_CRASH_AT, src/sys/crashPoint.ts) and checking what is on disk and what the next run
// does: exactly-once once the success is journaled, at-least-once before, never a skipped job.
// Real processes, real queues, the real database.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FSPOOL, fspl, runAsync } from './helpers/cli.js';
import { waitFor } from './helpers/queue.js';
import { dbPath, jobs, lines, LOGGER, logOf, nextseq, packet, proc, put, type Q, runs, setup, warns } from './helpers/state.js';

const crashAt = (point: string) => ({ FSPOOL_CRASH_AT: point });

/** A queue holding jobs 1 and 2 ("p1", "p2"). */
function twoJobs(): Q & { names: string[] } {
  const q = setup('fspool-crash-');
  const names = [put(q, packet(1, 'p1')), put(q, packet(2, 'p2'))];
  return { ...q, names };
}

function killedAt(q: Q, point: string, opts: string[] = [], script = LOGGER) {
  const r = proc(q, opts, script, crashAt(point));
  expect(r.signal, `fspool was to kill itself at ${point}: ${r.stderr}`).toBe('SIGKILL');
  return r;
}

describe('crash points in sequence order', () => {
  it('attempt-recorded (before the receiver started): the next run reports the attempt and runs the job', () => {
    const q = twoJobs();
    killedAt(q, 'attempt-recorded');
    expect(logOf(q)).toBe('');
    expect(nextseq(q)).toBe('1');
    expect(runs(q).map((r) => r.outcome)).toEqual(['running']);

    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .*attempt 1.*was interrupted: fspool died while it ran/);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(q)).toBe('3');
    expect(runs(q).map((r) => [r.seq, r.attempt, r.outcome])).toEqual([
      ['1', 1, 'crashed'],
      ['1', 2, 'success'],
      ['2', 1, 'success'],
    ]);
  });

  it('receiver-running (fspool dies while the receiver runs): re-run, at-least-once, never skipped', () => {
    const q = twoJobs();
    killedAt(q, 'receiver-running', [], `sleep 1; ${LOGGER}`);
    expect(nextseq(q)).toBe('1');
    expect(jobs(q)).toEqual([...q.names].sort());

    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .*was interrupted/);
    // The spawner killed the first receiver's group before it got anywhere; job 1 then ran whole.
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(q)).toBe('3');
    expect(runs(q).filter((r) => r.seq === '1').map((r) => r.outcome)).toEqual(['crashed', 'success']);
  });

  it('receiver-exited (it succeeded, nothing journaled yet): the job runs again (at-least-once)', () => {
    const q = twoJobs();
    killedAt(q, 'receiver-exited');
    expect(logOf(q)).toBe(lines('1:p1'));
    expect(nextseq(q)).toBe('1');

    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .*was interrupted/);
    expect(logOf(q)).toBe(lines('1:p1', '1:p1', '2:p2'));
    expect(nextseq(q)).toBe('3');
    expect(jobs(q)).toEqual([]);
  });

  it('outcome-recorded (success journaled, nextseq not yet written): the next run advances without re-running (exactly-once)', () => {
    const q = twoJobs();
    killedAt(q, 'outcome-recorded');
    expect(logOf(q)).toBe(lines('1:p1'));
    expect(nextseq(q)).toBe('1');
    expect(jobs(q)).toEqual([...q.names].sort());
    expect(runs(q).map((r) => [r.outcome, r.action, r.commit_state])).toEqual([['success', 'delete', 'pending']]);

    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .*succeeded at .*completed now without running it again \(nextseq advanced, file deleted\)/);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(q)).toBe('3');
    expect(jobs(q)).toEqual([]);
    expect(runs(q).map((r) => [r.seq, r.outcome, r.commit_state])).toEqual([
      ['1', 'success', 'recovered'],
      ['2', 'success', 'done'],
    ]);
  });

  it('outcome-recorded, then the job file removed by hand: a run of the empty jobs/ leaves the journal as it is; the next run with a job completes it first', () => {
    const q = setup('fspool-crash-');
    const [name] = [put(q, packet(1, 'p1'))];
    killedAt(q, 'outcome-recorded');
    rmSync(join(q.q, 'jobs', name!));
    const journal = () => readFileSync(dbPath(q)).toString('hex') + (existsSync(`${dbPath(q)}-wal`) ? readFileSync(`${dbPath(q)}-wal`).toString('hex') : '');
    const before = journal();

    // Nothing to run: the state database is not opened, so the pending completion waits.
    const empty = proc(q, []);
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stderr).toBe('');
    expect(nextseq(q)).toBe('1');
    expect(journal()).toBe(before);

    put(q, packet(2, 'p2'));
    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .* succeeded at .*completed now without running it again \(nextseq advanced, file deleted\)/);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(q)).toBe('3');
    expect(runs(q).map((r) => [r.seq, r.outcome, r.commit_state])).toEqual([
      ['1', 'success', 'recovered'],
      ['2', 'success', 'done'],
    ]);
  });

  it('a run of a queue that never had a job creates no state database', () => {
    const q = setup('fspool-crash-');
    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(q.q).sort()).toEqual(['jobs', 'nextseq', 'nextseq.lock']);
  });

  it('nextseq-written (before the file was deleted): a stale file, deleted by the next run, not run again', () => {
    const q = twoJobs();
    killedAt(q, 'nextseq-written');
    expect(nextseq(q)).toBe('2');
    expect(jobs(q)).toEqual([...q.names].sort());
    // fspl, meanwhile, sees nextseq 2 and runs job 2 only: the queue is consistent for it too.
    const f = fspl(['queue-process', '-q', q.q, '-n', '1', 'sh', '--', '-c', LOGGER], { env: { ...process.env, LOG: q.log } });
    expect(f.code, f.stderr).toBe(0);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));

    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .*completed now without running it again/);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(q)).toBe('3');
    expect(jobs(q)).toEqual([]);
  });

  it('files-removed (before the journal said done): the next run only marks it done', () => {
    const q = twoJobs();
    killedAt(q, 'files-removed');
    expect(nextseq(q)).toBe('2');
    expect(jobs(q)).toEqual([q.names[1]!]);
    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(runs(q).map((r) => r.commit_state)).toEqual(['recovered', 'done']);
  });

  it('the second job: FSPOOL_CRASH_AT=point@2 crashes at its second passage', () => {
    const q = twoJobs();
    killedAt(q, 'outcome-recorded@2');
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(q)).toBe('2');
    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(q)).toBe('3');
  });

  it('a kill from outside while the receiver runs: reported, run again, never skipped', async () => {
    const q = twoJobs();
    const marker = join(q.dir, 'started');
    const script = `[ "$FSPL_SEQ" = 1 ] && [ ! -e "$MARK" ] && { touch "$MARK"; sleep 30; }; ${LOGGER}`;
    const p = runAsync(FSPOOL, ['queue-process', '-q', q.q, 'sh', '--', '-c', script], {
      env: { ...process.env, LOG: q.log, MARK: marker },
    });
    await waitFor('the receiver to start', () => existsSync(marker));
    process.kill(p.pid, 'SIGKILL');
    expect((await p.done).signal).toBe('SIGKILL');
    expect(runs(q).map((r) => r.outcome)).toEqual(['running']);

    const r = proc(q, [], script, { MARK: marker });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .*attempt 1.*by fspool pid \d+, was interrupted/);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(runs(q).map((r) => [r.seq, r.outcome])).toEqual([
      ['1', 'crashed'],
      ['1', 'success'],
      ['2', 'success'],
    ]);
  });
});

describe('crash points with --on-error quarantine, --retries, and timestamp order', () => {
  const FAIL_1 = `if [ "$FSPL_SEQ" = 1 ]; then echo "try $FSPL_SEQ" >> "$LOG"; cat >/dev/null; echo "no good" >&2; exit 7; fi; ${LOGGER}`;
  const quarantine = (q: Q) => (existsSync(join(q.q, 'fspool/quarantine')) ? readdirSync(join(q.q, 'fspool/quarantine')).sort() : []);

  it('outcome-recorded under quarantine: the next run quarantines the job without running it again', () => {
    const q = twoJobs();
    killedAt(q, 'outcome-recorded', ['--on-error', 'quarantine'], FAIL_1);
    expect(logOf(q)).toBe(lines('try 1'));
    expect(jobs(q)).toHaveLength(2);
    const r = proc(q, ['--on-error', 'quarantine'], FAIL_1);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .*failed \(exit-code\).*completed now without running it again \(nextseq advanced, file quarantined to fspool\/quarantine\//);
    expect(logOf(q)).toBe(lines('try 1', '2:p2'));
    expect(quarantine(q)).toEqual([q.names[0]!, `${q.names[0]!}.json`]);
    expect(nextseq(q)).toBe('3');
  });

  it('nextseq-written under quarantine: the stale file is moved by the next run', () => {
    const q = twoJobs();
    killedAt(q, 'nextseq-written', ['--on-error', 'quarantine'], FAIL_1);
    expect(nextseq(q)).toBe('2');
    expect(quarantine(q)).toEqual([]);
    const r = proc(q, ['--on-error', 'quarantine'], FAIL_1);
    expect(r.code, r.stderr).toBe(0);
    expect(quarantine(q)).toEqual([q.names[0]!, `${q.names[0]!}.json`]);
    expect(logOf(q)).toBe(lines('try 1', '2:p2'));
    expect(jobs(q)).toEqual([]);
  });

  it('quarantined (moved, journal not yet done): the next run marks it done and goes on', () => {
    const q = twoJobs();
    killedAt(q, 'quarantined', ['--on-error', 'quarantine'], FAIL_1);
    expect(quarantine(q)).toEqual([q.names[0]!, `${q.names[0]!}.json`]);
    const r = proc(q, ['--on-error', 'quarantine'], FAIL_1);
    expect(r.code, r.stderr).toBe(0);
    expect(logOf(q)).toBe(lines('try 1', '2:p2'));
    expect(runs(q).filter((r) => r.seq === '1').map((r) => r.commit_state)).toEqual(['recovered']);
  });

  it('backoff: the failure count survives the crash; the job is quarantined after --retries+1 failures in all', () => {
    const q = twoJobs();
    const opts = ['--retries', '2', '--backoff', '0', '--on-error', 'quarantine'];
    killedAt(q, 'backoff', opts, FAIL_1);
    expect(logOf(q)).toBe(lines('try 1'));
    const r = proc(q, opts, FAIL_1);
    expect(r.code, r.stderr).toBe(0);
    // 1 failure before the crash + 2 now = 3 = retries + 1: not 1 + 3.
    expect(logOf(q)).toBe(lines('try 1', 'try 1', 'try 1', '2:p2'));
    const one = runs(q).filter((r) => r.seq === '1');
    expect(one.map((r) => [r.attempt, r.outcome, r.action])).toEqual([
      [1, 'exit-code', 'retry'],
      [2, 'exit-code', 'retry'],
      [3, 'exit-code', 'quarantine'],
    ]);
    expect(one[2]!.stderr_tail).toBe('no good\n');
    const note = JSON.parse(readFileSync(join(q.q, 'fspool/quarantine', `${q.names[0]!}.json`), 'utf8'));
    expect(note).toMatchObject({ seq: '1', file: q.names[0], failures: 3, last_outcome: 'exit-code', exit_code: 7, stderr_tail: 'no good\n' });
  });

  it('timestamp order, outcome-recorded: the file is removed by the next run without running it again', () => {
    const q = setup('fspool-crash-ts-');
    writeFileSync(join(q.q, 'nextseq'), '1\n');
    put(q, packet(5, 'p5'));
    killedAt(q, 'outcome-recorded', ['--order-by', 'timestamp']);
    expect(jobs(q)).toHaveLength(1);
    const r = proc(q, ['--order-by', 'timestamp']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/completed now without running it again \(file deleted\)/);
    expect(logOf(q)).toBe(lines('5:p5'));
    expect(jobs(q)).toEqual([]);
    expect(nextseq(q)).toBe('1');
  });

  it('no crash: a clean run leaves nothing pending and says nothing about recovery', () => {
    const q = twoJobs();
    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(warns(r)).toEqual([]);
    expect(runs(q).map((r) => r.commit_state)).toEqual(['done', 'done']);
  });
});
