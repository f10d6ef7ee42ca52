// fspool serve: many queues under one supervisor, with real processes, real queues and real
// receivers. What is measured comes from the receivers' own records (start and end lines they
// append to one log) and from the queues' files, never from serve's word.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeHeader } from '../src/packet/codec.js';
import { lockHolder } from '../src/queue/lockHolder.js';
import { FSPOOL, fspool, makeQueue, plainPacket, preparePacket, ROOT, runSync, tempDir } from './helpers/cli.js';
import { alive, liveProcesses, nextseq, put, sleep, waitFor, within } from './helpers/queue.js';

/** A running `fspool serve`, its stderr readable while it runs. */
interface Served {
  pid: number;
  stderr(): string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

const running: Served[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) {
    try {
      process.kill(s.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await s.done;
  }
});

/** Start serve; `mark` goes into its environment, so that every process it starts can be found. */
function serve(args: string[], env: NodeJS.ProcessEnv = {}): Served {
  const child = spawn(FSPOOL, ['serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stderr: err })),
  );
  const s = { pid: child.pid!, stderr: () => err, done };
  running.push(s);
  return s;
}

/** Receivers append `start Q SEQ` and `end Q SEQ` lines here; Q is their first param. */
const records = (log: string) => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : []);

/** A receiver: records its start, takes its payload, sleeps, records its end. */
const receiver = (log: string, sleepSeconds: number, name: string, extra = '') =>
  `["sh", "-c", "echo \\"start $1 $FSPL_SEQ\\" >> ${log}; cat > /dev/null; ${extra}sleep ${sleepSeconds}; echo \\"end $1 $FSPL_SEQ\\" >> ${log}", "sh", "${name}"]`;

const lockFree = (q: string) => lockHolder(join(q, 'nextseq.lock')).pid === undefined;

/** Seqs already written to each queue: fill() goes on from there. */
const written = new Map<string, number>();

/** `n` Command packets with the next seqs (from `from`, else after the last written), dropped into the queue as a transport would. */
function fill(q: string, n: number, from?: number): void {
  const first = from ?? (written.get(q) ?? 0) + 1;
  for (let seq = first; seq < first + n; seq++) {
    const header = encodeHeader({ seq: BigInt(seq), ctimeSecs: BigInt(Math.floor(Date.now() / 1000)), ctimeNanos: seq, cmd: { kind: 'Command', params: [], env: [] } });
    put(q, Buffer.concat([header, Buffer.from(`payload ${seq}`)]));
  }
  written.set(q, first + n - 1);
}

/** The most receivers running at once, from the order of their start and end records. */
function mostAtOnce(lines: string[]): number {
  let now = 0;
  let most = 0;
  for (const l of lines) {
    now += l.startsWith('start') ? 1 : -1;
    most = Math.max(most, now);
  }
  return most;
}

/** Processes that carry the mark in their environment (receivers and their children), alive. */
function marked(mark: string): number[] {
  return liveProcesses((p) => p.environ().includes(mark));
}

function writeConfig(dir: string, text: string, name = 'serve.toml'): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe('fspool serve', () => {
  it('runs every queue in its own order, each job once, never more than max_parallel receivers at once', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    const names = ['a', 'b', 'c', 'd'];
    let cfg = 'max_parallel = 2\n[defaults]\nrescan = 0.5\n';
    for (const n of names) {
      const q = makeQueue(dir, n);
      fill(q, 3);
      cfg += `[queues.${n}]\ndir = "${n}"\ncommand = ${receiver(log, 0.3, n)}\n`;
    }
    const s = serve(['--config', writeConfig(dir, cfg)]);
    await waitFor('12 jobs done', () => names.every((n) => nextseq(join(dir, n)) === '4'), 60_000);
    const lines = records(log);
    for (const n of names) {
      const mine = lines.filter((l) => l.split(' ')[1] === n);
      expect(mine).toEqual([1, 2, 3].flatMap((i) => [`start ${n} ${i}`, `end ${n} ${i}`]));
    }
    expect(mostAtOnce(lines)).toBe(2);
    expect(s.stderr()).toMatch(/INFO fspool: \[c\] job 2 \(.*\) succeeded/);
    process.kill(s.pid, 'SIGTERM');
    const r = await s.done;
    expect(r.code, r.stderr).toBe(143);
    for (const n of names) expect(lockFree(join(dir, n))).toBe(true);
  });

  it('a passphrase file that is a FIFO no one writes to is said to be empty, never waited on: queue-process ends, serve runs the other queues and stops on SIGTERM; a writer that comes is read', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'pw'), 'secret\n');
    const fifo = join(dir, 'fifo');
    expect(runSync('mkfifo', [fifo]).code).toBe(0);
    const enc = makeQueue(dir, 'enc');
    put(enc, preparePacket(['-s', '-', '-i', '-', '--passphrase-file', join(dir, 'pw')], 'sealed\n'));
    const one = fspool(['queue-process', '-q', enc, '--passphrase-file', fifo, 'cat'], { timeoutMs: 30_000 });
    expect(one.signal, 'queue-process hung').toBe(null);
    expect(one.code).toBe(1);
    expect(one.stderr).toContain(`passphrase file ${fifo} is empty (a pipe no one writes to?)`);
    const ok = makeQueue(dir, 'ok');
    put(ok, plainPacket(1, Buffer.from('x')));
    const s = serve(['--config', writeConfig(dir, `[queues.enc]\ndir = "enc"\ncommand = ["cat"]\npassphrase_file = "fifo"\n[queues.ok]\ndir = "ok"\ncommand = ["cat"]\n`)]);
    await waitFor('the other queue', () => nextseq(ok) === '2');
    await waitFor('the error', () => s.stderr().includes('is empty (a pipe no one writes to?)'));
    process.kill(s.pid, 'SIGTERM');
    const r = await within(s.done, 20_000, 'serve after SIGTERM');
    expect(r.code, r.stderr).toBe(143);
    expect(nextseq(enc)).toBe('1');
    // A writer that is there (process substitution), however slow, is read to its end.
    const piped = runSync('bash', ['-c', '"$0" queue-process -q "$1" --passphrase-file <(sleep 0.5; echo secret) cat', FSPOOL, enc]);
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stdout.toString()).toBe('sealed\n');
  });

  it('a SIGHUP as soon as the launcher runs (a reload sent right after a start) does not end serve', async () => {
    const dir = tempDir();
    const q = makeQueue(dir, 'a');
    put(q, plainPacket(1, Buffer.from('x')));
    const s = serve(['--config', writeConfig(dir, '[queues.a]\ndir = "a"\ncommand = ["cat"]\n')]);
    // The launcher maps the bundle first thing: from then on Node's own start is over.
    const end = Date.now() + 30_000;
    while (!readFileSync(`/proc/${s.pid}/maps`, 'latin1').includes('fspool.cjs')) if (Date.now() > end) throw new Error('the bundle was never mapped');
    process.kill(s.pid, 'SIGHUP');
    await waitFor('the job', () => nextseq(q) === '2');
    process.kill(s.pid, 'SIGHUP'); // and a reload once it serves
    await waitFor('the reload', () => s.stderr().includes('SIGHUP: configuration reloaded'));
    process.kill(s.pid, 'SIGTERM');
    const r = await within(s.done, 20_000, 'serve after SIGTERM');
    expect(r.code, r.stderr).toBe(143);
  });

  it('gives free slots to waiting queues in turn: none starves while another has work', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    const names = ['x', 'y', 'z'];
    let cfg = 'max_parallel = 1\n[defaults]\nrescan = 0.5\n';
    for (const n of names) {
      fill(makeQueue(dir, n), 4);
      cfg += `[queues.${n}]\ndir = "${n}"\ncommand = ${receiver(log, 0.2, n)}\n`;
    }
    const s = serve(['--config', writeConfig(dir, cfg)]);
    await waitFor('12 jobs done', () => names.every((n) => nextseq(join(dir, n)) === '5'), 60_000);
    const starts = records(log)
      .filter((l) => l.startsWith('start'))
      .map((l) => l.split(' ')[1]!);
    expect(starts).toHaveLength(12);
    // Taking turns: after any number of starts, no queue is more than one turn ahead of
    // another (a queue could run all its jobs first if slots were not handed out in turn).
    const count = new Map(names.map((n) => [n, 0]));
    for (const q of starts) {
      count.set(q, count.get(q)! + 1);
      const c = [...count.values()];
      expect(Math.max(...c) - Math.min(...c), starts.join(' ')).toBeLessThanOrEqual(2);
    }
    expect(mostAtOnce(records(log))).toBe(1);
    process.kill(s.pid, 'SIGTERM');
    expect((await s.done).code).toBe(143);
  });

  it('a hung receiver, a gap, a failing job and an unreadable packet delay no other queue; SIGTERM then stops each queue by its own stop_timeout, leaving no process and no lock', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    const mark = `FSPOOL_SERVE_MARK=${randomUUID()}`;
    const pids = join(dir, 'hung.pids');
    const q = Object.fromEntries(['hung', 'gap', 'failing', 'unreadable', 'busy', 'slow'].map((n) => [n, makeQueue(dir, n)]));
    // hung: its receiver never ends by itself (its sleep's pid recorded, to prove it is gone after)
    fill(q.hung!, 1);
    // gap: seq 2 and 3 wait for a seq 1 that never comes
    fill(q.gap!, 2, 2);
    fill(q.failing!, 2);
    put(q.unreadable!, Buffer.from('not a packet at all'));
    const cfg = `max_parallel = 4
[defaults]
rescan = 0.5
[queues.hung]
dir = "hung"
stop_timeout = 1
command = ["sh", "-c", "echo \\"start hung $FSPL_SEQ\\" >> ${log}; sleep 300 & echo $$ $! > ${pids}; wait"]
[queues.gap]
dir = "gap"
command = ${receiver(log, 0, 'gap')}
[queues.failing]
dir = "failing"
backoff = 1
command = ["sh", "-c", "echo \\"start failing $FSPL_SEQ\\" >> ${log}; exit 3"]
[queues.unreadable]
dir = "unreadable"
command = ${receiver(log, 0, 'unreadable')}
[queues.busy]
dir = "busy"
command = ${receiver(log, 0.1, 'busy')}
[queues.slow]
dir = "slow"
stop_timeout = 60
command = ${receiver(log, 2, 'slow')}
`;
    const s = serve(['--config', writeConfig(dir, cfg)], { FSPOOL_SERVE_MARK: mark.split('=')[1] });
    await waitFor('the hung receiver to start', () => existsSync(pids), 30_000);
    // The busy queue's packets arrive one by one while the others are stuck, and each runs.
    for (let i = 1; i <= 4; i++) {
      fill(q.busy!, 1);
      await waitFor(`busy job ${i}`, () => nextseq(q.busy!) === String(i + 1), 30_000);
    }
    expect(records(log).filter((l) => l.startsWith('start failing 1')).length).toBeGreaterThanOrEqual(1);
    expect(records(log).some((l) => / (gap|unreadable) /.test(l))).toBe(false);
    expect(s.stderr()).toMatch(/\[gap\] waiting for seq 1/);
    // fspool status sees the same: what runs where, the gap, the failing and the unreadable queue
    const st = fspool(['status', '--config', join(dir, 'serve.toml')]);
    expect(st.code, st.stderr).toBe(4);
    const row = (n: string) => st.stdout.toString().split('\n').find((l) => l.startsWith(`${n} `)) ?? '';
    expect(row('hung')).toMatch(/^hung\s+healthy\s+1\s+1\s+-\s+-\s+job 1 since \S+$/);
    expect(row('gap')).toMatch(/^gap\s+healthy\s+1\s+2\s+seq 1, \d+s\s+-\s+idle \(pid \d+\)$/);
    expect(row('failing')).toMatch(/^failing\s+failing\s+1\s+2\s/);
    expect(row('unreadable')).toMatch(/^unreadable\s+failing\s+1\s+0\s/);
    expect(s.stderr()).toMatch(/\[unreadable\] .*seq 1 not found, and 1 job file\(s\) that cannot be read could hold it/);
    // A job that finishes within its stop_timeout is done; the hung one is interrupted at 1 s.
    fill(q.slow!, 1);
    await waitFor('the slow job to start', () => records(log).includes('start slow 1'), 30_000);
    process.kill(s.pid, 'SIGTERM');
    const r = await s.done;
    expect(r.code, r.stderr).toBe(143);
    expect(records(log)).toContain('end slow 1');
    expect(nextseq(q.slow!)).toBe('2');
    expect(r.stderr).toMatch(/\[hung\] job 1 .* interrupted by SIGTERM; it stays queued/);
    expect(nextseq(q.hung!)).toBe('1');
    expect(readdirSync(join(q.hung!, 'jobs')).filter((n) => n.endsWith('.fspl'))).toHaveLength(1);
    for (const pid of readFileSync(pids, 'utf8').trim().split(' ').map(Number)) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(marked(mark.split('=')[1]!)).toEqual([]);
    for (const d of Object.values(q)) expect(lockFree(d!)).toBe(true);
  });

  it('SIGHUP: an added queue starts, a removed one ends after its running job, a changed one takes its settings at its next job; a bad configuration is refused and the old one stays', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    for (const n of ['kept', 'removed', 'added']) makeQueue(dir, n);
    const head = '[defaults]\nrescan = 0.5\n';
    const kept = (v: string) => `[queues.kept]\ndir = "kept"\ncommand = ["sh", "-c", "echo \\"${v} $FSPL_SEQ\\" >> ${log}"]\n`;
    const removed = `[queues.removed]\ndir = "removed"\ncommand = ${receiver(log, 2, 'removed')}\n`;
    const added = `[queues.added]\ndir = "added"\ncommand = ${receiver(log, 0, 'added')}\n`;
    const file = writeConfig(dir, head + kept('v1') + removed);
    const s = serve(['--config', file]);
    fill(join(dir, 'kept'), 1);
    fill(join(dir, 'removed'), 1);
    await waitFor('the removed queue job to start', () => records(log).includes('start removed 1'), 30_000);
    await waitFor('kept job 1', () => records(log).includes('v1 1'), 30_000);

    writeConfig(dir, head + kept('v2') + added);
    process.kill(s.pid, 'SIGHUP');
    // The running job of the removed queue finishes (it is not interrupted), and then the queue is let go.
    await waitFor('the removed queue to be let go', () => lockFree(join(dir, 'removed')), 30_000);
    expect(records(log)).toContain('end removed 1');
    expect(nextseq(join(dir, 'removed'))).toBe('2');
    fill(join(dir, 'removed'), 1);
    fill(join(dir, 'added'), 2);
    fill(join(dir, 'kept'), 1);
    await waitFor('the added queue to run', () => nextseq(join(dir, 'added')) === '3', 30_000);
    await waitFor('kept job 2, with the new command', () => records(log).includes('v2 2'), 30_000);

    writeFileSync(file, `max_parallel = 0\n${head}${kept('v3')}[queues.other]\ncommand = []\n`);
    process.kill(s.pid, 'SIGHUP');
    await waitFor('the refusal', () => /the configuration was not reloaded/.test(s.stderr()), 30_000);
    fill(join(dir, 'kept'), 1);
    await waitFor('kept job 3, with the old command', () => records(log).includes('v2 3'), 30_000);
    expect(s.stderr()).toMatch(/ERROR fspool: .*serve.toml: max_parallel: must be 1 or more/);
    expect(s.stderr()).toMatch(/ERROR fspool: .*serve.toml: queues.other.command: must name the program to run/);
    expect(s.stderr()).toMatch(/ERROR fspool: .*serve.toml: queues.other.dir: missing/);
    // The removed queue's new packet was never run; nothing ran twice.
    expect(nextseq(join(dir, 'removed'))).toBe('2');
    expect(records(log).filter((l) => l.includes('removed'))).toEqual(['start removed 1', 'end removed 1']);
    expect(records(log).filter((l) => /^v\d/.test(l))).toEqual(['v1 1', 'v2 2', 'v2 3']);
    process.kill(s.pid, 'SIGINT');
    expect((await s.done).code).toBe(130);
  });

  it('killed with SIGKILL mid-job, then started again: its receiver died with it, and the next start runs what was not recorded, nothing twice', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    const mark = randomUUID();
    const q = makeQueue(dir, 'q');
    fill(q, 3);
    // job 2 takes long the first time only
    const flag = join(dir, 'second-time');
    const cfg = `[queues.q]\ndir = "q"\nrescan = 0.5\ncommand = ["sh", "-c", "echo \\"start $FSPL_SEQ\\" >> ${log}; cat > /dev/null; if [ $FSPL_SEQ = 2 ] && [ ! -e ${flag} ]; then : > ${flag}; sleep 300; fi; echo \\"end $FSPL_SEQ\\" >> ${log}"]\n`;
    const file = writeConfig(dir, cfg);
    const s = serve(['--config', file], { FSPOOL_SERVE_MARK: mark });
    await waitFor('job 2 to start', () => existsSync(flag), 30_000);
    process.kill(s.pid, 'SIGKILL');
    await s.done;
    await waitFor('the receiver to die with serve', () => marked(mark).length === 0, 10_000);
    expect(lockFree(q)).toBe(true);
    const again = serve(['--config', file]);
    await waitFor('every job done', () => nextseq(q) === '4', 30_000);
    expect(records(log)).toEqual(['start 1', 'end 1', 'start 2', 'start 2', 'end 2', 'start 3', 'end 3']);
    process.kill(again.pid, 'SIGTERM');
    const r = await again.done;
    expect(r.stderr).toMatch(/\[q\] .*job 2 .*(crashed|interrupted|died)/i);
  });

  it('killed right after a job\'s outcome was recorded (crash point), then started again: that job is completed, not run again', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    let cfg = 'max_parallel = 1\n[defaults]\nrescan = 0.5\n';
    for (const n of ['a', 'b']) {
      fill(makeQueue(dir, n), 2);
      cfg += `[queues.${n}]\ndir = "${n}"\ncommand = ${receiver(log, 0, n)}\n`;
    }
    const file = writeConfig(dir, cfg);
    const s = serve(['--config', file], { FSPOOL_CRASH_AT: 'outcome-recorded@1' });
    const r = await s.done;
    expect(r.signal).toBe('SIGKILL');
    expect(records(log).filter((l) => l.startsWith('end'))).toHaveLength(1);
    const again = serve(['--config', file]);
    await waitFor('every job done', () => ['a', 'b'].every((n) => nextseq(join(dir, n)) === '3'), 30_000);
    // Each job's receiver ended once, over both lives of serve.
    const ends = records(log).filter((l) => l.startsWith('end')).sort();
    expect(ends).toEqual(['end a 1', 'end a 2', 'end b 1', 'end b 2']);
    process.kill(again.pid, 'SIGTERM');
    expect((await again.done).stderr).toMatch(/\[[ab]\] job 1 .* succeeded at .*, but fspool stopped before it was done with it; completed now without running it again/);
  });

  it('waits for a queue another processor (fspl) holds, and takes it once it is free', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    const q = makeQueue(dir, 'q');
    fill(q, 1);
    // flock(1) holds the queue lock as fspl does, until the file it waits for appears.
    const release = join(dir, 'release');
    const holder = spawn('flock', ['-n', join(q, 'nextseq.lock'), 'sh', '-c', `while [ ! -e ${release} ]; do sleep 0.1; done`], { stdio: 'ignore' });
    await waitFor('the lock to be held', () => !lockFree(q), 10_000);
    const s = serve(['--config', writeConfig(dir, `[queues.q]\ndir = "q"\nrescan = 0.5\ncommand = ${receiver(log, 0, 'q')}\n`)]);
    await waitFor('serve to say the queue is held', () => /\[q\] another processor \(pid \d+\) holds the queue/.test(s.stderr()), 30_000);
    expect(records(log)).toEqual([]);
    writeFileSync(release, '');
    await new Promise((r) => holder.once('close', r));
    await waitFor('the job to run', () => nextseq(q) === '2', 30_000);
    // and now serve holds it: a manual queue-process is refused
    const manual = fspool(['queue-process', '-q', q, 'true']);
    expect(manual.code).toBe(1);
    expect(manual.stderr).toMatch(/is locked by another process/);
    process.kill(s.pid, 'SIGTERM');
    await s.done;
  });
});

describe('fspool serve: configuration', () => {
  it('a bad configuration: one line per problem, naming the key, exit 2, nothing run', () => {
    const dir = tempDir();
    const q = makeQueue(dir, 'qa');
    fill(q, 1);
    const file = writeConfig(
      dir,
      `max_parallel = 0
metric_listen = "127.0.0.1:9464"
[defaults]
watch = true
grace = -2
[queues.a]
dir = "qa"
command = "sh -c x"
timeout = -1
on_eror = "retry"
on_error = "maybe"
retries = 1.5
[queues."b c"]
dir = "qa"
[queues.d]
command = []
[queues.e]
dir = "e"
command = ["true"]
never_delete = "yes"
decrypt_key = ["missing.asc"]
`,
    );
    for (const args of [['--check'], []]) {
      const r = fspool(['serve', ...args, '--config', file]);
      expect(r.code, r.stderr).toBe(2);
      const lines = r.stderr.trim().split('\n');
      const expected = [
        /serve.toml: metric_listen: unknown key; did you mean metrics_listen\?$/,
        /serve.toml: max_parallel: must be 1 or more$/,
        /serve.toml: defaults.watch: not a queue key \(serve watches every queue\)$/,
        // said once, not again for each queue that takes the default
        /serve.toml: defaults.grace: invalid value "-2": expected seconds/,
        /serve.toml: queues.a.on_eror: unknown key; did you mean on_error\?$/,
        /serve.toml: queues.a.command: expected an array of strings .*, not string "sh -c x"$/,
        /serve.toml: queues.a.timeout: invalid value "-1": expected seconds/,
        /serve.toml: queues.a.on_error: invalid value "maybe": must be one of delete, leave, retry, quarantine/,
        /serve.toml: queues.a.retries: expected a whole number, not number 1.5$/,
        /serve.toml: queues."b c": a queue name is/,
        /serve.toml: queues.d.command: must name the program to run$/,
        /serve.toml: queues.d.dir: missing/,
        /serve.toml: queues.e.never_delete: expected true or false, not string "yes"$/,
      ];
      for (const want of expected) expect(lines.filter((l) => want.test(l)), `${want}\n${r.stderr}`).toHaveLength(1);
      expect(lines).toHaveLength(expected.length);
      for (const l of lines) expect(l).toMatch(/^ERROR fspool: /);
    }
    expect(nextseq(q)).toBe('1');
    // a syntax error: the line and column
    writeFileSync(file, 'max_parallel = 2\n[queues.a]\ndir = "qa\n');
    const r = fspool(['serve', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^ERROR fspool: .*serve.toml:3:\d+: not valid TOML: .+$/);
    // a file that cannot be read at all
    expect(fspool(['serve', '--config', join(dir, 'none.toml')]).stderr).toMatch(/none.toml: cannot read it: .*no such file/);
  });

  it('a configuration of the wrong shape: arrays where tables go, no queue, an empty path or command, NaN; two queues in one directory said whatever else is wrong', () => {
    const dir = tempDir();
    makeQueue(dir, 'qa');
    const cases: Array<[string, RegExp[]]> = [
      ['[[queues]]\ndir = "qa"\ncommand = ["true"]\n', [/serve.toml: queues: expected tables of queues \(\[queues.NAME\]\), not an array$/]],
      ['defaults = ["x", 2]\n[queues.a]\ndir = "qa"\ncommand = ["true"]\n', [/serve.toml: defaults: expected a table \(\[defaults\]\), not an array$/]],
      ['[queues]\n', [/serve.toml: queues: no queue in it: one \[queues.NAME\] table per queue$/]],
      ['[queues.a]\ndir = ""\ncommand = ["true"]\n', [/serve.toml: queues.a.dir: an empty path$/]],
      ['[queues.a]\ndir = "qa"\ncommand = ["true"]\non_error = ""\n', [/serve.toml: queues.a.on_error: invalid value "": must be one of delete, leave, retry, quarantine/]],
      ['[queues.a]\ndir = "qa"\ncommand = ["true"]\nreceipt_exec = ""\n', [/serve.toml: queues.a.receipt_exec: an empty string$/]],
      ['[queues.a]\ndir = "qa"\ncommand = ["true", 5]\n', [/serve.toml: queues.a.command.1: expected a string \(the program, then its arguments: .*\), not number 5$/]],
      ['[queues.a]\ndir = "qa"\ncommand = ["true"]\nrescan = nan\n', [/serve.toml: queues.a.rescan: expected a number, not number NaN$/]],
      [
        '[queues.a]\ndir = "qa"\ncommand = ["true"]\n[queues.b]\ndir = "./qa"\ncommand = ["true"]\nretries = -1\n',
        [/serve.toml: queues.b.dir: the same directory as queues.a.dir \(.*qa\): a queue has one processor$/, /serve.toml: queues.b.retries: /],
      ],
    ];
    for (const [text, expected] of cases) {
      const r = fspool(['serve', '--check', '--config', writeConfig(dir, text)]);
      expect(r.code, `${text}\n${r.stderr}`).toBe(2);
      const lines = r.stderr.trim().split('\n');
      for (const want of expected) expect(lines.filter((l) => want.test(l)), `${want}\n${r.stderr}`).toHaveLength(1);
      expect(lines, r.stderr).toHaveLength(expected.length);
    }
  });

  it('--check: 0 for a good configuration, 1 naming a queue that cannot be processed now; a key file that cannot be read is a problem of the configuration', () => {
    const dir = tempDir();
    makeQueue(dir, 'qa');
    const good = writeConfig(dir, '[queues.a]\ndir = "qa"\ncommand = ["true"]\n');
    const ok = fspool(['serve', '--check', '--config', good]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString()).toMatch(/1 queue\(s\) \(a\)/);
    const missing = writeConfig(dir, '[queues.a]\ndir = "qa"\ncommand = ["true"]\n[queues.b]\ndir = "nowhere"\ncommand = ["true"]\n', 'two.toml');
    const r = fspool(['serve', '--check', '--config', missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[b\] .*nowhere is not a queue/);
    // A queue its processor could not record a job in (a read-only mount, here in a mount
    // namespace of the check's own): 1, naming what to fix, as a processor refuses it.
    const ro = runSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" serve --check --config "$3"', 'sh', join(dir, 'qa'), FSPOOL, good]);
    expect(ro.code, ro.stderr).toBe(1);
    expect(ro.stderr).toMatch(/^ERROR fspool: \[a\] cannot process queue .*qa: .*qa is on a read-only file system, so nextseq could not advance after a job; .*jobs is on a read-only file system, so finished job files could not be removed; mount it read-write; nothing was run$/m);
    expect(ro.stdout.toString()).toMatch(/1 cannot be processed now/);
    const key = writeConfig(dir, '[queues.a]\ndir = "qa"\ncommand = ["true"]\ndecrypt_key = "keys/none.asc"\n', 'key.toml');
    const k = fspool(['serve', '--check', '--config', key]);
    expect(k.code).toBe(2);
    expect(k.stderr).toMatch(/queues.a.decrypt_key: cannot read .*keys\/none.asc: no such file/);
  });

  it('one definition of the options: every queue-process option is a queue key in snake_case, or says why not', () => {
    // queue-process's options, from its help model (what --help and the man page show)
    const help = runSync(FSPOOL, ['queue-process', '--help'], { env: { ...process.env, COLUMNS: '200' } }).stdout.toString();
    const options = [...help.matchAll(/^\s+(?:-\w, )?--([a-z-]+)/gm)].map((m) => m[1]!).filter((o) => !['log-level', 'quiet', 'help', 'version'].includes(o));
    expect(options.length).toBeGreaterThan(20);
    const dir = tempDir();
    makeQueue(dir, 'q');
    // One queue per option, each given a value no option takes (a table): one run says it all.
    const keys = options.filter((o) => o !== 'queuedir').map((o) => o.replaceAll('-', '_'));
    const file = writeConfig(dir, keys.map((k, i) => `[queues.q${i}]\ndir = "q"\ncommand = ["true"]\n${k} = {}\n`).join(''));
    const r = fspool(['serve', '--check', '--config', file]);
    expect(r.code, r.stderr).toBe(2);
    // Every key is known: a wrong value is told as such, never as an unknown key.
    keys.forEach((k, i) => expect(r.stderr, k).toMatch(new RegExp(`queues\\.q${i}\\.${k}: (expected|not a queue key \\()`)));
    expect(r.stderr).not.toMatch(/unknown key/);
    // queuedir is the queue's dir
    const plain = fspool(['serve', '--check', '--config', writeConfig(dir, '[queues.a]\ndir = "q"\ncommand = ["true"]\n', 'plain.toml')]);
    expect(plain.code, plain.stderr).toBe(0);
  });
});

describe('fspool serve: metrics', () => {
  /** A free TCP port on the loopback. */
  async function freePort(): Promise<number> {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    return port;
  }

  it('/metrics and queue-status --prometheus pass promtool, and a real Prometheus scrapes serve and answers for fspool_queue_pending_jobs', async () => {
    const dir = tempDir();
    const log = join(dir, 'log');
    const gap = makeQueue(dir, 'gapped');
    fill(gap, 3, 2);
    const done = makeQueue(dir, 'done');
    fill(done, 2);
    const failing = makeQueue(dir, 'failing');
    fill(failing, 1);
    const cfg =
      `metrics_listen = "127.0.0.1:0"\n[defaults]\nrescan = 0.5\n[queues.gapped]\ndir = "gapped"\ncommand = ${receiver(log, 0, 'gapped')}\n[queues.done]\ndir = "done"\ncommand = ${receiver(log, 0, 'done')}\n` +
      `[queues.failing]\ndir = "failing"\ncommand = ["sh", "-c", "cat >/dev/null; exit 3"]\n[queues.gone]\ndir = "gone"\ncommand = ["true"]\n`;
    const s = serve(['--config', writeConfig(dir, cfg)]);
    await waitFor('the metrics address', () => /metrics at http:\/\/127\.0\.0\.1:\d+\/metrics/.test(s.stderr()), 30_000);
    await waitFor('the jobs of done', () => nextseq(done) === '3', 30_000);
    const url = /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(s.stderr())![1]!;
    let text = '';
    for (const end = Date.now() + 30_000; ; await sleep(200)) {
      text = await (await fetch(url)).text();
      if (/^fspool_queue_state\{queue="failing",state="failing"\} 1$/m.test(text)) break;
      if (Date.now() > end) throw new Error(`timed out waiting for the failing queue to be failing:\n${text}`);
    }
    // The verdict, the last failure, and a queue that cannot be read: down, not missing.
    expect(text).toMatch(/^fspool_queue_state\{queue="done",state="healthy"\} 1$/m);
    expect(text).toMatch(/^fspool_queue_state\{queue="done",state="failing"\} 0$/m);
    expect(text).toMatch(/^fspool_last_failure_timestamp_seconds\{queue="failing"\} \d+(\.\d+)?$/m);
    expect(text).toMatch(/^fspool_queue_up\{queue="done"\} 1$/m);
    expect(text).toMatch(/^fspool_queue_up\{queue="gone"\} 0$/m);
    expect(text).not.toMatch(/fspool_queue_pending_jobs\{queue="gone"\}/);
    expect(text).toMatch(/^fspool_queue_pending_jobs\{queue="gapped"\} 3$/m);
    expect(text).toMatch(/^fspool_queue_next_seq\{queue="done"\} 3$/m);
    expect(text).toMatch(/^fspool_queue_processor_running\{queue="done"\} 1$/m);
    expect(text).toMatch(/^fspool_jobs_total\{queue="done",outcome="success"\} 2$/m);
    expect(text).toMatch(/^fspool_job_duration_seconds_count\{queue="done"\} 2$/m);
    expect(text).toMatch(/^fspool_payload_bytes_total\{queue="done"\} 18$/m);
    expect(text).toMatch(/^fspool_last_success_timestamp_seconds\{queue="done"\} \d+(\.\d+)?$/m);
    expect(Number(/^fspool_queue_gap_seconds\{queue="gapped"\} (\S+)$/m.exec(text)![1])).toBeGreaterThan(0);
    expect(text).not.toMatch(/fspool_last_success_timestamp_seconds\{queue="gapped"\}/);
    expect((await fetch(url.replace('/metrics', '/other'))).status).toBe(404);
    const lint = runSync('promtool', ['check', 'metrics'], { input: text });
    expect(lint.code, lint.stdout.toString() + lint.stderr).toBe(0);
    const once = fspool(['queue-status', '-q', gap, '--prometheus']);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout.toString()).toMatch(/^fspool_queue_pending_jobs\{queue="gapped"\} 3$/m);
    expect(once.stdout.toString()).not.toMatch(/fspool_jobs_total/);
    const lint2 = runSync('promtool', ['check', 'metrics'], { input: once.stdout });
    expect(lint2.code, lint2.stdout.toString() + lint2.stderr).toBe(0);

    // A real Prometheus, on a loopback port, with a throwaway configuration and storage.
    const port = await freePort();
    const target = new URL(url).host;
    const pdir = join(dir, 'prometheus');
    mkdirSync(pdir);
    writeFileSync(join(pdir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: fspool\n    static_configs:\n      - targets: ["${target}"]\n`);
    const prom = spawn('prometheus', [`--config.file=${join(pdir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(pdir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: 'ignore',
    });
    try {
      let value: string | undefined;
      await waitFor(
        'Prometheus to answer with the scraped value',
        () => {
          void fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent('fspool_queue_pending_jobs{queue="gapped"}')}`)
            .then((r) => r.json())
            .then((j: { data?: { result?: Array<{ value: [number, string] }> } }) => {
              value = j.data?.result?.[0]?.value[1];
            })
            .catch(() => {});
          return value !== undefined;
        },
        60_000,
      );
      expect(value).toBe('3');
    } finally {
      prom.kill('SIGTERM');
      await new Promise((r) => prom.once('close', r));
    }
    process.kill(s.pid, 'SIGTERM');
    await s.done;
  });

  it('binds nothing unless told, and says so when it cannot bind', async () => {
    const dir = tempDir();
    makeQueue(dir, 'q');
    const s = serve(['--config', writeConfig(dir, '[queues.q]\ndir = "q"\ncommand = ["true"]\n')]);
    await waitFor('serve to start', () => /serving 1 queue/.test(s.stderr()), 30_000);
    const sockets = readFileSync('/proc/net/tcp', 'latin1') + readFileSync('/proc/net/tcp6', 'latin1');
    const fds = readdirSync(`/proc/${s.pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${s.pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    const inodes = fds.map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1]).filter(Boolean) as string[];
    // none of serve's sockets is a TCP socket
    for (const ino of inodes) expect(sockets.split('\n').some((row) => row.trim().split(/\s+/)[9] === ino)).toBe(false);
    process.kill(s.pid, 'SIGTERM');
    await s.done;
    // an address in use: serve refuses to start
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const r = fspool(['serve', '--config', join(dir, 'serve.toml'), '--metrics-listen', `127.0.0.1:${port}`]);
    blocker.close();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`cannot serve metrics at 127.0.0.1:${port}: .*(EADDRINUSE|in use)`));
  });

  it("a queue whose headers take long to read (a decoder that hangs) is down in the scrape, and the others' metrics are served", async () => {
    const dir = tempDir();
    put(makeQueue(dir, 'slow'), plainPacket(1, Buffer.from('x')));
    put(makeQueue(dir, 'fine'), plainPacket(1, Buffer.from('x')));
    fill(makeQueue(dir, 'gapped'), 2, 2);
    const cfg =
      'metrics_listen = "127.0.0.1:0"\n[queues.slow]\ndir = "slow"\ncommand = ["cat"]\ndecoder = "sleep 1000; cat"\n' +
      '[queues.fine]\ndir = "fine"\ncommand = ["cat"]\n[queues.gapped]\ndir = "gapped"\ncommand = ["cat"]\n';
    const s = serve(['--config', writeConfig(dir, cfg)]);
    await waitFor('the metrics address', () => /metrics at http:\/\/127\.0\.0\.1:\d+\/metrics/.test(s.stderr()), 30_000);
    const url = /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(s.stderr())![1]!;
    const scrape = async () => {
      const t = Date.now();
      const res = await fetch(url);
      return { status: res.status, text: await res.text(), ms: Date.now() - t };
    };
    const first = await scrape();
    expect(first.status).toBe(200);
    expect(first.ms).toBeLessThan(9_000); // within Prometheus's 10 s; the read waits 5 s
    expect(first.text).toMatch(/^fspool_queue_up\{queue="slow"\} 0$/m);
    expect(first.text).toMatch(/^fspool_queue_up\{queue="fine"\} 1$/m);
    expect(first.text).toMatch(/^fspool_queue_pending_jobs\{queue="gapped"\} 2$/m);
    expect(s.stderr()).toMatch(/WARN fspool: \[slow\] its status took more than 5s to read .*: fspool_queue_up is 0 for it until a scrape reads it in time/);
    // While that read goes on, a scrape does not wait for it again, nor start another.
    const second = await scrape();
    expect(second.ms).toBeLessThan(first.ms);
    expect(second.text).toMatch(/^fspool_queue_up\{queue="slow"\} 0$/m);
    expect(s.stderr().match(/its status took more than/g)).toHaveLength(1);
    process.kill(s.pid, 'SIGTERM');
    const r = await within(s.done, 20_000, 'serve after SIGTERM');
    expect(r.code, r.stderr).toBe(143);
  });

  it('a reload to an address in use leaves the metrics served where they were; one that can listen moves them', async () => {
    const dir = tempDir();
    makeQueue(dir, 'q');
    const file = writeConfig(dir, 'metrics_listen = "127.0.0.1:0"\n[queues.q]\ndir = "q"\ncommand = ["true"]\n');
    const s = serve(['--config', file]);
    const served = (from: number) => Number(/metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(s.stderr().slice(from))?.[1]);
    await waitFor('serve to listen', () => served(0) > 0, 30_000);
    const first = served(0);
    const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).status;
    expect(await scrape(first)).toBe(200);
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const taken = (blocker.address() as { port: number }).port;
    try {
      writeConfig(dir, `metrics_listen = "127.0.0.1:${taken}"\n[queues.q]\ndir = "q"\ncommand = ["true"]\n`);
      process.kill(s.pid, 'SIGHUP');
      await waitFor('the reload to fail to listen', () => /still served at/.test(s.stderr()), 10_000);
      expect(s.stderr()).toMatch(new RegExp(`ERROR fspool: cannot serve metrics at 127.0.0.1:${taken}: .*; metrics are still served at 127.0.0.1:${first}`));
      expect(await scrape(first)).toBe(200);
    } finally {
      blocker.close();
    }
    // A free address: served there, and no longer at the old one.
    const mark = s.stderr().length;
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const free = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    writeConfig(dir, `metrics_listen = "127.0.0.1:${free}"\n[queues.q]\ndir = "q"\ncommand = ["true"]\n`);
    process.kill(s.pid, 'SIGHUP');
    await waitFor('serve to listen anew', () => served(mark) > 0, 10_000);
    expect(served(mark)).toBe(free);
    expect(await scrape(free)).toBe(200);
    await expect(scrape(first)).rejects.toThrow();
    process.kill(s.pid, 'SIGTERM');
    expect((await s.done).code).toBe(143);
  });
});

describe('fspool status', () => {
  it('one line per configured queue, exit as the worst verdict; --json', async () => {
    const dir = tempDir();
    const ok = makeQueue(dir, 'ok');
    const bad = makeQueue(dir, 'bad');
    put(bad, Buffer.from('garbage'));
    const file = writeConfig(dir, '[queues.ok]\ndir = "ok"\ncommand = ["true"]\n[queues.bad]\ndir = "bad"\ncommand = ["true"]\n[queues.gone]\ndir = "gone"\ncommand = ["true"]\n');
    fill(ok, 1);
    expect(fspool(['queue-process', '-q', ok, 'true']).code).toBe(0);
    const r = fspool(['status', '--config', file]);
    expect(r.code, r.stderr).toBe(4);
    const lines = r.stdout.toString().split('\n');
    expect(lines[0]).toMatch(/^QUEUE\s+STATE\s+NEXT\s+PENDING\s+GAP\s+LAST SUCCESS\s+RUNNING$/);
    expect(lines[1]).toMatch(/^ok\s+healthy\s+2\s+0\s+-\s+\d{4}-\d\d-\d\dT\S+\s+-$/);
    expect(lines[2]).toMatch(/^bad\s+failing\s+1\s+0\s+-\s+-\s+-$/);
    expect(lines[3]).toMatch(/^gone\s+failing\s+-/);
    expect(r.stdout.toString()).toMatch(/^bad: 1 job file\(s\) cannot be read/m);
    expect(r.stdout.toString()).toMatch(/^gone: cannot be read: .*gone is not a queue/m);
    const j = JSON.parse(fspool(['status', '--config', file, '--json']).stdout.toString());
    expect(j.kind).toBe('status');
    expect(j.exit_code).toBe(4);
    expect(j.queues.map((q: { name: string; state: string }) => [q.name, q.state])).toEqual([
      ['ok', 'healthy'],
      ['bad', 'failing'],
      ['gone', 'failing'],
    ]);
    expect(j.queues[0].next_seq).toBe(2);
    const healthy = writeConfig(dir, '[queues.ok]\ndir = "ok"\ncommand = ["true"]\n', 'one.toml');
    expect(fspool(['status', '--config', healthy]).code).toBe(0);
  });
});

describe('fspool serve: deployment', () => {
  const has = (cmd: string) => runSync('sh', ['-c', `command -v "$1"`, 'sh', cmd]).code === 0;

  it('contrib/systemd/fspool-serve.service passes systemd-analyze verify, reloads with SIGHUP and stops gracefully', () => {
    expect(has('systemd-analyze'), 'systemd-analyze (Debian systemd) is needed').toBe(true);
    const unit = readFileSync(join(ROOT, 'contrib/systemd/fspool-serve.service'), 'utf8');
    const dir = tempDir('fspool-units-');
    writeFileSync(join(dir, 'fspool-serve.service'), unit.replaceAll('/usr/local/bin/fspool', FSPOOL));
    const r = runSync('systemd-analyze', ['verify', '--man=no', join(dir, 'fspool-serve.service')], { env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice' } });
    expect(r.stderr.split('\n').filter((l) => l.includes(dir) || /fspool-/.test(l)), r.stderr).toEqual([]);
    expect(r.code, r.stderr).toBe(0);
    const value = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(unit)?.[1];
    expect(value('Type')).toBe('notify');
    expect(value('ExecStart')).toBe('/usr/local/bin/fspool serve --config /etc/fspool/serve.toml');
    expect(value('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(value('KillMode')).toBe('mixed');
    expect(value('KillSignal')).toBe('SIGTERM');
    expect(value('SuccessExitStatus')).toBe('143');
    expect(Number(value('TimeoutStopSec'))).toBeGreaterThan(60);
  });

  it('tells systemd (NOTIFY_SOCKET) READY=1 once its queues run, RELOADING=1 and READY=1 at a reload, STOPPING=1 at a stop; receivers do not get the socket', async () => {
    const dir = tempDir();
    // A service manager's end of the socket: every datagram, one line each (newlines as |).
    const sock = join(dir, 'notify.sock');
    const heard = join(dir, 'heard');
    const listener = spawn('python3', [
      '-c',
      'import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nwhile True:\n  m=s.recv(4096).decode().replace("\\n","|")\n  open(sys.argv[2],"a").write(m+"\\n")',
      sock,
      heard,
    ], { stdio: 'ignore' });
    try {
      await waitFor('the listener', () => existsSync(sock), 10_000);
      const q = makeQueue(dir, 'q');
      const envOut = join(dir, 'receiver-env');
      const cfg = writeConfig(dir, `[defaults]\nrescan = 0.5\n[queues.q]\ndir = "q"\ncommand = ["sh", "-c", "env > ${envOut}; cat > /dev/null"]\n`);
      const s = serve(['--config', cfg], { NOTIFY_SOCKET: sock });
      const said = () => records(heard);
      await waitFor('READY=1', () => said().length > 0, 30_000);
      expect(said()).toEqual(['READY=1|STATUS=serving 1 queue(s), at most 2 receiver(s) at once']);
      fill(q, 1);
      await waitFor('the job', () => nextseq(q) === '2', 30_000);
      const env = readFileSync(envOut, 'utf8');
      expect(env).toMatch(/^FSPL_SEQ=1$/m);
      expect(env).not.toMatch(/NOTIFY_SOCKET/);
      process.kill(s.pid, 'SIGHUP');
      await waitFor('the reload told', () => said().length >= 3, 30_000);
      expect(said()[1]).toMatch(/^RELOADING=1\|MONOTONIC_USEC=\d+$/);
      expect(said()[2]).toBe('READY=1|STATUS=serving 1 queue(s), at most 2 receiver(s) at once');
      process.kill(s.pid, 'SIGTERM');
      expect((await s.done).code).toBe(143);
      expect(said().slice(3)).toEqual(['STOPPING=1']);
      expect(s.stderr()).not.toMatch(/WARN/);

      // No one listening there: said once, and serving goes on.
      const gone = serve(['--config', cfg], { NOTIFY_SOCKET: join(dir, 'nobody.sock') });
      fill(q, 1);
      await waitFor('the next job', () => nextseq(q) === '3', 30_000);
      process.kill(gone.pid, 'SIGHUP');
      await waitFor('the reload', () => /configuration reloaded/.test(gone.stderr()), 30_000);
      process.kill(gone.pid, 'SIGTERM');
      const end = await gone.done;
      expect(end.code).toBe(143);
      const warned = end.stderr.split('\n').filter((l) => l.includes('WARN'));
      expect(warned).toEqual([expect.stringMatching(/^ WARN fspool: cannot tell the service manager "READY=1" at NOTIFY_SOCKET=.*nobody\.sock: .*no such file or directory.*; a systemd unit of Type=notify then sees no READY=1/i)]);
    } finally {
      listener.kill('SIGKILL');
    }
  });

  it('the README\'s "Many queues" configuration passes --check and runs (its tar queue, on a real packet)', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Many queues'));
    const toml = /```toml\n([\s\S]*?)```/.exec(section)![1]!;
    const dir = tempDir();
    const site = join(dir, 'srv-site');
    mkdirSync(site);
    for (const n of ['site', 'tank-data']) makeQueue(dir, n);
    const keys = join(dir, 'keys');
    mkdirSync(keys);
    writeFileSync(join(keys, 'recv.asc'), '');
    const text = toml
      .replaceAll('/var/spool/fspool/', `${dir}/`)
      .replaceAll('/srv/site', site)
      .replaceAll('/etc/fspool/keys/', `${keys}/`)
      .replace(/metrics_listen = "127.0.0.1:9464"/, 'metrics_listen = "127.0.0.1:0"')
      .replace('rescan = 30', 'rescan = 0.5');
    const file = writeConfig(dir, text);
    // --check looks for each queue's command as the processor will: this machine may have no
    // zfs, so one stands in for it on PATH (never run: no packet comes for tank-data).
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'zfs'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const check = fspool(['serve', '--check', '--config', file], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout.toString()).toMatch(/2 queue\(s\) \(site, tank-data\), at most 2 receiver\(s\)/);
    const without = runSync(process.execPath, [FSPOOL, 'serve', '--check', '--config', file], { env: { ...process.env, PATH: '/nonexistent' } });
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/^ERROR fspool: \[tank-data\] cannot run command: zfs: not found in PATH \(\/nonexistent\); give its full path, or set PATH; nothing was run$/m);
    expect(without.stdout.toString()).toMatch(/; 2 cannot be processed now/);
    writeFileSync(join(dir, 'hello.txt'), 'hello from the example\n');
    const tar = runSync('tar', ['cf', '-', '-C', dir, 'hello.txt']).stdout;
    const s = serve(['--config', file]);
    put(join(dir, 'site'), preparePacket(['-s', join(dir, 'site.seq'), '-i', '-'], tar));
    await waitFor('the packet unpacked', () => existsSync(join(site, 'hello.txt')), 30_000);
    expect(readFileSync(join(site, 'hello.txt'), 'utf8')).toBe('hello from the example\n');
    await waitFor('the job recorded', () => nextseq(join(dir, 'site')) === '2', 30_000);
    process.kill(s.pid, 'SIGTERM');
    expect((await s.done).code).toBe(143);
  });
});
