// "Cannot hang, leak, or lose data": timeouts, early-exiting receivers, failing decoders, a
// 1 GiB payload, what a receiver inherits, signals, concurrent writers and processors, and
// sender-side durability. Real processes, real pipes, real files; no mocks.
//
// Zombies: pid 1 in this environment does not always reap orphans at once, so a killed
// grandchild can linger as a zombie, for which kill(pid, 0) still succeeds. `alive()` reads
// /proc/PID/stat and counts a zombie as gone: it holds no fds, no locks, and runs no code.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { FSPOOL, fspl, fspool, makeQueue, plainPacket, preparePacket, type Result, runAsync, type RunOpts, runSync, tempDir } from './helpers/cli.js';
import { alive, allInJobs, groupAlive, fileLines, jobFiles, LONG, nextseq, processesWith, put, sleep, waitFor, within } from './helpers/queue.js';

/** The real interpreter, not the pyenv shim (a bash script that would add startup time). */
const PY = execFileSync('python3', ['-c', 'import sys; print(sys.executable)']).toString().trim();

const O_NONBLOCK = 0o4000;
const SIGPIPE_BIT = 1n << 12n; // signal 13 is bit 12 of the SigIgn/SigBlk masks

// ---------------------------------------------------------------------------------------------
// Helpers

/** `sh -c SCRIPT ARGS...`: the first arg is $0. */
const sh = (script: string, args: string[] = [], opts: RunOpts = {}) => runSync('sh', ['-c', script, ...args], opts);

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** The pid a child writes (with a newline) into `file` once it has started. */
async function pidFrom(file: string, what: string): Promise<number> {
  await waitFor(what, () => existsSync(file) && readFileSync(file, 'utf8').endsWith('\n'), 10_000);
  return Number(readFileSync(file, 'utf8').trim());
}

// Everything started in the background is killed after each test, whatever happened.
const toKill: number[] = [];
const pidFiles: string[] = [];
function killQuietly(pid: number, sig: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}
afterEach(() => {
  for (const f of pidFiles.splice(0)) {
    let pid = 0;
    try {
      pid = Number(readFileSync(f, 'utf8').trim());
    } catch {
      continue;
    }
    if (pid > 1) {
      killQuietly(-pid);
      killQuietly(pid);
    }
  }
  for (const pid of toKill.splice(0)) killQuietly(pid);
});

function bg(file: string, args: string[], opts: RunOpts = {}): { pid: number; done: Promise<Result> } {
  const r = runAsync(file, args, opts);
  toKill.push(r.pid);
  return r;
}

/** Deterministic pseudo-random bytes (xorshift32), `size` a multiple of 4. */
function pseudoRandom(size: number, seed = 0x9e3779b9): Buffer {
  const u = new Uint32Array(size / 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < u.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u[i] = x;
  }
  return Buffer.from(u.buffer);
}

/** Write `size` pseudo-random bytes to `path` in 8 MiB blocks; returns their SHA-256. */
function writePseudoRandomFile(path: string, size: number, seed = 12345): string {
  const CH = 8 << 20;
  const u = new Uint32Array(CH / 4);
  const b = Buffer.from(u.buffer);
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  let x = seed;
  try {
    for (let off = 0; off < size; off += CH) {
      for (let i = 0; i < u.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        u[i] = x;
      }
      const n = Math.min(CH, size - off);
      hash.update(b.subarray(0, n));
      let w = 0;
      while (w < n) w += writeSync(fd, b, w, n - w);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** `n` command packets with consecutive seqs from `seqfile`, made by fspl (fast to start). */
function fsplPackets(n: number, seqfile: string): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const r = fspl(['prepare', '-s', seqfile]);
    if (r.code !== 0) throw new Error(`fspl prepare failed: ${r.stderr}`);
    out.push(r.stdout);
  }
  return out;
}

/** A receiver script that appends "SEQ WHO" to LOG under flock of LOG.lock (no interleaving). */
function recvScript(dir: string): string {
  const p = join(dir, 'recv.sh');
  writeFileSync(
    p,
    ['exec 9>>"$1.lock"', 'flock 9', 'echo "$FSPL_SEQ ${2:-x}" >> "$1"', 'flock -u 9', 'if [ -n "${3:-}" ]; then sleep "$3"; fi', ''].join('\n'),
  );
  return p;
}

const seqsIn = (log: string) => fileLines(log).map((l) => Number(l.split(' ')[0]));

// ---------------------------------------------------------------------------------------------

describe('timeouts', () => {
  it('--timeout 1 --grace 1: exits 1 within seconds, keeps the job, and leaves no process of the group alive', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plainPacket(1));
    const pidfile = join(dir, 'pidfile');
    pidFiles.push(pidfile);
    // Everything in the group ignores SIGTERM, the grandchild included: only a SIGKILL to the
    // whole group after the grace period ends it.
    const script = 'trap "" TERM; sleep 300 & echo $! > "$0"; sleep 200';
    const t0 = Date.now();
    const r = fspool(['queue-process', '-q', q, '--timeout', '1', '--grace', '1', 'sh', '--', '-c', script, pidfile], { timeoutMs: 30_000 });
    const elapsed = Date.now() - t0;
    expect(r.code, r.stderr).toBe(1);
    expect(elapsed).toBeLessThan(12_000); // not the 200 s the group would sleep
    expect(elapsed).toBeGreaterThanOrEqual(1900); // the grace period was given
    expect(r.stderr).toMatch(/timed out/);
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
    const grandchild = Number(readFileSync(pidfile, 'utf8').trim());
    expect(grandchild).toBeGreaterThan(1);
    await waitFor(`grandchild ${grandchild} to be gone`, () => !alive(grandchild), 2000);
  }, 30_000);

  it('a receiver that exits on SIGTERM runs its TERM trap and is not SIGKILLed; no waiting out the grace period', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plainPacket(1));
    const marker = join(dir, 'marker');
    const started = join(dir, 'started');
    pidFiles.push(started);
    // The trap takes a moment (a fresh sleep, not in the group when SIGTERM was sent).
    const script = 'echo $$ > "$1"; trap "sleep 0.3; echo term > \\"$0\\"; exit 7" TERM; sleep 200';
    const t0 = Date.now();
    const r = fspool(['queue-process', '-q', q, '--timeout', '1', '--grace', '20', 'sh', '--', '-c', script, marker, started], { timeoutMs: 30_000 });
    const elapsed = Date.now() - t0;
    expect(r.code, r.stderr).toBe(1);
    expect(readFileSync(marker, 'utf8')).toBe('term\n');
    expect(r.stderr).toMatch(/timed out; command exited with status 7/);
    expect(r.stderr).not.toMatch(/SIGKILL/);
    expect(elapsed).toBeLessThan(8000); // not the 20 s grace
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
  }, 30_000);
});

describe('stalled decoders: --timeout and signals still end the run, and no decoder survives', () => {
  const packet = () => plainPacket(1, pseudoRandom(1 << 20));

  const stalls: Array<[string, string]> = [
    ['writes part of the packet then stalls with stdout open', 'head -c 300000; sleep 300'],
    ['writes the whole packet, closes stdout, and lingers', 'cat; exec >&-; sleep 300'],
  ];
  for (const [what, script] of stalls) {
    it(`decoder that ${what}: --timeout still ends the job`, async () => {
      const d = tempDir();
      const q = makeQueue(d);
      put(q, packet());
      const dpid = join(d, 'decoder.pid');
      pidFiles.push(dpid);
      const marker = join(d, 'marker');
      const run = bg(FSPOOL, ['queue-process', '-q', q, '--timeout', '1', '--grace', '1', '-d', `echo $$ > ${dpid}; ${script}`, 'sh', '--', '-c', 'cat >/dev/null; echo clean-eof > "$0"', marker]);
      const r = await within(run.done, 15_000, 'fspool with --timeout 1');
      expect(r.code, r.stderr).toBe(1);
      expect(existsSync(marker)).toBe(false);
      expect(jobFiles(q)).toHaveLength(1);
      expect(nextseq(q)).toBe('1');
      const pid = Number(readFileSync(dpid, 'utf8').trim());
      await waitFor(`decoder ${pid} to be gone`, () => !alive(pid), 2000);
    }, 30_000);
  }

  it('decoder that never produces a header: SIGTERM still ends queue-process (143), decoder gone', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, packet());
    const dpid = join(d, 'decoder.pid');
    pidFiles.push(dpid);
    const run = bg(FSPOOL, ['queue-process', '-q', q, '-d', `echo $$ > ${dpid}; exec sleep 300`, 'cat']);
    await waitFor('the decoder to start', () => existsSync(dpid) && readFileSync(dpid, 'utf8').endsWith('\n'), 10_000);
    await sleep(200);
    process.kill(run.pid, 'SIGTERM');
    const r = await within(run.done, 5_000, 'fspool after SIGTERM');
    expect(r.code, r.stderr).toBe(143);
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
    const pid = Number(readFileSync(dpid, 'utf8').trim());
    await waitFor(`decoder ${pid} to be gone`, () => !alive(pid), 2000);
  }, 30_000);

  it('queue-ls -d with a stalled decoder, stopped by SIGTERM: no decoder survives', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, packet());
    const dpid = join(d, 'decoder.pid');
    pidFiles.push(dpid);
    // Waiting for exit, not for stdio to close: a surviving decoder holds fspool's stderr.
    const child = spawn(FSPOOL, ['queue-ls', '-q', q, '-d', `echo $$ > ${dpid}; exec sleep 300`], { stdio: 'ignore' });
    toKill.push(child.pid!);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await waitFor('the decoder to start', () => existsSync(dpid) && readFileSync(dpid, 'utf8').endsWith('\n'), 10_000);
    await sleep(200);
    child.kill('SIGTERM');
    await within(exited, 5_000, 'queue-ls after SIGTERM');
    const pid = Number(readFileSync(dpid, 'utf8').trim());
    await waitFor(`decoder ${pid} to be gone`, () => !alive(pid), 2000);
  }, 30_000);
});

describe('receivers that exit early', () => {
  it('zero-copy path: exit 0 without reading the 1 MB payload is a success, with a line (INFO: the receiver gave its verdict) about unread bytes', () => {
    const q = makeQueue();
    put(q, plainPacket(1, pseudoRandom(1 << 20)));
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'head -c 10 >/dev/null'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/INFO.*unread/);
    expect(jobFiles(q)).toEqual([]);
    expect(nextseq(q)).toBe('2');
  });

  it('zero-copy path: exit 3 without reading is a failure; the job is kept', () => {
    const q = makeQueue();
    put(q, plainPacket(1, pseudoRandom(1 << 20)));
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'head -c 10 >/dev/null; exit 3'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/status 3/);
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
  });

  describe('pipe path (-d gzip -dc, 20 MB payload)', () => {
    const gzPacket = () => gzipSync(plainPacket(1, Buffer.alloc(20 << 20, 'fspool ')));

    it('exit 0 early: success, an INFO line, no hang, no decoder left running', () => {
      const q = makeQueue();
      put(q, gzPacket());
      const tag = `fspool-dec-${randomUUID()}`;
      const t0 = Date.now();
      const r = fspool(['queue-process', '-q', q, '-d', `gzip -dc; : ${tag}`, 'sh', '--', '-c', 'head -c 10 >/dev/null'], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(r.stderr).toMatch(/INFO.*(unread|before reading all)/);
      expect(jobFiles(q)).toEqual([]);
      expect(nextseq(q)).toBe('2');
      expect(processesWith(tag)).toEqual([]);
    });

    it('exit 3 early: failure, job kept, no hang, no decoder left running', () => {
      const q = makeQueue();
      put(q, gzPacket());
      const tag = `fspool-dec-${randomUUID()}`;
      const r = fspool(['queue-process', '-q', q, '-d', `gzip -dc; : ${tag}`, 'sh', '--', '-c', 'head -c 10 >/dev/null; exit 3'], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/status 3/);
      expect(jobFiles(q)).toHaveLength(1);
      expect(nextseq(q)).toBe('1');
      expect(processesWith(tag)).toEqual([]);
    });
  });
});

describe('a payload that fits in the pipe, left unread by a receiver that exits', () => {
  // The whole payload is written into the receiver's pipe, so no write ever fails: only what is
  // left in the pipe when the receiver exits shows it did not read it all. The receiver reads
  // 10 bytes, waits until the rest is in its pipe (FIONREAD), then exits without reading it.
  const SIZE = 40_000;
  const exitAfterTen = `import fcntl, os, struct, sys, termios, time
got = 0
while got < 10: got += len(os.read(0, 10 - got))
while struct.unpack('i', fcntl.ioctl(0, termios.FIONREAD, b'0000'))[0] < ${SIZE - 10}: time.sleep(0.01)
sys.exit(int(sys.argv[1]))`;
  const cases = [
    { name: 'zstd, decoded by fspool', packet: () => preparePacket(['-s', '-', '-i', '-', '--zstd'], pseudoRandom(SIZE)), args: [] as string[] },
    { name: 'gzip, through -d "gzip -dc"', packet: () => gzipSync(plainPacket(1, pseudoRandom(SIZE))), args: ['-d', 'gzip -dc'] },
  ];
  for (const c of cases) {
    it(`${c.name}: exit 4 is a failure before reading all of its input, the job kept; exit 0 a success that says how much was left`, () => {
      const q = makeQueue();
      put(q, c.packet());
      const failed = fspool(['queue-process', '-q', q, ...c.args, PY, '--', '-c', exitAfterTen, '4'], { timeoutMs: 30_000 });
      expect(failed.code, failed.stderr).toBe(1);
      expect(failed.stderr).toMatch(/exited with status 4 before reading all of its input/);
      expect(jobFiles(q)).toHaveLength(1);
      const history = JSON.parse(fspool(['queue-history', '-q', q, '--json']).stdout.toString()) as { runs: Array<{ outcome: string }> };
      expect(history.runs.map((r) => r.outcome)).toEqual(['early-exit']);
      const done = fspool(['queue-process', '-q', q, ...c.args, PY, '--', '-c', exitAfterTen, '0'], { timeoutMs: 30_000 });
      expect(done.code, done.stderr).toBe(0);
      // Had the receiver's exit been seen before the source's verdict (a zstd checksum, gzip's
      // exit), the note says so without a count: a race the receiver cannot rule out.
      expect(done.stderr).toMatch(new RegExp(`INFO.*(leaving ${SIZE - 10} payload bytes unread|exited 0 before reading all of its input)`));
      expect(jobFiles(q)).toEqual([]);
      expect(nextseq(q)).toBe('2');
    });
  }
});

describe('failing and truncating decoders: the receiver never sees a clean EOF', () => {
  const receiver = 'cat > "$0"; echo clean-eof > "$1"';

  function check(q: string, dir: string, decoder: string, packet: Buffer, minSeen: number) {
    put(q, packet);
    const name = jobFiles(q)[0]!;
    const out = join(dir, 'out');
    const marker = join(dir, 'marker');
    const r = fspool(['queue-process', '-q', q, '-d', decoder, 'sh', '--', '-c', receiver, out, marker], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(existsSync(marker), 'the receiver saw a clean EOF').toBe(false);
    // The receiver did run and take data: the kill-before-EOF path was exercised. (The payload
    // is several times what the pipes and fspool's buffers hold, so the decoder could not have
    // finished writing before the receiver read most of it.)
    expect(statSync(out).size).toBeGreaterThanOrEqual(minSeen);
    expect(r.stderr).toMatch(/decoder/);
    expect(jobFiles(q)).toEqual([name]);
    expect(readFileSync(join(q, 'jobs', name)).equals(packet), 'job file unchanged').toBe(true);
    expect(nextseq(q)).toBe('1');
    return r;
  }

  it('a gzip packet truncated in the middle of its payload', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const gz = gzipSync(plainPacket(1, pseudoRandom(4 << 20)));
    const r = check(q, dir, 'gzip -dc', gz.subarray(0, gz.length >> 1), 1 << 20);
    expect(r.stderr).toMatch(/exited with status 1/);
  });

  it('a decoder that outputs the whole packet, then exits 1', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const r = check(q, dir, 'cat; exit 1', plainPacket(1, pseudoRandom(8 << 20)), 4 << 20);
    expect(r.stderr).toMatch(/exited with status 1/);
  });

  it('a decoder killed by a signal after writing everything', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const r = check(q, dir, 'cat; kill -9 $$', plainPacket(1, pseudoRandom(8 << 20)), 4 << 20);
    expect(r.stderr).toMatch(/SIGKILL/);
  });

  it('queue-payload -d with a failing decoder exits non-zero and says so', () => {
    const q = makeQueue();
    put(q, plainPacket(1, Buffer.from('payload\n')));
    const r = fspool(['queue-payload', '-q', q, '-j', '1', '-d', 'cat; exit 1']);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr).toMatch(/decoder.*exited with status 1/);
  });
});

// 1 GiB in the long mode; 128 MiB by default, many times what a pipe or a read holds.
const BIG = LONG ? 1 << 30 : 128 << 20;

describe(`${BIG >> 20} MiB payload`, () => {
  it('arrives intact into sha256sum, zero-copy (the receiver reads the job file itself)', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const big = join(dir, 'big');
    const out = join(dir, 'out');
    try {
      const digest = writePseudoRandomFile(big, BIG);
      const w = sh('"$0" prepare -s - -i "$1" | "$0" queue-write -q "$2"', [FSPOOL, big, q], { timeoutMs: 60_000 });
      expect(w.code, w.stderr).toBe(0);
      rmSync(big);
      const [name] = jobFiles(q);
      expect(name).toBeDefined();
      const jobPath = realpathSync(join(q, 'jobs', name!));
      const recv = 'readlink /proc/self/fd/0 > "$0.link"; exec sha256sum > "$0"';
      const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', recv, out], { timeoutMs: 90_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(out, 'utf8').split(' ')[0]).toBe(digest);
      expect(readFileSync(`${out}.link`, 'utf8').trim()).toBe(jobPath);
      expect(jobFiles(q)).toEqual([]);
      expect(nextseq(q)).toBe('2');
    } finally {
      rmSync(big, { force: true });
      rmSync(join(q, 'jobs'), { recursive: true, force: true });
    }
  }, 120_000);
});

describe('receiver hygiene, seen from inside the receiver', () => {
  const dir = tempDir();
  const hygPy = join(dir, 'hyg.py');
  writeFileSync(
    hygPy,
    `import os, sys, json, fcntl, hashlib
fds = {}
for name in os.listdir('/proc/self/fd'):
    try:
        fds[name] = os.readlink('/proc/self/fd/' + name)
    except OSError:
        pass  # the fd that listed the directory, closed by now
def fl(fd):
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return -1
h = hashlib.sha256()
n = 0
while True:
    b = os.read(0, 1 << 20)
    if not b:
        break
    n += len(b)
    h.update(b)
x = os.environb.get(b'FSPL_SET_X')
sigblk = [l.split()[1] for l in open('/proc/self/status') if l.startswith('SigBlk:')][0]
json.dump({'fds': fds, 'fl': [fl(0), fl(1), fl(2)], 'pid': os.getpid(), 'pgid': os.getpgrp(), 'sigblk': sigblk,
           'n': n, 'sha': h.hexdigest(), 'x': None if x is None else x.hex()}, open(sys.argv[1], 'w'))
`,
  );
  // Python ignores SIGPIPE itself at startup, so the shell that fspool started (and that then
  // becomes Python) has its SigIgn read first. SigBlk is read by Python: dash blocks every
  // signal while it waits for a child, so the shell's own SigBlk seen from `cat` means nothing.
  const shWrapper = 'cat /proc/$$/status > "$1.status"; exec "$0" "$2" "$1"';

  interface Seen {
    fds: Record<string, string>;
    fl: number[];
    pid: number;
    pgid: number;
    n: number;
    sha: string;
    x: string | null;
    sigblk: string;
    sigIgn: bigint;
    sigBlk: bigint;
  }

  function seen(out: string): Seen {
    const j = JSON.parse(readFileSync(out, 'utf8')) as Omit<Seen, 'sigIgn' | 'sigBlk'>;
    const status = readFileSync(`${out}.status`, 'utf8');
    const sigIgn = BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)/m.exec(status)![1]}`);
    return { ...j, sigIgn, sigBlk: BigInt(`0x${j.sigblk}`) };
  }

  /** fds every child of this test process inherits (a harness may leak some): not fspool's. */
  function baselineExtras(): Record<string, string> {
    const out = join(tempDir(), 'base');
    const r = runSync(PY, [hygPy, out]);
    expect(r.code, r.stderr).toBe(0);
    const { fds } = JSON.parse(readFileSync(out, 'utf8')) as { fds: Record<string, string> };
    delete fds['0'];
    delete fds['1'];
    delete fds['2'];
    return fds;
  }

  function expectClean(s: Seen, stdin: (link: string) => void) {
    const extras = { ...s.fds };
    delete extras['0'];
    delete extras['1'];
    delete extras['2'];
    expect(Object.keys(s.fds)).toEqual(expect.arrayContaining(['0', '1', '2']));
    // No lock fd, no job file, no pipe end of ours: nothing beyond what every child inherits.
    expect(extras).toEqual(baselineExtras());
    for (const f of s.fl) expect(f & O_NONBLOCK, `flags ${f.toString(8)}`).toBe(0);
    stdin(s.fds['0']!);
    expect(s.sigIgn & SIGPIPE_BIT, 'SIGPIPE ignored in the receiver').toBe(0n);
    expect(s.sigBlk, 'signals blocked in the receiver').toBe(0n);
    expect(s.pgid, 'receiver is its own process-group leader').toBe(s.pid);
  }

  const payload = pseudoRandom(300_000, 7);

  it('no decoder: stdin is the job file, blocking, and nothing else of ours is open', () => {
    const q = makeQueue();
    put(q, plainPacket(1, payload));
    const jobPath = realpathSync(join(q, 'jobs', jobFiles(q)[0]!));
    const out = join(tempDir(), 'seen');
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', shWrapper, PY, out, hygPy]);
    expect(r.code, r.stderr).toBe(0);
    const s = seen(out);
    expectClean(s, (link) => expect(link).toBe(jobPath));
    expect(s.n).toBe(payload.length);
    expect(s.sha).toBe(sha256(payload));
  });

  it('-d: stdin is a real pipe (not a socket), blocking, and nothing else of ours is open', () => {
    const q = makeQueue();
    put(q, gzipSync(plainPacket(1, payload)));
    const out = join(tempDir(), 'seen');
    const r = fspool(['queue-process', '-q', q, '-d', 'gzip -dc', 'sh', '--', '-c', shWrapper, PY, out, hygPy]);
    expect(r.code, r.stderr).toBe(0);
    const s = seen(out);
    expectClean(s, (link) => expect(link).toMatch(/^pipe:\[\d+\]$/));
    expect(s.n).toBe(payload.length);
    expect(s.sha).toBe(sha256(payload));
  });

  it('--ignore-payload: stdin is /dev/null, and nothing else of ours is open', () => {
    const q = makeQueue();
    put(q, plainPacket(1, payload));
    const out = join(tempDir(), 'seen');
    const r = fspool(['queue-process', '-q', q, '--ignore-payload', 'sh', '--', '-c', shWrapper, PY, out, hygPy]);
    expect(r.code, r.stderr).toBe(0);
    const s = seen(out);
    expectClean(s, (link) => expect(link).toBe('/dev/null'));
    expect(s.n).toBe(0);
  });

  it('-d --ignore-payload: stdin is /dev/null, the decoder is not left running', () => {
    const q = makeQueue();
    put(q, gzipSync(plainPacket(1, Buffer.alloc(20 << 20, 'z'))));
    const out = join(tempDir(), 'seen');
    const tag = `fspool-dec-${randomUUID()}`;
    const r = fspool(['queue-process', '-q', q, '-d', `gzip -dc; : ${tag}`, '--ignore-payload', 'sh', '--', '-c', shWrapper, PY, out, hygPy], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    const s = seen(out);
    expectClean(s, (link) => expect(link).toBe('/dev/null'));
    expect(s.n).toBe(0);
    expect(processesWith(tag)).toEqual([]);
  });

  it('non-UTF-8 job env (started through the exec helper): same hygiene, exact bytes', () => {
    const d = tempDir();
    const q = makeQueue(d);
    const pf = join(d, 'payload');
    writeFileSync(pf, payload);
    const p = sh('FSPL_SET_X=$(printf "a\\377b") exec "$0" prepare -s - -i "$1"', [FSPOOL, pf]);
    expect(p.code, p.stderr).toBe(0);
    put(q, p.stdout);
    const out = join(d, 'seen');
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', shWrapper, PY, out, hygPy]);
    expect(r.code, r.stderr).toBe(0);
    const s = seen(out);
    expect(s.x).toBe('61ff62');
    expectClean(s, (link) => expect(link).toMatch(/\/jobs\/fspl-.*\.fspl$/));
    expect(s.sha).toBe(sha256(payload));
  });

  it('stdin-process from a socket: the receiver gets a pipe of fspool\'s own, blocking, nothing else', () => {
    const out = join(tempDir(), 'seen');
    // spawnSync's stdin 'pipe' is an AF_UNIX socketpair: fspool must not pass it on.
    const r = fspool(['stdin-process', 'sh', '--', '-c', shWrapper, PY, out, hygPy], { input: plainPacket(1, payload) });
    expect(r.code, r.stderr).toBe(0);
    const s = seen(out);
    expectClean(s, (link) => expect(link).toMatch(/^pipe:\[\d+\]$/));
    expect(s.sha).toBe(sha256(payload));
  });

  for (const decoder of [undefined, 'gzip -dc']) {
    it(`a receiver that starts a daemon does not keep the queue locked (${decoder ? '-d' : 'no decoder'})`, async () => {
      const d = tempDir();
      const q = makeQueue(d);
      for (let i = 1; i <= 2; i++) put(q, decoder ? gzipSync(plainPacket(i, payload)) : plainPacket(i, payload));
      const dpid = join(d, 'daemon.pid');
      pidFiles.push(dpid);
      // The receiver exits only once the daemon is in a session of its own (an early exit in
      // the -d path has fspool SIGKILL what is left of the receiver's group, by design).
      const daemon =
        'setsid sh -c \'echo $$ > "$0"; exec sleep 30\' "$0" </dev/null >/dev/null 2>&1 & while [ ! -s "$0" ]; do sleep 0.01; done; exit 0';
      const dec = decoder ? ['-d', decoder] : [];
      const t0 = Date.now();
      const r = fspool(['queue-process', '-q', q, ...dec, '-n', '1', 'sh', '--', '-c', daemon, dpid], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(Date.now() - t0).toBeLessThan(15_000); // not the 30 s the daemon lives
      const pid = Number(readFileSync(dpid, 'utf8').trim());
      expect(alive(pid), 'the daemon runs on').toBe(true);
      const lock = runSync('flock', ['-n', join(q, 'nextseq.lock'), 'true']);
      expect(lock.code, 'nextseq.lock is free').toBe(0);
      const r2 = fspool(['queue-process', '-q', q, ...dec, 'sh', '--', '-c', 'cat >/dev/null']);
      expect(r2.code, r2.stderr).toBe(0);
      expect(nextseq(q)).toBe('3');
      expect(jobFiles(q)).toEqual([]);
    });
  }
});

describe('signals to fspool queue-process', () => {
  for (const [sig, code] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const) {
    // SIGTERM is passed on once --stop-timeout has passed; SIGINT at once.
    it(`${sig}: forwarded to the receiver, exit ${code}, job kept and re-run next time`, async () => {
      const d = tempDir();
      const q = makeQueue(d);
      put(q, plainPacket(1, Buffer.from('data\n')));
      const started = join(d, 'started');
      const marker = join(d, 'marker');
      pidFiles.push(started);
      // The receiver is Python, which runs its handler whenever the signal comes: dash under -c
      // loses a SIGINT that arrives while it starts a command (its `sleep`), and reads on.
      const script = [
        'import os, signal, sys, time',
        'def caught(n, _):',
        '    with open(sys.argv[1], "w") as f: f.write(signal.Signals(n).name[3:] + "\\n")',
        '    sys.exit(0)',
        'signal.signal(signal.SIGINT, caught)',
        'signal.signal(signal.SIGTERM, caught)',
        'with open(sys.argv[2], "w") as f: f.write(f"{os.getpid()}\\n")',
        'time.sleep(30)',
      ].join('\n');
      const run = bg(FSPOOL, ['queue-process', '-q', q, '--stop-timeout', '0.5', 'python3', '--', '-c', script, marker, started]);
      await waitFor('the receiver to start', () => existsSync(started) && readFileSync(started, 'utf8').endsWith('\n'), 10_000);
      process.kill(run.pid, sig);
      const r = await within(run.done, 10_000, 'fspool after the signal');
      expect(r.code, r.stderr).toBe(code);
      expect(readFileSync(marker, 'utf8')).toBe(`${sig.slice(3)}\n`);
      expect(jobFiles(q)).toHaveLength(1);
      expect(nextseq(q)).toBe('1');
      const log = join(d, 'ran');
      const again = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'echo "$FSPL_SEQ $(cat)" >> "$0"', log]);
      expect(again.code, again.stderr).toBe(0);
      expect(readFileSync(log, 'utf8')).toBe('1 data\n');
      expect(nextseq(q)).toBe('2');
      expect(jobFiles(q)).toEqual([]);
    }, 30_000);
  }

  it('a receiver that ignores SIGTERM: fspool waits for it, and a second SIGTERM ends it (SIGKILL to the group)', async () => {
    // The first SIGTERM reaches the receiver after --stop-timeout (0.2 s); the receiver ignores it.
    const d = tempDir();
    const q = makeQueue(d);
    put(q, plainPacket(1));
    const started = join(d, 'started');
    pidFiles.push(started);
    const run = bg(FSPOOL, ['queue-process', '-q', q, '--stop-timeout', '0.2', 'sh', '--', '-c', 'trap "" TERM; echo $$ > "$0"; sleep 300', started]);
    const receiver = await pidFrom(started, 'the receiver to start');
    process.kill(run.pid, 'SIGTERM');
    await sleep(500);
    expect(alive(run.pid), 'fspool waits for the receiver').toBe(true);
    expect(alive(receiver)).toBe(true);
    process.kill(run.pid, 'SIGTERM');
    const r = await within(run.done, 5_000, 'fspool after the second SIGTERM');
    expect(r.code, r.stderr).toBe(143);
    await waitFor('the receiver to be gone', () => !alive(receiver), 2000);
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
  }, 30_000);

  it('a receiver that ignores SIGTERM is killed --grace after the stop timeout: one SIGTERM bounds the stop', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, plainPacket(1));
    const started = join(d, 'started');
    pidFiles.push(started);
    // A child of the receiver's that ignores SIGTERM too: the whole group is killed.
    const script = 'trap "" TERM; sh -c \'trap "" TERM; sleep 300\' & echo $$ > "$0"; sleep 300';
    const run = bg(FSPOOL, ['queue-process', '-q', q, '--stop-timeout', '0.3', '--grace', '0.5', 'sh', '--', '-c', script, started]);
    const receiver = await pidFrom(started, 'the receiver to start');
    process.kill(run.pid, 'SIGTERM');
    const r = await within(run.done, 10_000, 'fspool after one SIGTERM, the stop timeout and the grace period');
    expect(r.code, r.stderr).toBe(143);
    expect(r.stderr).toMatch(/WARN fspool: the running job did not finish within the stop timeout \(0\.3s\): interrupting it \(SIGTERM, SIGKILL after 0\.5s\)/);
    await waitFor('the receiver\'s group to be gone', () => !alive(receiver) && !groupAlive(receiver), 2000);
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
  }, 30_000);

  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${sig}: a receiver that ends on it, leaving a child that ignores it: the child is killed before the job is kept (the next run starts it afresh)`, async () => {
      const d = tempDir();
      const q = makeQueue(d);
      put(q, plainPacket(1));
      const started = join(d, 'started');
      const childPid = join(d, 'child');
      pidFiles.push(started, childPid);
      // The receiver itself dies of the signal at once; its child ignores INT and TERM.
      const script = 'sh -c \'trap "" TERM INT; echo $$ > "$0"; exec sleep 300\' "$1" & echo $$ > "$0"; exec sleep 300';
      const run = bg(FSPOOL, ['queue-process', '-q', q, '--stop-timeout', '0.3', '--grace', '60', 'sh', '--', '-c', script, started, childPid]);
      const receiver = await pidFrom(started, 'the receiver to start');
      const child = await pidFrom(childPid, "the receiver's child to start");
      process.kill(run.pid, sig);
      const r = await within(run.done, 10_000, `fspool after ${sig}`);
      expect(r.code, r.stderr).toBe(code);
      expect(alive(receiver)).toBe(false);
      await waitFor(`the receiver's child ${child} to be gone`, () => !alive(child), 2000);
      expect(jobFiles(q)).toHaveLength(1);
      expect(nextseq(q)).toBe('1');
    }, 30_000);
  }

  it('SIGTERM while a -d job streams: receiver trap runs, exit 143, job kept, decoder gone', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, gzipSync(plainPacket(1, Buffer.alloc(20 << 20, 'y'))));
    const started = join(d, 'started');
    const marker = join(d, 'marker');
    const dpid = join(d, 'decoder.pid');
    pidFiles.push(started, dpid);
    // The receiver reads a little, then sleeps: the decoder is blocked on a full pipe.
    const script = 'trap "echo TERM > \\"$0\\"; exit 0" TERM; head -c 1000 >/dev/null; echo $$ > "$1"; sleep 30';
    const run = bg(FSPOOL, ['queue-process', '-q', q, '--stop-timeout', '0.5', '-d', `echo $$ > ${dpid}; gzip -dc`, 'sh', '--', '-c', script, marker, started]);
    await waitFor('the receiver to start', () => existsSync(started) && readFileSync(started, 'utf8').endsWith('\n'), 10_000);
    const decoder = Number(readFileSync(dpid, 'utf8').trim());
    expect(alive(decoder)).toBe(true);
    process.kill(run.pid, 'SIGTERM');
    const r = await within(run.done, 10_000, 'fspool after SIGTERM');
    expect(r.code, r.stderr).toBe(143);
    expect(readFileSync(marker, 'utf8')).toBe('TERM\n');
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
    await waitFor(`decoder ${decoder} to be gone`, () => !alive(decoder), 2000);
  }, 30_000);
});

describe('concurrency', () => {
  // 3 x 50 packets in the long mode; 3 x 12 are already many overlapping writes and passes.
  const PER_WRITER = LONG ? 50 : 12;
  const TOTAL = 3 * PER_WRITER;

  it(`3 concurrent writers x ${PER_WRITER} packets while queue-process runs: every seq once, in order`, async () => {
    const d = tempDir();
    const q = makeQueue(d);
    const recv = recvScript(d);
    const log = join(d, 'log');
    const pk = join(d, 'packets');
    mkdirSync(pk);
    const packets = fsplPackets(TOTAL, join(d, 'seq'));
    const files = packets.map((p, i) => {
      const f = join(pk, String(i + 1).padStart(3, '0'));
      writeFileSync(f, p);
      return f;
    });
    const stop = join(d, 'writers-done');
    const env = { ...process.env, FSPOOL, Q: q, RECV: recv, LOG: log, STOP: stop };
    // The processor, run again and again while the writers write (a slow receiver: 10 ms a job).
    const proc = bg(
      'sh',
      ['-c', 'while [ ! -e "$STOP" ]; do "$FSPOOL" queue-process -q "$Q" sh -- "$RECV" "$LOG" p 0.01 || echo "queue-process exit $?" >&2; sleep 0.3; done'],
      { env },
    );
    // Writer k writes seqs k+1, k+4, k+7, ...: all three make progress at once.
    const writers = [0, 1, 2].map((k) =>
      bg('sh', ['-c', 'for f in "$@"; do "$FSPOOL" queue-write -q "$Q" < "$f" || exit 1; done', 'w', ...files.filter((_, i) => i % 3 === k)], { env }),
    );
    const results = await within(Promise.all(writers.map((w) => w.done)), 60_000, 'the writers');
    for (const w of results) expect(w.code, w.stderr).toBe(0);
    writeFileSync(stop, '');
    const p = await within(proc.done, 30_000, 'the processor loop');
    expect(p.stderr).not.toMatch(/queue-process exit|ERROR/);
    const final = fspool(['queue-process', '-q', q, 'sh', '--', recv, log, 'final']);
    expect(final.code, final.stderr).toBe(0);
    expect(seqsIn(log)).toEqual(range(1, TOTAL));
    expect(nextseq(q)).toBe(String(TOTAL + 1));
    expect(allInJobs(q)).toEqual([]);
  }, 90_000);

  it('two queue-process at the same moment: one runs every job, the other fails at once on the lock', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    for (const p of fsplPackets(4, join(d, 'seq'))) put(q, p);
    const log = join(d, 'log');
    const args = ['queue-process', '-q', q, 'sh', '--', '-c', 'echo "$FSPL_SEQ $PPID" >> "$0"; sleep 0.6', log];
    const t0 = Date.now();
    const runs = [bg(FSPOOL, args), bg(FSPOOL, args)];
    const ended: number[] = [0, 0];
    const results = await within(
      Promise.all(runs.map((r, i) => r.done.then((x) => ((ended[i] = Date.now() - t0), x)))),
      20_000,
      'both processors',
    );
    const codes = results.map((r) => r.code);
    expect([...codes].sort(), results.map((r) => r.stderr).join('\n')).toEqual([0, 1]);
    const w = codes.indexOf(0);
    const l = 1 - w;
    expect(results[l]!.stderr).toMatch(/lock/i);
    expect(ended[l]!).toBeLessThan(ended[w]!);
    const lines = fileLines(log);
    expect(lines.map((x) => Number(x.split(' ')[0]))).toEqual([1, 2, 3, 4]);
    for (const x of lines) expect(Number(x.split(' ')[1])).toBe(runs[w]!.pid);
    expect(nextseq(q)).toBe('5');
    expect(jobFiles(q)).toEqual([]);
  }, 30_000);

  it('two queue-process -n 2 --wait-lock 10 at the same moment: both succeed, every job once, in order', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    for (const p of fsplPackets(4, join(d, 'seq'))) put(q, p);
    const log = join(d, 'log');
    const args = ['queue-process', '-q', q, '-n', '2', '--wait-lock', '10', 'sh', '--', '-c', 'echo "$FSPL_SEQ $PPID" >> "$0"; sleep 0.3', log];
    const runs = [bg(FSPOOL, args), bg(FSPOOL, args)];
    const results = await within(Promise.all(runs.map((r) => r.done)), 20_000, 'both processors');
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const lines = fileLines(log);
    expect(lines.map((x) => Number(x.split(' ')[0]))).toEqual([1, 2, 3, 4]);
    const by = lines.map((x) => Number(x.split(' ')[1]));
    expect(by[0]).toBe(by[1]);
    expect(by[2]).toBe(by[3]);
    expect(new Set(by)).toEqual(new Set(runs.map((r) => r.pid)));
    expect(nextseq(q)).toBe('5');
    expect(jobFiles(q)).toEqual([]);
  }, 30_000);

  it('fspool and fspl processing one queue at the same time, in rounds: every job once, in order', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    const N = 30;
    for (const p of fsplPackets(N, join(d, 'seq'))) put(q, p);
    const recv = recvScript(d);
    const log = join(d, 'log');
    const env = { ...process.env, FSPOOL, Q: q, RECV: recv, LOG: log, N: String(N) };
    const loop = (tool: string, pause: string, max: number) =>
      `i=0; while [ $i -lt ${max} ] && [ "$(cat "$Q/nextseq")" -le "$N" ]; do ${tool} queue-process -q "$Q" -n 2 sh -- "$RECV" "$LOG" ${tool === 'fspl' ? 'fspl' : 'fspool'} 0.05; sleep ${pause}; i=$((i+1)); done`;
    // fspl starts in ~2 ms, fspool in ~100 (more on a busy machine): until fspool has had a
    // turn, fspl leaves the queue free long enough for fspool to start and take the lock, so
    // that a slow start cannot let fspl take every job (the test is of taking turns safely).
    const fsplPause = `$(if grep -q ' fspool' "$LOG" 2>/dev/null; then echo 0.03; else echo 0.5; fi)`;
    const a = bg('sh', ['-c', loop('"$FSPOOL"', '0.01', 100)], { env });
    const b = bg('sh', ['-c', loop('fspl', fsplPause, 600)], { env });
    const [ra] = await within(Promise.all([a.done, b.done]), 60_000, 'the two processing loops');
    // fspool may only ever complain about the lock.
    for (const line of ra!.stderr.split('\n').filter((x) => /ERROR|Error/.test(x))) expect(line).toMatch(/lock/i);
    expect(seqsIn(log)).toEqual(range(1, N));
    const who = new Set(fileLines(log).map((x) => x.split(' ')[1]));
    expect(who).toEqual(new Set(['fspool', 'fspl'])); // they really took turns
    expect(nextseq(q)).toBe(String(N + 1));
    expect(jobFiles(q)).toEqual([]);
  }, 90_000);
});

describe('durability and sender-side safety', () => {
  it('prepare -i /nonexistent: exit 1, the seqfile number is not consumed', () => {
    const d = tempDir();
    const s = join(d, 'seq');
    expect(fspool(['prepare', '-s', s]).code).toBe(0);
    expect(fspool(['prepare-get-next', '-s', s]).stdout.toString().trim()).toBe('2');
    const r = fspool(['prepare', '-s', s, '-i', join(d, 'nonexistent')]);
    expect(r.code).toBe(1);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(/nonexistent/);
    expect(fspool(['prepare-get-next', '-s', s]).stdout.toString().trim()).toBe('2');
  });

  it('prepare to /dev/full: exit 1, one-line "no space" error, seq not consumed', () => {
    const d = tempDir();
    const s = join(d, 'seq');
    const input = join(d, 'in');
    writeFileSync(input, pseudoRandom(200_000));
    const r = sh('exec "$0" prepare -s "$1" -i "$2" > /dev/full', [FSPOOL, s, input]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/no space/i);
    expect(fspool(['prepare-get-next', '-s', s]).stdout.toString().trim()).toBe('1');
  });

  it('queue-payload to /dev/full: exit 1 with a clear error', () => {
    const q = makeQueue();
    put(q, plainPacket(1, pseudoRandom(200_000)));
    const r = sh('exec "$0" queue-payload -q "$1" -j 1 > /dev/full', [FSPOOL, q]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/no space/i);
  });

  for (const sig of ['SIGKILL', 'SIGTERM'] as const) {
    it(`queue-write killed (${sig}) mid-stream leaves no fspl-*.fspl; a completed one leaves exactly one`, async () => {
      const q = makeQueue();
      const child = spawn(FSPOOL, ['queue-write', '-q', q], { stdio: ['pipe', 'ignore', 'pipe'] });
      toKill.push(child.pid!);
      child.stdin.on('error', () => {});
      const closed = new Promise<void>((r) => child.once('close', () => r()));
      child.stdin.write(pseudoRandom(1 << 20));
      // The copy is under way under a temp name, and no job is visible yet.
      await waitFor('the temp file', () => readdirSync(join(q, 'jobs')).some((n) => n.startsWith('tmp-') && statSync(join(q, 'jobs', n)).size > 0), 10_000);
      expect(jobFiles(q)).toEqual([]);
      child.kill(sig);
      await within(closed, 10_000, 'queue-write after the kill');
      expect(jobFiles(q)).toEqual([]);
      const packet = plainPacket(1, Buffer.from('complete\n'));
      const done = fspool(['queue-write', '-q', q], { input: packet });
      expect(done.code, done.stderr).toBe(0);
      const names = jobFiles(q);
      expect(names).toHaveLength(1);
      expect(readFileSync(join(q, 'jobs', names[0]!))).toEqual(packet);
    }, 20_000);
  }

  it('queue-write of an empty stdin fails and leaves nothing', () => {
    const q = makeQueue();
    const r = fspool(['queue-write', '-q', q], { input: '' });
    expect(r.code).toBe(1);
    expect(allInJobs(q)).toEqual([]);
  });
});
