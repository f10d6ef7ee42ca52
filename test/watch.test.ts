// queue-process --watch: packets processed as they land, the lock held while
// watching, SIGTERM ending the run cleanly, a failure not ending the watch.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lockHolder } from '../src/queue/lockHolder.js';
import { FSPOOL, fspool, makeQueue, plainPacket, runAsync, runSync, tempDir } from './helpers/cli.js';
import { fileLines, LONG, nextseqText, put, sleep, waitFor } from './helpers/queue.js';

const started: number[] = [];
afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

/** Read from /proc/locks: a probe that took the lock, even for a moment, could make a watcher starting then refuse to start. */
const lockFree = (q: string) => lockHolder(join(q, 'nextseq.lock')).pid === undefined;

describe('queue-process --watch', () => {
  it('runs packets as they land (announced by inotify, long before the rescan), in order, and holds the lock meanwhile', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const log = join(dir, 'log');
    const packets = [1, 2, 3, 4].map((i) => plainPacket(i, Buffer.from(`p${i}`)));
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '60', 'sh', '--', '-c', `echo "$FSPL_SEQ $(cat)" >> ${log}`]);
    started.push(w.pid);
    await waitFor('the watcher to take the lock', () => !lockFree(q), 30_000);
    // 2 first: nothing may run until 1 lands
    put(q, packets[1]!);
    await sleep(400);
    expect(fileLines(log)).toEqual([]);
    for (const i of [0, 3, 2]) {
      const t0 = Date.now();
      put(q, packets[i]!);
      const want = i === 0 ? 2 : i === 3 ? 2 : 4;
      await waitFor(`${want} jobs run`, () => fileLines(log).length >= want, 30_000);
      // The rescan is a minute away: only the arrival itself can have woken the watcher.
      expect(Date.now() - t0).toBeLessThan(30_000);
    }
    expect(fileLines(log)).toEqual(['1 p1', '2 p2', '3 p3', '4 p4']);
    expect(lockFree(q)).toBe(false);
    process.kill(w.pid, 'SIGTERM');
    const r = await w.done;
    expect([0, 143]).toContain(r.code);
    expect(lockFree(q)).toBe(true);
    expect(nextseqText(q)).toBe('5\n');
  });

  it('SIGTERM mid-job: no new job starts, the running one finishes, the watch ends (143)', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const mark = join(dir, 'mark');
    ['one', 'two'].forEach((p, i) => put(q, plainPacket(i + 1, Buffer.from(p))));
    const script = `echo "start $FSPL_SEQ" >> ${mark}; cat > /dev/null; sleep 1; echo "end $FSPL_SEQ" >> ${mark}`;
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', 'sh', '--', '-c', script]);
    started.push(w.pid);
    await waitFor('the job to start', () => fileLines(mark).includes('start 1'));
    process.kill(w.pid, 'SIGTERM');
    const r = await w.done;
    expect(r.code, r.stderr).toBe(143);
    expect(fileLines(mark)).toEqual(['start 1', 'end 1']);
    expect(r.stderr).toMatch(/job 1 .* succeeded/);
    expect(nextseqText(q)).toBe('2\n');
    expect(lockFree(q)).toBe(true);
  });

  it('SIGTERM mid-job with --stop-timeout: the receiver gets it once the timeout is over; the job stays queued and the next start runs it', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const mark = join(dir, 'mark');
    put(q, plainPacket(1, Buffer.from('slow')));
    const script = `trap 'echo term >> ${mark}; exit 9' TERM; echo start >> ${mark}; cat > /dev/null; sleep 30 & wait`;
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--stop-timeout', '1', 'sh', '--', '-c', script]);
    started.push(w.pid);
    await waitFor('the job to start', () => fileLines(mark).includes('start'));
    process.kill(w.pid, 'SIGTERM');
    await sleep(300);
    expect(fileLines(mark), 'not before the stop timeout').toEqual(['start']);
    const r = await w.done;
    expect(r.code).toBe(143);
    expect(fileLines(mark)).toEqual(['start', 'term']);
    expect(r.stderr).toMatch(/interrupted by SIGTERM/);
    expect(nextseqText(q)).toBe('1\n');
    expect(lockFree(q)).toBe(true);
    // the next start resumes with that job
    const again = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'cat']);
    expect(again.code).toBe(0);
    expect(again.stdout.toString()).toBe('slow');
  });

  it('a second SIGTERM interrupts the running job at once', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const mark = join(dir, 'mark');
    put(q, plainPacket(1, Buffer.from('slow')));
    const script = `trap 'echo term >> ${mark}; exit 9' TERM; echo start >> ${mark}; cat > /dev/null; sleep 30 & wait`;
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', 'sh', '--', '-c', script]);
    started.push(w.pid);
    await waitFor('the job to start', () => fileLines(mark).includes('start'));
    process.kill(w.pid, 'SIGTERM');
    await sleep(300);
    process.kill(w.pid, 'SIGTERM');
    const r = await w.done;
    expect(r.code).toBe(143);
    expect(fileLines(mark)).toEqual(['start', 'term']);
    expect(nextseqText(q)).toBe('1\n');
  });

  it('a failing job (retry) does not end the watch: it is tried again after a pause that doubles, and reported once', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const log = join(dir, 'log');
    const tries = join(dir, 'tries');
    const gate = join(dir, 'gate');
    // the receiver fails until the gate file exists
    const script = `echo x >> ${tries}; test -e ${gate} || exit 3; echo "$FSPL_SEQ" >> ${log}`;
    put(q, plainPacket(1));
    // A rescan every half second, and new packets landing: neither may bring the next try forward.
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '0.5', '--backoff', '0.5', 'sh', '--', '-c', script]);
    started.push(w.pid);
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) {
      await sleep(500);
      put(q, plainPacket(i + 2));
    }
    await waitFor('5 seconds of watching', () => Date.now() - t0 >= 5_000, 20_000);
    // Tries at about 0, 0.5, 1.5, 3.5 s (the pause doubles from --backoff): never one per rescan.
    const n = fileLines(tries).length;
    expect(n).toBeGreaterThanOrEqual(2);
    expect(n).toBeLessThanOrEqual(5);
    expect(fileLines(log)).toEqual([]);
    writeFileSync(gate, '');
    await waitFor('the jobs to run once the failing one succeeds', () => fileLines(log).length === 6, 30_000);
    expect(fileLines(log)).toEqual(['1', '2', '3', '4', '5', '6']);
    process.kill(w.pid, 'SIGTERM');
    const r = await w.done;
    expect(r.code).toBe(143);
    // One ERROR per try of the job, and the stop it caused reported once, not once per look.
    expect(r.stderr.match(/job 1 .* failed: command exited with status 3/g)?.length).toBe(n);
    expect(r.stderr.match(/watching on/g)?.length).toBe(1);
    expect(r.stderr).toMatch(/tried again in 1s \(failure 2 in a row\)/);
  });

  it('a watch started again keeps the pause its failing job was given (journaled): a restart does not run it again at once', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const tries = join(dir, 'tries');
    const script = `echo x >> ${tries}; exit 3`;
    put(q, plainPacket(1));
    const args = ['queue-process', '-q', q, '--watch', '--rescan', '0.2', '--backoff', '30', 'sh', '--', '-c', script];
    const first = runAsync(FSPOOL, args);
    started.push(first.pid);
    await waitFor('the first try', () => fileLines(tries).length === 1, 20_000);
    await waitFor('its pause to begin', () => /tried again in 30s \(failure 1 in a row\)/.test(first.stderr()), 20_000);
    process.kill(first.pid, 'SIGTERM');
    expect((await first.done).code).toBe(143);
    // Started again twice (a reload, a restart): the job waits out what is left of its 30 s.
    for (let i = 0; i < 2; i++) {
      const again = runAsync(FSPOOL, args);
      started.push(again.pid);
      await waitFor('the watch to say so', () => /the failing job is tried again in \d+s \(failure 1 in a row, journaled\)/.test(again.stderr()), 20_000);
      await sleep(1000);
      process.kill(again.pid, 'SIGTERM');
      const r = await again.done;
      expect(r.code, r.stderr).toBe(143);
      expect(Number(/tried again in (\d+)s/.exec(r.stderr)![1])).toBeLessThanOrEqual(30);
    }
    expect(fileLines(tries)).toHaveLength(1);
    expect(nextseqText(q)).toBe('1\n');
  });

  it('a failure in a row is a pass that stopped at the job, not each of its --retries: a run that tried three times is one', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plainPacket(1));
    const fail = ['sh', '--', '-c', 'cat >/dev/null; exit 3'];
    expect(fspool(['queue-process', '-q', q, '--retries', '2', '--backoff', '0.05', ...fail]).code).toBe(1);
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--backoff', '30', ...fail]);
    started.push(w.pid);
    await waitFor('the watch to say so', () => /tried again in \d+s \(failure \d+ in a row, journaled\)/.test(w.stderr()), 20_000);
    process.kill(w.pid, 'SIGTERM');
    const r = await w.done;
    expect(r.stderr).toMatch(/the failing job is tried again in (30|29)s \(failure 1 in a row, journaled\)/);
  });

  /**
   * A watch whose receiver appends each job's seq to `log`, returned once job 1 has run: past
   * its start and waiting (a queue without jobs/ at its start is refused, rightly). `ended()`
   * says how it ended, if it has.
   */
  async function watchingSeqs(rescan: string) {
    const dir = tempDir();
    const q = makeQueue(dir);
    const log = join(dir, 'log');
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', rescan, 'sh', '--', '-c', `echo "$FSPL_SEQ" >> ${log}`]);
    started.push(w.pid);
    let ended: string | undefined;
    void w.done.then((r) => (ended = `the watcher ended (${r.code}): ${r.stderr}`));
    put(q, plainPacket(1));
    await waitFor('the first job to run', () => ended !== undefined || fileLines(log).length === 1, 30_000);
    const ran = (n: number) => waitFor(`job ${n} to run`, () => ended !== undefined || fileLines(log).length === n, 30_000);
    return { q, log, w, ran, ended: () => ended };
  }

  it('jobs/ replaced under the watcher (two renames): the packets of the new one run', async () => {
    const { q, log, w, ran, ended } = await watchingSeqs('1');
    // inotify follows the old directory: the queue directory's rename events, or the rescan,
    // tell the watch to look at the new one. Two renames leave jobs/ missing for microseconds.
    mkdirSync(join(q, 'jobs.new'));
    writeFileSync(join(q, 'jobs.new', 'fspl-x.fspl'), plainPacket(2));
    renameSync(join(q, 'jobs'), join(q, 'jobs.old'));
    renameSync(join(q, 'jobs.new'), join(q, 'jobs'));
    await ran(2);
    expect(ended()).toBeUndefined();
    expect(fileLines(log)).toEqual(['1', '2']);
    process.kill(w.pid, 'SIGTERM');
    await w.done;
  });

  it('jobs/ moved away under a watch: said once; the directory put back is watched anew, with no rescan needed', async () => {
    // No rescan within the test: only inotify's events can move the watch on.
    const { q, log, w, ran, ended } = await watchingSeqs('3600');
    renameSync(join(q, 'jobs'), join(q, 'jobs.old'));
    const gone = /ERROR fspool: \S+\/jobs is not there \(moved, or being replaced\); looking again when it is back; watching on/;
    const said = () => w.stderr().split('\n').filter((l) => gone.test(l)).length;
    await waitFor('the watch to see jobs/ gone', () => ended() !== undefined || said() > 0, 30_000);
    mkdirSync(join(q, 'jobs'));
    put(q, plainPacket(2));
    await ran(2);
    // An arrival in the new directory wakes the watch: it watches that one, not the old.
    put(q, plainPacket(3));
    await ran(3);
    expect(ended()).toBeUndefined();
    expect(fileLines(log)).toEqual(['1', '2', '3']);
    expect(said()).toBe(1);
    process.kill(w.pid, 'SIGTERM');
    await w.done;
  });

  it('a file that could not be read once (a decoder that failed) is read again at the next rescan, and warned about once', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const log = join(dir, 'log');
    const flag = join(dir, 'failed-once');
    writeFileSync(join(q, 'jobs', 'fspl-1.fspl'), plainPacket(1, Buffer.from('hello')));
    const decoder = `if [ ! -e ${flag} ]; then : > ${flag}; exit 1; fi; exec cat`;
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '0.5', '-d', decoder, 'sh', '--', '-c', `cat >> ${log}`]);
    started.push(w.pid);
    // The receiver's output shows before fspool has recorded the job as done: wait for both, or
    // the SIGTERM can interrupt the job between them (and it is rightly kept).
    const done = () => fileLines(log).includes('hello') && nextseqText(q) === '2\n';
    await waitFor('the job to run and be done after the decoder recovered', done, 8000);
    process.kill(w.pid, 'SIGTERM');
    const r = await w.done;
    expect(r.stderr.match(/cannot read job file/g)).toHaveLength(1);
  });

  it('as PID 1 of a PID namespace (a container without an init), it reaps every child left to it', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    // Each job leaves a process to reap; more than one left unreaped fails: 5 jobs show it, 15
    // in the long mode.
    const N = LONG ? 15 : 5;
    for (let i = 1; i <= N; i++) writeFileSync(join(q, 'jobs', `fspl-${i}.fspl`), plainPacket(i));
    const w = runAsync('unshare', ['--fork', '--pid', '--mount-proc', FSPOOL, 'queue-process', '-q', q, '--watch', 'true']);
    started.push(w.pid);
    await waitFor(`${N} jobs`, () => nextseqText(q) === `${N + 1}\n`, 20_000);
    await sleep(500);
    // unshare's child is fspool, PID 1 inside; count its zombie children from outside.
    const inner = runSync('pgrep', ['-P', String(w.pid)]).stdout.toString().trim();
    const zombies = runSync('ps', ['--ppid', inner, '-o', 'stat=']).stdout.toString().split('\n').filter((l) => l.startsWith('Z'));
    process.kill(Number(inner), 'SIGTERM');
    await w.done;
    // The last job's child may still be waiting for its release; before fspool
    // reaped them, each job left a zombie.
    expect(zombies.length).toBeLessThanOrEqual(1);
  });
});
