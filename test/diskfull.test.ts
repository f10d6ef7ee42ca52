// Disk full: writes to /dev/full, and a queue, a seqfile and a nextseq
// on a tiny tmpfs. Every case: exit 1, one clear line saying there is no space, nothing
// half-committed (no job under a job name, no temp file left), no sequence number consumed.
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, statfsSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHeader } from '../src/packet/codec.js';
import { asNobody, FSPOOL, fspool, makeQueue, type Result, runAsync, tempDir } from './helpers/cli.js';
import { allInJobs, nextseqText, put, waitFor } from './helpers/queue.js';
import { makeKey } from './helpers/keys.js';

interface RunOpts {
  input?: Buffer | string;
  stdinFile?: string;
  /** Where stdout goes: /dev/full, a file, or a pipe (collected). */
  stdoutFile?: string;
}

const inputs = tempDir('fspool-diskfull-input-');
let inputCount = 0;

/**
 * Run fspool with stdout on a file of our choice (e.g. /dev/full). Input goes through a real
 * pipe from `cat`: fspool may rightly exit before reading all of it, which would make Node's
 * own writer fail with EPIPE.
 */
function run(args: string[], opts: RunOpts = {}): Result {
  let cmd = FSPOOL;
  let argv = args;
  if (opts.input !== undefined) {
    const file = join(inputs, `input-${inputCount++}`);
    writeFileSync(file, opts.input);
    cmd = 'sh';
    argv = ['-c', 'f=$1; shift; cat "$f" 2>/dev/null | "$@"', 'sh', file, FSPOOL, ...args];
  }
  const stdin = opts.stdinFile ? openSync(opts.stdinFile, 'r') : 'ignore';
  const stdout = opts.stdoutFile ? openSync(opts.stdoutFile, 'w') : 'pipe';
  try {
    const r = spawnSync(cmd, argv, { stdio: [stdin, stdout, 'pipe'], timeout: 60_000, maxBuffer: 1 << 28 });
    if (r.error) throw r.error;
    return { code: r.status, signal: r.signal, stdout: r.stdout ?? Buffer.alloc(0), stderr: r.stderr.toString() };
  } finally {
    if (typeof stdin === 'number') closeSync(stdin);
    if (typeof stdout === 'number') closeSync(stdout);
  }
}

/** Exit 1 with exactly one line on stderr, `Error: ...`, saying the disk is full. */
function expectNoSpace(r: Result, what: string): void {
  expect(r.signal, `${what}: ${r.stderr}`).toBeNull();
  expect(r.code, `${what}: ${r.stderr}`).toBe(1);
  const lines = r.stderr.split('\n').filter((l) => l.trim().length > 0);
  expect(lines, what).toHaveLength(1);
  expect(lines[0], what).toMatch(/^Error: .*no space left on device/i);
  expect(r.stderr, what).not.toMatch(/^\s+at |node:internal|FATAL/m);
}

const nextSeq = (seqfile: string) => {
  const r = fspool(['prepare-get-next', '-s', seqfile]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.toString().trim();
};

describe('writing to /dev/full', () => {
  const dir = tempDir('fspool-devfull-');
  const big = randomBytes(3 << 20); // more than one write and more than a pipe holds
  const passfile = join(dir, 'pass');
  writeFileSync(passfile, 'correct horse\n');

  const variants: Array<[string, string[], Buffer | undefined]> = [
    ['prepare, small payload', ['prepare', '-i', '-'], Buffer.from('hello\n')],
    ['prepare, 3 MiB payload', ['prepare', '-i', '-'], big],
    ['prepare, no payload', ['prepare'], undefined],
    ['prepare --zstd, 3 MiB payload', ['prepare', '--zstd', '-i', '-'], big],
    ['prepare --passphrase-file, small payload', ['prepare', '--passphrase-file', passfile, '-i', '-'], Buffer.from('secret\n')],
    ['prepare-nop', ['prepare-nop'], undefined],
    ['prepare-fail', ['prepare-fail'], undefined],
  ];
  for (const [name, args, input] of variants) {
    it(`${name} > /dev/full: exit 1, one line, the seq not consumed`, () => {
      const seqfile = join(dir, `seq-${name.replace(/\W+/g, '-')}`);
      expect(fspool(['prepare-set-next', '-s', seqfile, '7']).code).toBe(0);
      const r = run([...args, '-s', seqfile], { input, stdoutFile: '/dev/full' });
      expectNoSpace(r, name);
      expect(nextSeq(seqfile)).toBe('7');
      expect(existsSync(`${seqfile}.temp`)).toBe(false);
      // And the same command to a working stdout takes 7 and moves on to 8.
      const ok = run([...args, '-s', seqfile], { input });
      expect(ok.code, ok.stderr).toBe(0);
      expect(nextSeq(seqfile)).toBe('8');
    });
  }

  // Three jobs, seqs 1 to 3: a small payload, 3 MiB, and 3 MiB in a zstd-compressed packet.
  const kinds = ['small', 'big', 'zstd'] as const;
  const packets = {} as Record<(typeof kinds)[number], Buffer>;
  const payloadOf = (k: (typeof kinds)[number]) => (k === 'small' ? Buffer.from('hello\n') : big);
  let q = '';
  beforeAll(() => {
    q = makeQueue(dir);
    const seqfile = join(dir, 'queue-sender-seq');
    for (const k of kinds) {
      const p = run(['prepare', '-s', seqfile, ...(k === 'zstd' ? ['--zstd'] : []), '-i', '-'], { input: payloadOf(k) });
      expect(p.code, p.stderr).toBe(0);
      packets[k] = p.stdout;
      put(q, p.stdout);
    }
  });

  kinds.forEach((kind, i) => {
    it(`queue-payload of a ${kind} job > /dev/full: exit 1, one line, the job still queued`, () => {
      const before = allInJobs(q);
      const r = run(['queue-payload', '-q', q, '-j', String(i + 1)], { stdoutFile: '/dev/full' });
      expectNoSpace(r, `queue-payload ${kind}`);
      expect(allInJobs(q)).toEqual(before);
      expect(nextseqText(q)).toBe('1\n');
      const ok = run(['queue-payload', '-q', q, '-j', String(i + 1)]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout.equals(payloadOf(kind))).toBe(true);
    });
  });

  for (const kind of kinds) {
    for (const via of ['file', 'pipe'] as const) {
      it(`stdin-payload of a ${kind} packet from a ${via} > /dev/full: exit 1, one line`, () => {
        const file = join(dir, `stdin-${kind}.fspl`);
        writeFileSync(file, packets[kind]);
        const r = run(['stdin-payload'], { ...(via === 'file' ? { stdinFile: file } : { input: packets[kind] }), stdoutFile: '/dev/full' });
        expectNoSpace(r, `stdin-payload ${kind} ${via}`);
      });
    }
  }
});

// ---- A tiny filesystem ----

/** Mount a fresh tmpfs of `size` (root only); undefined and the reason if that is not possible. */
const mounts: string[] = [];
function tinyFs(size = '256k'): string {
  const d = join(tempDir('fspool-tinyfs-'), 'mnt');
  mkdirSync(d);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', d]);
  if (r.status !== 0) throw new Error(`mount failed: ${r.stderr}`);
  mounts.push(d);
  return d;
}
afterAll(() => {
  for (const d of mounts.reverse()) {
    if (spawnSync('umount', [d]).status !== 0) spawnSync('umount', ['-l', d]);
  }
});

/** Can this process mount a tmpfs? Tried once, at collection, so that skips say why. */
const mountProbe = ((): string | undefined => {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    const d = tinyFs('64k');
    if (spawnSync('umount', [d]).status === 0) mounts.pop();
    return undefined;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
})();
const onTmpfs = mountProbe ? `SKIPPED (cannot mount a tmpfs: ${mountProbe})` : 'on a 256 KiB tmpfs';

/** Fill the filesystem of `dir` with FILE until writes fail; returns the filler's path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'a');
  const chunk = Buffer.alloc(4096, 0x55);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
  expect(statfsSync(dir).bavail).toBe(0);
  return path;
}
const freeBlocks = (dir: string) => statfsSync(dir).bfree;

describe.skipIf(mountProbe !== undefined)(`a quarantine on a file system of its own ${onTmpfs}`, () => {
  it('is filled and emptied by copies made anew: a symlink planted in jobs/ at the temp name of a release is not written through', () => {
    const q = makeQueue(tempDir());
    const packetBytes = run(['prepare', '-s', '-', '-i', '-'], { input: 'one\n' }).stdout;
    put(q, packetBytes);
    const quarantine = join(q, 'fspool', 'quarantine');
    mkdirSync(quarantine, { recursive: true });
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', quarantine]).status).toBe(0);
    mounts.push(quarantine);
    expect(run(['queue-process', '-q', q, '--on-error', 'quarantine', 'false']).code).toBe(0);
    const [name] = readdirSync(quarantine).filter((n) => n.endsWith('.fspl'));
    expect(readFileSync(join(quarantine, name!))).toEqual(packetBytes);
    const victim = join(tempDir(), 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(q, 'jobs', `.${name}.release.tmp`));
    const r = run(['queue-quarantine', '-q', q, '--release', name!]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(q, 'jobs', name!)).isFile()).toBe(true);
    expect(readFileSync(join(q, 'jobs', name!))).toEqual(packetBytes);
  });

  it('full, as QUEUE/fspool/ of its own, before a job: the job is not run, nothing moves; once there is room it runs, fails and is quarantined, journaled', () => {
    const q = makeQueue(tempDir());
    const seqfile = join(tempDir('fspool-qfull-'), 'seq');
    for (const p of ['one', 'two']) put(q, run(['prepare', '-s', seqfile, '-i', '-'], { input: `${p}\n` }).stdout);
    const state = join(q, 'fspool');
    mkdirSync(state);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', state]).status).toBe(0);
    mounts.push(state);
    const log = join(tempDir('fspool-qfull-log-'), 'ran.log');
    const failing = ['--on-error', 'quarantine', '--', 'sh', '-c', `cat >> ${log}; exit 1`];
    // Job 1 fails and is quarantined; then the folder fills, and job 2 must not start: its file
    // could not be set aside once nextseq had moved past it.
    expect(run(['queue-process', '-q', q, '-n', '1', ...failing]).code).toBe(0);
    const filler = fill(state);
    const r = run(['queue-process', '-q', q, ...failing]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('Error: '))).toHaveLength(1);
    expect(r.stderr).toMatch(/^Error: no space left on device: .* free on the file system of .*\/fspool, and recording a job needs .*; free some space; job 2 was not run/m);
    expect(readFileSync(log, 'utf8')).toBe('one\n');
    expect(nextseqText(q)).toBe('2\n');
    expect(allInJobs(q)).toHaveLength(1);
    unlinkSync(filler);
    expect(run(['queue-process', '-q', q, ...failing]).code).toBe(0);
    expect(readFileSync(log, 'utf8')).toBe('one\ntwo\n');
    expect(nextseqText(q)).toBe('3\n');
    expect(readdirSync(join(state, 'quarantine')).filter((n) => n.endsWith('.fspl'))).toHaveLength(2);
    expect(fspool(['queue-history', '-q', q]).stdout.toString().match(/quarantine/g)).toHaveLength(2);
  });
});

describe.skipIf(mountProbe !== undefined)(`a queue, a seqfile and nextseq ${onTmpfs}`, () => {
  it('queue-write of a packet bigger than the space: exit 1, no job and no temp file left, the existing job untouched', () => {
    const q = makeQueue(tinyFs());
    const first = run(['prepare', '-s', '-', '-i', '-'], { input: 'first\n' }).stdout;
    put(q, first);
    const [existing] = allInJobs(q);
    const free = freeBlocks(q);
    const huge = run(['prepare', '-s', '-', '-i', '-'], { input: randomBytes(400 << 10) }).stdout;
    const r = run(['queue-write', '-q', q], { input: huge });
    expectNoSpace(r, 'queue-write');
    expect(allInJobs(q)).toEqual([existing]);
    expect(readFileSync(join(q, 'jobs', existing!)).equals(first)).toBe(true);
    expect(freeBlocks(q)).toBe(free); // the partial temp file was removed, its space returned
    const ls = run(['queue-ls', '-q', q]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.toString().trim().split('\n')).toHaveLength(2);
    // The queue still works once there is room: a small packet goes in.
    const small = run(['prepare', '-s', '-', '-i', '-'], { input: 'second\n' }).stdout;
    expect(run(['queue-write', '-q', q], { input: small }).code).toBe(0);
  });

  it('queue-write onto a full filesystem: exit 1, nothing left behind', () => {
    const q = makeQueue(tinyFs());
    const filler = fill(q);
    const r = run(['queue-write', '-q', q], { input: run(['prepare', '-s', '-', '-i', '-'], { input: 'x\n' }).stdout });
    expectNoSpace(r, 'queue-write onto a full fs');
    expect(allInJobs(q)).toEqual([]);
    unlinkSync(filler);
  });

  it('enqueue onto a full queue filesystem: exit 1, the sender seqfile (on a normal fs) not consumed', () => {
    const q = makeQueue(tinyFs());
    const seqfile = join(tempDir('fspool-enq-'), 'seq');
    expect(fspool(['prepare-set-next', '-s', seqfile, '5']).code).toBe(0);
    // A payload bigger than the filesystem, then any payload onto a filled one.
    const r1 = run(['enqueue', '-q', q, '-s', seqfile, '-i', '-'], { input: randomBytes(400 << 10) });
    expectNoSpace(r1, 'enqueue of a packet bigger than the fs');
    expect(nextSeq(seqfile)).toBe('5');
    expect(allInJobs(q)).toEqual([]);
    const filler = fill(q);
    const r2 = run(['enqueue', '-q', q, '-s', seqfile, '-i', '-'], { input: 'small\n' });
    expectNoSpace(r2, 'enqueue onto a full fs');
    expect(nextSeq(seqfile)).toBe('5');
    expect(allInJobs(q)).toEqual([]);
    // With room again, the same enqueue takes 5.
    unlinkSync(filler);
    const ok = run(['enqueue', '-q', q, '-s', seqfile, '-i', '-'], { input: 'small\n' });
    expect(ok.code, ok.stderr).toBe(0);
    expect(nextSeq(seqfile)).toBe('6');
    const ls = run(['queue-ls', '-q', q]).stdout.toString();
    expect(ls).toMatch(/^5 /m);
  });

  it('prepare with its seqfile on a full filesystem: exit 1, the seqfile keeps its number, no temp file', () => {
    const fs = tinyFs();
    const seqfile = join(fs, 'seq');
    expect(fspool(['prepare-set-next', '-s', seqfile, '3']).code).toBe(0);
    // Make the lock file exist too, as after any earlier prepare.
    expect(run(['prepare', '-s', seqfile, '-i', '-'], { input: 'one\n', stdoutFile: '/dev/null' }).code).toBe(0);
    expect(nextSeq(seqfile)).toBe('4');
    const filler = fill(fs);
    const out = join(tempDir('fspool-seqfull-'), 'p.fspl');
    const r = run(['prepare', '-s', seqfile, '-i', '-'], { input: 'two\n', stdoutFile: out });
    expectNoSpace(r, 'prepare with the seqfile on a full fs');
    expect(readFileSync(seqfile, 'latin1')).toBe('4\n');
    expect(existsSync(`${seqfile}.temp`)).toBe(false);
    expect(run(['prepare-set-next', '-s', seqfile, '9']).code).toBe(1);
    expect(readFileSync(seqfile, 'latin1')).toBe('4\n');
    unlinkSync(filler);
    expect(run(['prepare', '-s', seqfile, '-i', '-'], { input: 'two\n', stdoutFile: '/dev/null' }).code).toBe(0);
    expect(nextSeq(seqfile)).toBe('5');
  });

  it('prepare whose seqfile cannot advance lets no complete packet out (the number is consumed exactly when one leaves)', () => {
    // spec/queue-layout.md: "the number is consumed exactly when a complete packet left the
    // process". If a whole packet with seq N reaches stdout and N is not consumed, a pipeline
    // (prepare | queue-write, which cannot see prepare's status) queues it, and the sender's
    // next packet gets N too: two different packets with seq N, and the queue stops as
    // ambiguous. Writing N+1 to FILE.temp (and fsyncing it) before the packet goes out would
    // fail on a full disk before anything is written, leaving only the rename for the end.
    const fs = tinyFs();
    const seqfile = join(fs, 'seq');
    expect(fspool(['prepare-set-next', '-s', seqfile, '4']).code).toBe(0);
    expect(run(['prepare', '-s', seqfile, '-i', '-'], { input: 'warm\n', stdoutFile: '/dev/null' }).code).toBe(0);
    const filler = fill(fs);
    const out = join(tempDir('fspool-seqfull2-'), 'p.fspl');
    const r = run(['prepare', '-s', seqfile, '-i', '-'], { input: 'two\n', stdoutFile: out });
    unlinkSync(filler);
    expect(r.code).toBe(1);
    expect(readFileSync(seqfile, 'latin1')).toBe('5\n');
    const leaked = readFileSync(out);
    let complete = false;
    try {
      complete = decodeHeader(leaked).length > 0 && leaked.subarray(decodeHeader(leaked).length).toString() === 'two\n';
    } catch {
      complete = false;
    }
    expect(complete, `stdout got a complete packet (${leaked.length} bytes) with seq 5 although 5 was not consumed`).toBe(false);
  });

  it('queue-process on a file system that fills during a job: that job is recorded once, the next is not started until there is room', () => {
    // Room for the queue, the state database and its WAL as a run that filled the disk left
    // them (~125 KiB, its WAL ~80 of it), and the 128 KiB a job needs free once the filler is gone.
    const fs = tinyFs('320k');
    const q = makeQueue(fs);
    const seqfile = join(tempDir('fspool-procfull-'), 'seq');
    for (const p of ['one', 'two']) put(q, run(['prepare', '-s', seqfile, '-i', '-'], { input: `${p}\n` }).stdout);
    const jobs = allInJobs(q);
    expect(jobs).toHaveLength(2);
    const log = join(tempDir('fspool-proclog-'), 'ran.log');
    // The receiver reads its payload, records it, then fills the queue's filesystem.
    const filling = `printf '%s %s\\n' "$FSPL_SEQ" "$(cat)" >> ${log}; head -c 1048576 /dev/zero > ${fs}/filler 2>/dev/null; exit 0`;
    const r = run(['queue-process', '-q', q, '--', 'sh', '-c', filling]);
    expect(readFileSync(log, 'utf8')).toBe('1 one\n');
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.split('\n').filter((l) => l.trim().length > 0);
    expect(lines.filter((l) => l.startsWith('Error: '))).toHaveLength(1);
    expect(lines[lines.length - 1]).toMatch(/^Error: no space left on device: .* free on the file system of .*; free some space; job 2 was not run/i);
    expect(r.stderr).not.toMatch(/^\s+at |node:internal|FATAL/m);
    // Job 1's next seq was written before it ran: its completion needed no space.
    expect(nextseqText(q)).toBe('2\n');
    expect(existsSync(join(q, 'nextseq.temp'))).toBe(false);
    expect(allInJobs(q)).toHaveLength(1);

    // Room again: job 2 runs, and job 1 never runs again.
    unlinkSync(join(fs, 'filler'));
    const again = run(['queue-process', '-q', q, '--', 'sh', '-c', `printf '%s %s\\n' "$FSPL_SEQ" "$(cat)" >> ${log}`]);
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(log, 'utf8')).toBe('1 one\n2 two\n');
    expect(nextseqText(q)).toBe('3\n');
    expect(allInJobs(q)).toEqual([]);
  });

  it('--delivery verified with no room to decode into: this machine\'s trouble, not the packet\'s; the job stays (not deleted by --on-error delete), and runs once there is room', () => {
    const fs = tinyFs('2m');
    const q = makeQueue(fs);
    const payload = randomBytes(1_400_000);
    put(q, run(['prepare', '-s', '-', '-i', '-', '--zstd'], { input: payload }).stdout);
    const [job] = allInJobs(q);
    const out = join(tempDir('fspool-verified-full-'), 'out');
    const receiver = ['sh', '--', '-c', `cat > ${out}`];
    const r = run(['queue-process', '-q', q, '--delivery', 'verified', '--on-error', 'delete', ...receiver]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^Error: job 1 \(.*\): cannot decode into .*\/fspool\/tmp: .*\(ENOSPC\); the command was not started; free space there, and run it again$/m);
    expect(r.stderr).not.toMatch(/ERROR|failed/);
    expect(existsSync(out)).toBe(false);
    expect(allInJobs(q)).toEqual([job]);
    expect(nextseqText(q)).toBe('1\n');
    // Room again: it runs, whole, once.
    expect(spawnSync('mount', ['-o', 'remount,size=8m', fs]).status).toBe(0);
    const again = run(['queue-process', '-q', q, '--delivery', 'verified', '--on-error', 'delete', ...receiver]);
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(out).equals(payload)).toBe(true);
    expect(nextseqText(q)).toBe('2\n');
    expect(allInJobs(q)).toEqual([]);
  });

  it('--delivery verified --require-signature: a forgery that fills the disk as it is decoded is refused, not kept due; the genuine packet then runs', () => {
    const fs = tinyFs('2m');
    const q = makeQueue(fs);
    const keys = tempDir('fspool-forged-keys-');
    const sender = makeKey('sender', keys);
    const forger = makeKey('forger', keys);
    const seq = join(tempDir('fspool-forged-seq-'), 'seq');
    writeFileSync(seq, '1\n');
    put(q, run(['prepare', '-s', seq, '-i', '-', '--zstd', '--sign-with', forger.sec], { input: randomBytes(1_400_000) }).stdout);
    const receiver = ['sh', '--', '-c', 'cat > /dev/null'];
    const opts = ['--delivery', 'verified', '--require-signature', sender.pub];
    const r = run(['queue-process', '-q', q, ...opts, ...receiver]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/claims seq 1 but fails --require-signature/);
    expect(r.stderr).not.toMatch(/ENOSPC|^Error/m);
    writeFileSync(seq, '1\n');
    put(q, run(['prepare', '-s', seq, '-i', '-', '--zstd', '--sign-with', sender.sec], { input: 'genuine' }).stdout);
    const again = run(['queue-process', '-q', q, ...opts, ...receiver]);
    expect(again.code, again.stderr).toBe(0);
    expect(nextseqText(q)).toBe('2\n');
  });

  it('a watch whose journal a full disk broke takes it up again once there is room: the next job is journaled, the lost attempt closed', async () => {
    const fs = tinyFs();
    const q = makeQueue(fs);
    const seqfile = join(tempDir('fspool-watchfull-'), 'seq');
    put(q, run(['prepare', '-s', seqfile, '-i', '-'], { input: 'one\n' }).stdout);
    const log = join(tempDir('fspool-watchlog-'), 'ran.log');
    // Job 1 fills the queue's file system once it has its payload: its outcome cannot be journaled.
    const receiver = `printf '%s %s\\n' "$FSPL_SEQ" "$(cat)" >> ${log}; [ "$FSPL_SEQ" = 1 ] && head -c 1048576 /dev/zero > ${fs}/filler 2>/dev/null; exit 0`;
    const watch = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '0.2', '--', 'sh', '-c', receiver]);
    try {
      await waitFor('job 1 to be done', () => nextseqText(q) === '2\n', 20_000);
      unlinkSync(join(fs, 'filler'));
      put(q, run(['prepare', '-s', seqfile, '-i', '-'], { input: 'two\n' }).stdout);
      await waitFor('job 2 to be done', () => nextseqText(q) === '3\n', 20_000);
    } finally {
      process.kill(watch.pid, 'SIGTERM');
    }
    const r = await watch.done;
    expect(r.code, r.stderr).toBe(143);
    expect(readFileSync(log, 'utf8')).toBe('1 one\n2 two\n');
    expect(r.stderr).toMatch(/WARN fspool: state database .* going on without it/);
    expect(r.stderr).toMatch(/INFO fspool: state database .* can be used again: journal and header cache resumed/);
    expect(r.stderr).toMatch(/INFO fspool: job 1 .* ended while the journal was unavailable; the queue has moved past it/);
    const h = run(['queue-history', '-q', q, '--json']);
    expect(h.code, h.stderr).toBe(0);
    const runs = (JSON.parse(h.stdout.toString()) as { runs: Array<{ seq: number; outcome: string }> }).runs;
    expect(runs.map((x) => [x.seq, x.outcome])).toEqual([
      [2, 'success'],
      [1, 'unrecorded'],
    ]);
  });

  it('queue-status after a run whose outcome a full disk kept out of the journal: not "runs again", since nextseq moved past it', () => {
    const fs = tinyFs();
    const q = makeQueue(fs);
    put(q, run(['prepare', '-s', '-', '-i', '-'], { input: 'one\n' }).stdout);
    const r = run(['queue-process', '-q', q, '--', 'sh', '-c', `cat >/dev/null; head -c 1048576 /dev/zero > ${fs}/filler 2>/dev/null; exit 0`]);
    expect(r.code, r.stderr).toBe(0);
    unlinkSync(join(fs, 'filler'));
    const s = fspool(['queue-status', '-q', q]).stdout.toString();
    expect(s).toMatch(/^interrupted: +seq 1, attempt 1 started .* whose outcome went unrecorded; nextseq has moved past it$/m);
    expect(s).not.toMatch(/runs again/);
  });

  it('queue-status (and serve --check) on a full file system says failing, with the fix, where queue-process refuses; healthy again once there is room', () => {
    const q = makeQueue(tinyFs());
    put(q, run(['prepare', '-s', '-', '-i', '-'], { input: 'due\n' }).stdout);
    const healthy = run(['queue-status', '-q', q]);
    expect(healthy.code, healthy.stderr).toBe(0);
    const filler = fill(q);
    const room = new RegExp(`no space left on device: \\d+ KiB free on the file system of ${q}, and recording a job needs 128 KiB: no job runs until there is room; free some space`);
    const s = run(['queue-status', '-q', q, '--json']);
    expect(s.code, s.stderr).toBe(4);
    const doc = JSON.parse(s.stdout.toString()) as { state: string; reasons: string[] };
    expect(doc.state).toBe('failing');
    expect(doc.reasons).toHaveLength(1);
    expect(doc.reasons[0]).toMatch(room);
    const nagios = run(['queue-status', '-q', q, '--nagios']);
    expect(nagios.code, nagios.stderr).toBe(2);
    expect(nagios.stdout.toString().split('\n')[0]).toMatch(/^FSPOOL CRITICAL - .*no space left on device/);
    // What status foretold: the processor refuses, and the job stays.
    const p = run(['queue-process', '-q', q, 'cat']);
    expect(p.code).toBe(1);
    expect(p.stderr).toMatch(/no space left on device: .*; free some space; job 1 was not run/);
    expect(allInJobs(q)).toHaveLength(1);
    unlinkSync(filler);
    const again = run(['queue-status', '-q', q]);
    expect(again.code, again.stdout.toString()).toBe(0);
    // serve --check, which vouches for its queues before a reload, sees it too.
    const config = join(tempDir(), 'serve.toml');
    writeFileSync(config, `[queues.small]\ndir = ${JSON.stringify(q)}\ncommand = ["cat"]\n`);
    expect(run(['serve', '--check', '--config', config]).code).toBe(0);
    const refill = fill(q);
    const check = run(['serve', '--check', '--config', config]);
    expect(check.code, check.stderr).toBe(1);
    expect(check.stderr).toMatch(new RegExp(`\\[small\\] no space left on device: .*; free some space; no job of queue ${q} runs until there is`));
    unlinkSync(refill);
    // An append-only queue runs no job: its full disk is not its processor's failure.
    const fs = tinyFs();
    const store = join(fs, 'store');
    expect(fspool(['queue-init', '--append-only', '-q', store]).code).toBe(0);
    fill(fs);
    const appendOnly = run(['queue-status', '-q', store]);
    expect(appendOnly.code, appendOnly.stdout.toString()).toBe(0);
  });

  it('queue-status on a file system remounted read-only says failing, with the fix, for any user; healthy again once writable', () => {
    const fs = tinyFs();
    chmodSync(dirname(fs), 0o755); // for the monitoring account below
    const q = makeQueue(fs);
    put(q, run(['prepare', '-s', '-', '-i', '-'], { input: 'due\n' }).stdout);
    expect(spawnSync('mount', ['-o', 'remount,ro', fs]).status).toBe(0);
    try {
      const readOnly = `the file system of ${q} is mounted read-only: no job runs until it is writable; remount it read-write`;
      const s = run(['queue-status', '-q', q, '--json']);
      expect(s.code, s.stderr).toBe(4);
      expect(JSON.parse(s.stdout.toString())).toMatchObject({ state: 'failing', reasons: [readOnly] });
      // A monitoring account, which may not write the queue anyway, is told the same.
      const nobody = asNobody(['queue-status', '-q', q, '--nagios']);
      expect(nobody.code, nobody.stderr).toBe(2);
      expect(nobody.stdout.toString()).toContain(readOnly);
      // What status foretold: the processor cannot run it.
      expect(run(['queue-process', '-q', q, 'cat']).code).toBe(1);
      expect(allInJobs(q)).toHaveLength(1);
    } finally {
      expect(spawnSync('mount', ['-o', 'remount,rw', fs]).status).toBe(0);
    }
    const again = run(['queue-status', '-q', q]);
    expect(again.code, again.stdout.toString()).toBe(0);
  });

  it('the error names what could not be written (nextseq, the seqfile, the queue)', () => {
    // spec/exit-codes.md: "Messages name the file, the seq and what to do". A bare
    // "write: no space left on device" does not say that job 1 ran and will run again.
    const fs = tinyFs();
    const q = makeQueue(fs);
    const seq = join(tempDir('fspool-names-'), 'seq');
    for (const p of ['one', 'two']) put(q, run(['prepare', '-s', seq, '-i', '-'], { input: `${p}\n` }).stdout);
    const proc = run(['queue-process', '-q', q, '--', 'sh', '-c', `cat >/dev/null; head -c 1048576 /dev/zero > ${fs}/filler 2>/dev/null; exit 0`]);
    expect(proc.code).toBe(1);
    expect.soft(proc.stderr.trim().split('\n').pop(), 'queue-process names the queue and the job it did not run').toMatch(new RegExp(`file system of ${q}.*job 2 was not run`));

    const seqfile = join(fs, 'seq');
    // The fs is full now: the seqfile cannot even be created.
    const prep = run(['prepare', '-s', seqfile, '-i', '-'], { input: 'x\n', stdoutFile: '/dev/null' });
    expect(prep.code).toBe(1);
    expect.soft(prep.stderr, 'prepare names the seqfile').toContain(seqfile);

    const qw = run(['queue-write', '-q', q], { input: run(['prepare', '-s', '-', '-i', '-'], { input: 'x\n' }).stdout });
    expect(qw.code).toBe(1);
    expect.soft(qw.stderr, 'queue-write names the queue').toContain(q);
  });
});
