// The decode worker (src/codec/decodeWorker.ts, spec/encoding.md "Decoding threads"): packets
// fspool decodes itself are decoded off the main thread, which decides the receiver's EOF. What
// is special to it: it writes the receiver's pipe through a descriptor of its own, with
// blocking writes, so it must never be left waiting on a pipe nobody reads; it reads stdin when
// that is a pipe; a scan reads only a packet's start. End to end, with real processes; the
// byte paths and the EOF rule for every layer are also in test/encoding.test.ts.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DecodeWorkers } from '../src/codec/decodeThread.js';
import { filler } from './helpers/bytes.js';
import { FSPOOL, fspool, makeQueue, preparePacket, runAsync, tempDir } from './helpers/cli.js';
import { alive, put, waitFor, within } from './helpers/queue.js';

const DIR = tempDir('fspool-worker-');
const PUB = join(DIR, 'recv.pub');
const SEC = join(DIR, 'recv.sec');
const ENV = { ...process.env, FSPOOL_KEYS: join(DIR, 'nokeys'), TZ: 'UTC' };
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** 48 MiB: far more than a pipe holds, so the worker's writes block while nothing reads. */
const BIG = filler(48 << 20, 7);
let bigPacket: Buffer;

beforeAll(async () => {
  const k = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'recv@example.org' }], format: 'armored' });
  writeFileSync(PUB, k.publicKey);
  writeFileSync(SEC, k.privateKey);
  writeFileSync(join(DIR, 'big'), BIG);
  bigPacket = preparePacket(['-s', '-', '-i', join(DIR, 'big'), '--zstd', `--encrypt-to=${PUB}`], undefined, ENV);
}, 120_000);

/** Pids to kill after each test, whatever happened (processes a test left behind on purpose). */
const strays: number[] = [];
afterEach(() => {
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

describe('the decode worker', () => {
  it('delivers an encrypted payload byte-exact to a receiver, from a file and from stdin as a pipe; and to stdout', () => {
    const q = makeQueue(tempDir());
    put(q, bigPacket);
    const out = join(DIR, 'got');
    const r = fspool(['queue-process', '-q', q, `--decrypt-key=${SEC}`, 'sh', '--', '-c', 'cat > "$0"', out], { env: ENV });
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(BIG));
    // stdin a pipe (not a socket: the shell's), read by the worker through /proc.
    writeFileSync(join(DIR, 'packet'), bigPacket);
    const viaPipe = spawnSync('sh', ['-c', 'cat "$1" | "$0" stdin-process --decrypt-key="$2" sh -- -c "cat > \\"$3\\""', FSPOOL, join(DIR, 'packet'), SEC, out], { env: ENV });
    expect(viaPipe.status, viaPipe.stderr.toString()).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(BIG));
    // stdout shared as it is (a pipe here).
    const payload = spawnSync('sh', ['-c', '"$0" stdin-payload --decrypt-key="$1" < "$2" | cat > "$3"', FSPOOL, SEC, join(DIR, 'packet'), out], { env: ENV });
    expect(payload.status, payload.stderr.toString()).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(BIG));
  });

  it('a receiver that exits 0 at once, leaving stdin open in a process of another session that never reads it: the job ends, fspool does not wait for that process', async () => {
    const q = makeQueue(tempDir());
    put(q, bigPacket);
    const pidFile = join(DIR, 'stray.pid');
    // `setsid -f`: the stray is outside the receiver's group, so the kill of its group misses
    // it; it holds the pipe's read end (its stdin) and never reads. The worker is then blocked
    // writing. (Its stdout and stderr go elsewhere: this test waits for fspool's to close.) The
    // receiver exits once the stray has written its pid, that is, once it is in its own session:
    // before that it is still in the receiver's group, which fspool kills when the receiver exits.
    const run = runAsync(
      FSPOOL,
      ['queue-process', '-q', q, `--decrypt-key=${SEC}`, 'sh', '--', '-c', 'setsid -f sh -c \'echo $$ > "$0"; exec sleep 120\' "$0" >/dev/null 2>&1; while [ ! -s "$0" ]; do sleep 0.01; done; exit 0', pidFile],
      { env: ENV },
    );
    await waitFor('the stray to start', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 60_000);
    const stray = Number(readFileSync(pidFile, 'utf8').trim());
    strays.push(stray);
    const r = await within(run.done, 60_000, 'fspool with a stray holding the pipe');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/before reading all of its input/);
    // It ended while the stray still held the pipe: fspool did not wait for it.
    expect(alive(stray)).toBe(true);
    expect(readdirSync(join(q, 'jobs'))).toEqual([]);
  }, 90_000);

  it('SIGINT while a large encrypted payload streams: the worker stops, the job stays, exit 130', async () => {
    const q = makeQueue(tempDir());
    put(q, bigPacket);
    const started = join(DIR, 'started');
    // A receiver that reads slowly: the worker is mid-payload when the signal comes. Not a shell
    // loop of head and sleep: dash, under -c, catches SIGINT and loses one that comes while it
    // starts a command (its vfork), and then reads on; a receiver that ignores the forwarded
    // signal is waited for (spec/processing.md: a second signal kills it).
    const reader = 'import signal, sys, time\nsignal.signal(signal.SIGINT, signal.SIG_DFL)\nopen(sys.argv[1], "w").close()\nwhile sys.stdin.buffer.read(65536): time.sleep(0.05)';
    const run = runAsync(FSPOOL, ['queue-process', '-l', 'debug', '-q', q, `--decrypt-key=${SEC}`, 'python3', '--', '-c', reader, started], { env: ENV });
    await waitFor('the receiver to start', () => existsSync(started), 60_000);
    process.kill(run.pid, 'SIGINT');
    // A hang here must be explainable from the failure alone: what fspool said (debug), and
    // which processes still ran and where they waited.
    let still = '';
    const look = setTimeout(() => (still = spawnSync('ps', ['-eo', 'pid,ppid,pgid,stat,wchan:24,etimes,args']).stdout.toString()), 50_000);
    const r = await within(run.done, 60_000, 'fspool after SIGINT').catch(async (e: Error) => {
      process.kill(run.pid, 'SIGKILL');
      throw new Error(`${e.message}\nfspool said:\n${(await run.done).stderr}\nprocesses 50 s after the SIGINT:\n${still}`);
    });
    clearTimeout(look);
    expect(r.code, r.stderr).toBe(130);
    expect(readdirSync(join(q, 'jobs'))).toHaveLength(1);
    expect(readFileSync(join(q, 'nextseq'), 'utf8').trim()).toBe('1');
  }, 90_000);

  it('an open that a stop has already come for (a scan reading on after SIGTERM) is refused at once, not with an error of its own', async () => {
    const dir = tempDir();
    const file = join(dir, 'p.fspl');
    writeFileSync(file, preparePacket(['-s', '-', '-i', '-', `--encrypt-to=${PUB}`], 'x', ENV));
    const fd = openSync(file, 'r');
    try {
      const stopped = (h: { kill(signal: NodeJS.Signals): void }) => {
        h.kill('SIGKILL');
        return () => {};
      };
      await expect(new DecodeWorkers().open(fd, 0, {}, stopped, 300)).rejects.toThrow(/^decoding was stopped$/);
    } finally {
      closeSync(fd);
    }
  });

  it('the headers of several encrypted packets read at once (a scan does): each is answered, and the jobs run in order', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    for (let i = 0; i < 6; i++) put(q, preparePacket(['-s', seq, '-i', '-', `--encrypt-to=${PUB}`], `job ${i + 1}\n`, ENV));
    const ls = fspool(['queue-ls', '-q', q, `--decrypt-key=${SEC}`], { env: ENV, timeoutMs: 120_000 });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.toString().trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['1', '2', '3', '4', '5', '6']);
    const out = join(dir, 'out');
    const r = fspool(['queue-process', '-q', q, `--decrypt-key=${SEC}`, 'sh', '--', '-c', 'cat >> "$0"', out], { env: ENV, timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe([1, 2, 3, 4, 5, 6].map((i) => `job ${i}\n`).join(''));
  });

  it('a scan (queue-ls) of a large encrypted packet reads only its start', () => {
    const q = makeQueue(tempDir());
    put(q, bigPacket);
    // The bytes the process read, from /proc/PID/io, taken while it is a zombie (not yet reaped).
    const py = String.raw`
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
io = dict(l.split(': ') for l in open('/proc/%d/io' % p.pid).read().split('\n') if l)
code = p.wait()
print(code, io['rchar'])
`;
    const r = spawnSync('python3', ['-c', py, FSPOOL, 'queue-ls', '-q', q, `--decrypt-key=${SEC}`], { env: ENV });
    const [code, rchar] = r.stdout.toString().trim().split(' ').map(Number);
    expect(code, r.stderr.toString()).toBe(0);
    expect(bigPacket.length).toBeGreaterThan(40 << 20);
    // The program, its modules and the state database are read too: a few MB, not the packet.
    expect(rchar).toBeLessThan(16 << 20);
  });
});
