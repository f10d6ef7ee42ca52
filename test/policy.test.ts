// The decisions of processing as pure functions (src/run/policy.ts), and the job index
// (src/queue/jobIndex.ts), tested without processes: the receiver's exit judged, retries and
// their pauses, the action after a job's last run, what a job's end means for the run, and the
// watch's backoff.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Keyring } from '../src/codec/keys.js';
import { encodeHeader } from '../src/packet/codec.js';
import { JobIndex } from '../src/queue/jobIndex.js';
import { Queue } from '../src/queue/queue.js';
import { conclude, decide, type ErrorPolicy, isFailure, judge, type Outcome, PACKET_SHARE, retryPause, watchBackoff } from '../src/run/policy.js';
import type { ReceiverExit } from '../src/run/receiver.js';
import { tempDir } from './helpers/cli.js';

const exit = (e: Partial<ReceiverExit>): ReceiverExit => ({ code: 0, signal: null, timedOut: false, ...e });
const policy = (p: Partial<ErrorPolicy> = {}): ErrorPolicy => ({ onError: 'retry', neverDelete: false, retries: 0, backoffSeconds: 0, ...p });
const failed: Outcome = { ok: false, reason: 'command exited with status 3', facts: { kind: 'exit-code', exitCode: 3 } };
const success: Outcome = { ok: true, facts: { kind: 'success' } };

describe('judge: how a receiver run ended', () => {
  it('exit 0 with the whole payload read is a success; the exit status and signal are kept', () => {
    expect(judge(exit({}), { bytes: 10, early: false }, 0, 0)).toEqual({ ok: true, facts: { kind: 'success', exitCode: 0 } });
  });

  it('exit 0 leaving bytes unread, or closing its input early, is still a success, with a note', () => {
    expect(judge(exit({}), undefined, 512, 0)).toMatchObject({ ok: true, note: 'command exited 0 leaving 512 payload bytes unread' });
    expect(judge(exit({}), { bytes: 1, early: true }, -1, 0)).toMatchObject({ ok: true, note: 'command exited 0 before reading all of its input' });
  });

  it('a non-zero exit is a failure; early-exit when the input was not all read', () => {
    expect(judge(exit({ code: 3 }), undefined, 0, 0)).toMatchObject({ ok: false, facts: { kind: 'exit-code', exitCode: 3 } });
    expect(judge(exit({ code: 3 }), undefined, 10, 0)).toMatchObject({ ok: false, reason: 'command exited with status 3 before reading all of its input', facts: { kind: 'early-exit' } });
  });

  it('a decoder failure wins over the exit status: the receiver was killed before end of input', () => {
    const o = judge(exit({ code: null, signal: 'SIGKILL' }), { bytes: 5, early: false, failure: 'zstd: truncated' }, -1, 0);
    expect(o).toMatchObject({ ok: false, reason: 'zstd: truncated; receiver killed before end of input', facts: { kind: 'decoder-failure', signal: 'SIGKILL' } });
  });

  it('a timeout and a signal are failures of their own kind', () => {
    expect(judge(exit({ code: null, signal: 'SIGTERM', timedOut: true }), undefined, 0, 0)).toMatchObject({ facts: { kind: 'timeout' }, reason: 'timed out; command killed by SIGTERM' });
    expect(judge(exit({ code: null, signal: 'SIGSEGV' }), undefined, 0, 0)).toMatchObject({ facts: { kind: 'signal' }, reason: 'command killed by SIGSEGV' });
  });

  it('a command that cannot start is fatal (the processor is misconfigured), unless the packet made the argument list too long', () => {
    expect(judge(exit({ code: 127, startError: 'nope: No such file or directory', startErrno: 2 }), undefined, 0, 0)).toMatchObject({ ok: false, fatal: true, facts: { kind: 'cannot-start' } });
    const small = judge(exit({ code: 127, startError: 'Argument list too long', startErrno: 7 }), undefined, 0, 100);
    expect(small).toMatchObject({ fatal: true });
    const big = judge(exit({ code: 127, startError: 'Argument list too long', startErrno: 7 }), undefined, 0, PACKET_SHARE + 1);
    expect(big).toMatchObject({ ok: false, facts: { kind: 'bad-packet' } });
    expect((big as { fatal?: boolean }).fatal).toBeUndefined();
  });
});

describe('retries', () => {
  it('a failure is tried again while the journal counts at most --retries failures, with a pause that doubles', () => {
    const p = policy({ retries: 2, backoffSeconds: 5 });
    expect(retryPause(p, failed, 1, 1, false)).toBe(5);
    expect(retryPause(p, failed, 2, 2, false)).toBe(10);
    expect(retryPause(p, failed, 3, 3, false)).toBeUndefined();
  });

  it('the count is over every run the journal knows: a job that already failed twice gets no retry in a new run', () => {
    expect(retryPause(policy({ retries: 2, backoffSeconds: 5 }), failed, 3, 1, false)).toBeUndefined();
  });

  it('no retry for a success, an interruption, a fatal error, or when the run is stopping', () => {
    const p = policy({ retries: 5 });
    expect(retryPause(p, success, 0, 1, false)).toBeUndefined();
    expect(retryPause(p, { ok: false, reason: 'x', interrupted: 'SIGINT', facts: { kind: 'interrupted' } }, 1, 1, false)).toBeUndefined();
    expect(retryPause(p, { ok: false, reason: 'x', fatal: true, facts: { kind: 'cannot-start' } }, 1, 1, false)).toBeUndefined();
    expect(retryPause(p, failed, 1, 1, true)).toBeUndefined();
  });

  it('what counts as a failure', () => {
    expect(isFailure(failed)).toBe(true);
    expect(isFailure({ ok: false, reason: 'Fail packet', facts: { kind: 'fail-packet' } })).toBe(true);
    expect(isFailure({ ok: false, reason: 'x', facts: { kind: 'cannot-start' } })).toBe(false);
    expect(isFailure(success)).toBe(false);
  });
});

describe('decide: the action after the last run', () => {
  it('success deletes (keeps with --never-delete); an interruption decides nothing; a fatal error stops', () => {
    expect(decide(success, policy())).toBe('delete');
    expect(decide(success, policy({ neverDelete: true }))).toBe('keep');
    expect(decide({ ok: false, reason: 'x', interrupted: 'SIGTERM' }, policy())).toBeUndefined();
    expect(decide({ ok: false, reason: 'x', fatal: true }, policy({ onError: 'delete' }))).toBe('stop');
  });

  it('a failure follows --on-error', () => {
    expect(decide(failed, policy({ onError: 'retry' }))).toBe('stop');
    expect(decide(failed, policy({ onError: 'delete' }))).toBe('delete');
    expect(decide(failed, policy({ onError: 'delete', neverDelete: true }))).toBe('keep');
    expect(decide(failed, policy({ onError: 'leave' }))).toBe('keep');
    expect(decide(failed, policy({ onError: 'quarantine' }))).toBe('quarantine');
  });
});

describe('conclude: what a job end means for the run', () => {
  it('a success goes on, with one INFO line (and the note, also at INFO)', () => {
    expect(conclude({ ...success, note: 'left 3 bytes' }, 'job 1', policy())).toEqual({
      effect: { next: true },
      lines: [
        ['info', 'job 1: left 3 bytes'],
        ['info', 'job 1 succeeded'],
      ],
    });
  });

  it('a failure under retry ends the run with the job kept; under the others the run goes on', () => {
    expect(conclude(failed, 'job 1', policy()).effect).toEqual({ next: false, error: expect.stringMatching(/^stopping at job 1: it failed and --on-error is retry/) });
    for (const onError of ['delete', 'leave', 'quarantine'] as const) expect(conclude(failed, 'job 1', policy({ onError })).effect).toEqual({ next: true });
    expect(conclude(failed, 'job 1', policy()).lines).toEqual([['error', 'job 1 failed: command exited with status 3']]);
  });

  it('an interruption ends the run quietly (a WARN), a fatal error with the reason', () => {
    expect(conclude({ ok: false, reason: 'x', interrupted: 'SIGINT' }, 'job 1', policy()).effect).toEqual({ next: false, interrupted: true });
    expect(conclude({ ok: false, reason: 'cannot run command: nope', fatal: true }, 'job 1', policy({ onError: 'delete' })).effect).toEqual({
      next: false,
      error: 'job 1: cannot run command: nope; job kept',
    });
  });
});

describe("the watch's backoff", () => {
  it('doubles from --backoff (10 s when it is 0), up to an hour', () => {
    expect([1, 2, 3, 4].map((n) => watchBackoff(n, 1))).toEqual([1, 2, 4, 8]);
    expect([1, 2, 3].map((n) => watchBackoff(n, 0))).toEqual([10, 20, 40]);
    expect(watchBackoff(30, 1)).toBe(3600);
    expect(watchBackoff(0, 5)).toBe(0);
  });

  it('a --backoff above an hour is kept as it is', () => {
    expect(watchBackoff(3, 7200)).toBe(7200);
  });
});

describe('the job index', () => {
  const packet = (seq: number) => encodeHeader({ seq: BigInt(seq), ctimeSecs: 1n, ctimeNanos: seq, cmd: { kind: 'NOP' } });
  function queueWith(files: Record<string, Buffer | string>): Queue {
    const dir = join(tempDir(), 'q');
    mkdirSync(join(dir, 'jobs'), { recursive: true });
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, 'jobs', name), bytes);
    return new Queue(dir);
  }
  const ctx = { keys: new Keyring({ defaults: false }) };

  it('finds the files of a seq, reports an unreadable file once, and reads a file that changed again', async () => {
    const q = queueWith({ 'fspl-a.fspl': packet(1), 'fspl-b.fspl': packet(2), 'fspl-c.fspl': packet(2), 'fspl-bad.fspl': 'junk', 'other.tmp': packet(9) });
    const index = new JobIndex(q, ctx);
    const first = await index.refresh();
    expect(first.map((j) => j.name).sort()).toEqual(['fspl-a.fspl', 'fspl-b.fspl', 'fspl-bad.fspl', 'fspl-c.fspl']);
    expect(index.withSeq(1n).map((j) => j.name)).toEqual(['fspl-a.fspl']);
    expect(index.withSeq(2n).map((j) => j.name).sort()).toEqual(['fspl-b.fspl', 'fspl-c.fspl']);
    expect(index.unreadable().map((j) => j.name)).toEqual(['fspl-bad.fspl']);
    // A second look: nothing new to report (the unreadable file is read again, quietly).
    expect(await index.refresh()).toEqual([]);
    // A file renamed over a known name is read again: another seq now.
    writeFileSync(join(q.jobsDir, '.tmp'), packet(3));
    renameSync(join(q.jobsDir, '.tmp'), join(q.jobsDir, 'fspl-a.fspl'));
    index.forget('fspl-a.fspl');
    await index.refresh();
    expect(index.withSeq(1n)).toEqual([]);
    expect(index.withSeq(3n).map((j) => j.name)).toEqual(['fspl-a.fspl']);
  });

  it('a file that failed a required signature stays unreadable until it changes, and is not counted as a file that could be any seq', async () => {
    const q = queueWith({ 'fspl-forged.fspl': packet(5) });
    const index = new JobIndex(q, ctx);
    await index.refresh();
    const [forged] = index.withSeq(5n);
    index.distrust(forged!, 'not signed');
    await index.refresh();
    expect(index.withSeq(5n)).toEqual([]);
    expect(index.errorOf('fspl-forged.fspl')).toMatch(/fails --require-signature \(not signed\), whatever seq it claims/);
    expect(index.unreadable()).toEqual([]);
    // Replaced by another file: read afresh.
    writeFileSync(join(q.jobsDir, '.tmp'), packet(6));
    renameSync(join(q.jobsDir, '.tmp'), join(q.jobsDir, 'fspl-forged.fspl'));
    await index.refresh();
    expect(index.withSeq(6n).map((j) => j.name)).toEqual(['fspl-forged.fspl']);
  });
});
