// fspool's spawner (native/fspool_spawner.c, src/sys/spawner.ts; spec/processing.md, "Starting
// a child" and "If fspool dies"): children started from one helper process, told apart by pid,
// waited for without blocking, guarded until released. Real processes throughout: the unit
// tests drive the spawner from this (Node) process, the others run bin/fspool.
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { execRequest } from '../src/sys/exec.js';
import { GuardedChild } from '../src/sys/guarded.js';
import { Spawner } from '../src/sys/spawner.js';
import { native, packageFile } from '../src/sys/native.js';
import { FSPOOL, ROOT, fspool, makeQueue, preparePacket, runSync, tempDir } from './helpers/cli.js';
import { alive, liveProcesses, nextseq, put, sleep, waitFor } from './helpers/queue.js';

const SPAWNER = packageFile('build/Release/fspool-spawner');

/** Is `pid` a zombie child of ours, not yet reaped? */
function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2) === 'Z';
  } catch {
    return false;
  }
}

/** Live spawner helpers whose parent is `parent` (`comm`: the name of the helper's program). */
function helpersOf(parent: number, comm = 'fspool-spawner'): number[] {
  return liveProcesses((p) => p.ppid === parent && p.comm === comm);
}

const b = (s: string) => Buffer.from(s);
const started: GuardedChild[] = [];
afterEach(() => {
  for (const c of started.splice(0)) {
    c.kill('SIGKILL');
  }
});

/** The parent pid of a process (a zombie's too). */
function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

type Stdio = [number, number | 'inherit', number | 'inherit'];

function run(spawner: Spawner, argv: string[], stdio: Stdio, stdinWriteEnd?: number): GuardedChild {
  const c = new GuardedChild({ argv: argv.map(b), env: [], stdio, stdinWriteEnd, spawner });
  started.push(c);
  return c;
}

// What holds alike whether the spawner's children are fspool's (CLONE_PARENT) or its own (under
// an emulator, below): `spawner` is the program fspool starts as its spawner, `comm` the name
// the kernel shows for it.

async function holdsStdinCopy(spawner: string): Promise<void> {
  const sp = new Spawner(spawner);
  const [r, w] = native().pipe();
  const c = run(sp, ['cat'], [r, 'inherit', 'inherit'], w);
  closeSync(r);
  closeSync(w);
  // Our ends are closed; the spawner's copy keeps cat from seeing EOF.
  await sleep(300);
  expect(alive(c.pid!)).toBe(true);
  c.allowEof();
  expect(await c.exited).toEqual({ code: 0, signal: null });
  c.release();
}

async function killedSpawner(spawner: string, comm: string): Promise<void> {
  const devnull = openSync('/dev/null', 'r');
  const sp = new Spawner(spawner);
  // Other tests' spawners live on in this process: ours is the one that appears.
  const before = new Set(helpersOf(process.pid, comm));
  const done = run(sp, ['true'], [devnull, 'inherit', 'inherit']);
  expect(await done.exited).toEqual({ code: 0, signal: null });
  const c = run(sp, ['sleep', '30'], [devnull, 'inherit', 'inherit']);
  const ours = helpersOf(process.pid, comm).filter((h) => !before.has(h));
  expect(ours).toHaveLength(1);
  process.kill(ours[0]!, 'SIGKILL');
  const e = await c.exited;
  expect(e.startError).toMatch(/fspool-spawner \(pid \d+\) died, and the command was killed with it/);
  await waitFor('the orphan to die', () => !alive(c.pid!), 10_000);
  c.release();
  done.release();
  const again = run(sp, ['sh', '-c', 'exit 5'], [devnull, 'inherit', 'inherit']);
  expect(await again.exited).toEqual({ code: 5, signal: null });
  again.release();
  closeSync(devnull);
}

/** `parent`: whose child the receiver is, fspool's or the spawner's. */
async function killedMidDelivery(bin: string, comm: string, parent: 'fspool' | 'spawner'): Promise<void> {
  const d = tempDir();
  const packet = preparePacket(['-s', '-', '-i', '-'], Buffer.alloc(1 << 20, 'p'));
  const recvPid = join(d, 'recv.pid');
  const got = join(d, 'got');
  const eof = join(d, 'eof');
  // stdin-process copies a socket on stdin through a pipe of its own: the pipe path. The
  // receiver leaves a grandchild in its group, which must die with it.
  const p = spawn(bin, ['stdin-process', 'sh', '--', '-c', 'sleep 60 & echo $$ $! > "$0"; cat > "$1"; echo "cat saw EOF" > "$2"', recvPid, got, eof], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  p.stderr!.on('data', (x: Buffer) => (stderr += x));
  const exited = new Promise((res) => p.on('exit', res));
  // Half the packet, and the rest never comes. fspool may be killed before it has read all of
  // that half: the rest of our write then fails (EPIPE), which is no error of the test's.
  p.stdin!.on('error', () => {});
  p.stdin!.write(packet.subarray(0, packet.length / 2));
  await waitFor(`the receiver to take some of the payload (${stderr})`, () => existsSync(got) && statSync(got).size > 0, 60_000);
  const [receiver, sleeper] = readFileSync(recvPid, 'utf8').trim().split(' ').map(Number);
  const helpers = helpersOf(p.pid!, comm);
  expect(helpers).toHaveLength(1);
  expect(parentOf(receiver!)).toBe(parent === 'fspool' ? p.pid : helpers[0]);
  p.kill('SIGKILL');
  await exited;
  await waitFor('the receiver to be killed', () => !alive(receiver!), 10_000);
  await waitFor('its group to be killed', () => !alive(sleeper!), 10_000);
  await waitFor('the spawner to exit', () => !alive(helpers[0]!), 10_000);
  expect(existsSync(eof), 'the receiver saw a clean EOF on a truncated payload').toBe(false);
  p.stdin!.destroy();
}

describe('the spawner, driven from this process', () => {
  const devnull = openSync('/dev/null', 'r');

  it('many children at once from one spawner, each exit status to its own child; exec errors by errno', async () => {
    const sp = new Spawner(SPAWNER);
    const kids = Array.from({ length: 40 }, (_, i) => run(sp, ['sh', '-c', `sleep 0.$((${i} % 3)); exit ${i}`], [devnull, 'inherit', 'inherit']));
    const killed = run(sp, ['sh', '-c', 'kill -TERM $$; sleep 5'], [devnull, 'inherit', 'inherit']);
    const missing = run(sp, ['fspool-no-such-command-xyz'], [devnull, 'inherit', 'inherit']);
    const exits = await Promise.all(kids.map((k) => k.exited));
    expect(exits.map((e) => e.code)).toEqual(kids.map((_, i) => i));
    expect(exits.every((e) => e.signal === null && e.startError === undefined)).toBe(true);
    expect(await killed.exited).toEqual({ code: null, signal: 'SIGTERM' });
    const m = await missing.exited;
    expect(missing.pid).toBeUndefined();
    expect(m.startErrno).toBe(2);
    expect(m.startError).toBe('fspool-no-such-command-xyz: no such file or directory (ENOENT)');
    // Every child is fspool's (here: this process's), and a zombie until released.
    for (const k of kids) expect(zombie(k.pid!)).toBe(true);
    for (const k of [...kids, killed]) k.release();
    for (const k of kids) expect(existsSync(`/proc/${k.pid}`)).toBe(false);
  });

  it('refuses a request that does not hold exactly the strings it announces (EPROTO), and serves the next', async () => {
    const sp = new Spawner(SPAWNER);
    const fds = [devnull, 1, 2];
    const good = execRequest([b('sh'), b('-c'), b('exit 7')], [['FSPL_X', b('1')]], 3);
    const EPROTO = 71;
    // One argv string more than there is: the last environment entry falls short.
    const more = Buffer.from(good);
    more.writeUInt32LE(4, 5);
    expect(sp.spawn(more, fds)).toEqual({ errno: EPROTO });
    // A string after the announced ones (an entry split in two would look like this).
    const extra = Buffer.concat([good, b('LD_PRELOAD=/tmp/x.so\0')]);
    extra.writeUInt32LE(extra.length - 4, 0);
    expect(sp.spawn(extra, fds)).toEqual({ errno: EPROTO });
    // The last string without its NUL.
    const cut = Buffer.from(good.subarray(0, good.length - 1));
    cut.writeUInt32LE(cut.length - 4, 0);
    expect(sp.spawn(cut, fds)).toEqual({ errno: EPROTO });
    const ok = sp.spawn(good, fds);
    expect('pid' in ok && (await ok.exited)).toEqual({ code: 7, signal: null });
    if ('pid' in ok) sp.release(ok.pid);
  });

  it("holds a copy of the stdin pipe's write end until told the payload is whole", () => holdsStdinCopy(SPAWNER));

  it('a spawner killed by someone: its running children are killed and end as lost; the next spawn starts another', () => killedSpawner(SPAWNER, 'fspool-spawner'));
});

describe('bin/fspool and its spawner', () => {
  it('a receiver starts with every signal at its default and none blocked, even if fspool was started with some ignored', () => {
    const q = makeQueue();
    put(q, preparePacket(['-s', '-', '-i', '-'], b('x\n')));
    const out = join(tempDir(), 'status');
    // The receiver (dash) reads its own status with builtins only: a `cat` would see the shell
    // waiting for it, every signal blocked.
    const receiver = 'while IFS= read -r l; do case "$l" in Sig*) echo "$l";; esac; done < /proc/self/status > "$0"';
    const r = runSync('sh', ['-c', 'trap "" INT QUIT PIPE HUP USR1; exec "$0" queue-process -q "$1" sh -- -c "$3" "$2"', FSPOOL, q, out, receiver]);
    expect(r.code, r.stderr).toBe(0);
    const status = readFileSync(out, 'utf8');
    expect(status).toMatch(/^SigIgn:\s*0+$/m);
    expect(status).toMatch(/^SigBlk:\s*0+$/m);
  });

  it('exec failures are named by errno: not executable (EACCES) is fatal and keeps the job; a script without #! runs under /bin/sh', () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, preparePacket(['-s', '-', '-i', '-'], b('x\n')));
    const noexec = join(d, 'noexec');
    writeFileSync(noexec, '#!/bin/sh\nexit 0\n');
    chmodSync(noexec, 0o644);
    const r = fspool(['queue-process', '-q', q, '--on-error', 'delete', noexec]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot run command: .*noexec: permission denied \(EACCES\)/);
    expect(nextseq(q)).toBe('1');
    const script = join(d, 'script');
    writeFileSync(script, 'echo "ran under sh: $FSPL_SEQ" > "$(dirname "$0")/ran"\n');
    chmodSync(script, 0o755);
    const ok = fspool(['queue-process', '-q', q, script]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(join(d, 'ran'), 'utf8')).toBe('ran under sh: 1\n');
  });

  it('fspool SIGKILLed mid-delivery through a pipe: the receiver and its group are killed before it could see EOF, then the spawner exits', () =>
    killedMidDelivery(FSPOOL, 'fspool-spawner', 'fspool'));

  it("fspool's spawner is there while it runs children and gone once fspool has exited", async () => {
    const d = tempDir();
    const q = makeQueue(d);
    const seq = join(d, 'seq');
    for (let i = 0; i < 3; i++) put(q, preparePacket(['-s', seq, '-i', '-'], b(`${i}\n`)));
    const seen = join(d, 'seen');
    // The receiver lists its parent's (fspool's) spawner children.
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'for p in /proc/[0-9]*; do read -r s 2>/dev/null < "$p/stat" || continue; case "$s" in *"(fspool-spawner) S $PPID "*|*"(fspool-spawner) R $PPID "*) echo "${p#/proc/}" >> "$0";; esac; done', seen]);
    expect(r.code, r.stderr).toBe(0);
    const pids = readFileSync(seen, 'utf8').trim().split('\n').map(Number);
    // One spawner served the three jobs.
    expect(pids).toHaveLength(3);
    expect(new Set(pids).size).toBe(1);
    await waitFor('the spawner to be gone', () => !alive(pids[0]!), 10_000);
  });
});

// qemu-user refuses clone(CLONE_PARENT) with EINVAL (it runs CLONE_VFORK as a fork, and a fork
// may carry no other flag), so under an emulator (an arm64 container on x86) the spawner starts
// its children as its own and reports their exits (spec/processing.md, "Starting a child").
// Here the real spawner binary runs under qemu-x86_64, so it takes that path for real; the
// package test (test/long/package.test.ts) runs the whole of fspool under qemu-aarch64.
const QEMU = '/usr/bin/qemu-x86_64-static';
/** What the kernel shows as the emulated spawner's name (qemu's own, cut to 15 bytes). */
const QEMU_COMM = 'qemu-x86_64-sta';

/** The spawner, run by qemu-user: a script fspool starts as it would the spawner. */
function emulatedSpawner(dir = tempDir('fspool-qemu-')): string {
  const path = join(dir, 'fspool-spawner');
  writeFileSync(path, `#!/bin/sh\nexec ${QEMU} ${SPAWNER}\n`, { mode: 0o755 });
  return path;
}

/**
 * bin/fspool in a package of its own whose build/Release/fspool-spawner is the emulated one
 * (everything else is this tree's: dist/, node_modules/, the addon).
 */
function fspoolWithEmulatedSpawner(): string {
  const root = tempDir('fspool-qemu-pkg-');
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'build/Release'), { recursive: true });
  copyFileSync(FSPOOL, join(root, 'bin/fspool'));
  symlinkSync(join(ROOT, 'bin/compiled.cjs'), join(root, 'bin/compiled.cjs'));
  chmodSync(join(root, 'bin/fspool'), 0o755);
  symlinkSync(join(ROOT, 'dist'), join(root, 'dist'));
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'));
  symlinkSync(packageFile('build/Release/fspool_sys.node'), join(root, 'build/Release/fspool_sys.node'));
  emulatedSpawner(join(root, 'build/Release'));
  return join(root, 'bin/fspool');
}

describe('the spawner under qemu-user, which refuses CLONE_PARENT: its children are its own', () => {
  const devnull = openSync('/dev/null', 'r');

  it('exit statuses, deaths by signal and exec errors come as before; each child is held as a zombie until released', async () => {
    expect(existsSync(QEMU), `${QEMU} (Debian package qemu-user-static) is needed`).toBe(true);
    const sp = new Spawner(emulatedSpawner());
    const before = new Set(helpersOf(process.pid, QEMU_COMM));
    const kids = [0, 1, 7].map((code) => run(sp, ['sh', '-c', `sleep 0.2; exit ${code}`], [devnull, 'inherit', 'inherit']));
    const killed = run(sp, ['sh', '-c', 'kill -TERM $$; sleep 5'], [devnull, 'inherit', 'inherit']);
    const missing = run(sp, ['fspool-no-such-command-xyz'], [devnull, 'inherit', 'inherit']);
    const helper = helpersOf(process.pid, QEMU_COMM).filter((h) => !before.has(h));
    expect(helper).toHaveLength(1);
    const exits = await Promise.all(kids.map((k) => k.exited));
    expect(exits).toEqual([0, 1, 7].map((code) => ({ code, signal: null })));
    expect(await killed.exited).toEqual({ code: null, signal: 'SIGTERM' });
    const m = await missing.exited;
    expect(missing.pid).toBeUndefined();
    expect(m.startErrno).toBe(2);
    expect(m.startError).toBe('fspool-no-such-command-xyz: no such file or directory (ENOENT)');
    // The fallback was taken: each child is the spawner's, not this process's, and stays a
    // zombie (its pid and group id held) until released; then the spawner reaps it.
    for (const k of [...kids, killed]) {
      expect(zombie(k.pid!)).toBe(true);
      expect(parentOf(k.pid!)).toBe(helper[0]);
    }
    for (const k of [...kids, killed]) k.release();
    for (const k of [...kids, killed]) await waitFor(`child ${k.pid} to be reaped`, () => !existsSync(`/proc/${k.pid}`), 10_000);
    // Released before it exits: its exit is still reported, and the spawner reaps it then.
    const late = run(sp, ['sh', '-c', 'sleep 0.5; exit 4'], [devnull, 'inherit', 'inherit']);
    late.release();
    expect(await late.exited).toEqual({ code: 4, signal: null });
    await waitFor(`child ${late.pid} to be reaped`, () => !existsSync(`/proc/${late.pid}`), 10_000);
  }, 60_000);

  it("holds a copy of the stdin pipe's write end until told the payload is whole", () => holdsStdinCopy(emulatedSpawner()), 60_000);

  it('a spawner killed by someone: its running children are killed and end as lost; the next spawn starts another', () =>
    killedSpawner(emulatedSpawner(), QEMU_COMM), 60_000);

  it('bin/fspool: jobs succeed and fail by their exit status or signal; a missing command is fatal and keeps the job', () => {
    const emulated = fspoolWithEmulatedSpawner();
    const d = tempDir();
    const q = makeQueue(d);
    const seq = join(d, 'seq');
    for (let i = 0; i < 4; i++) put(q, preparePacket(['-s', seq, '-i', '-'], b(`job ${i}\n`)));
    const one = (args: string[]) => runSync(emulated, ['queue-process', '-q', q, '-n', '1', ...args], { timeoutMs: 120_000 });
    // The receiver names its parent: the emulated spawner, not fspool.
    const ok = one(['sh', '--', '-c', 'tr a-z A-Z; read -r _ name _ < /proc/$PPID/stat; echo "parent $name"']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString()).toBe(`JOB 0\nparent (${QEMU_COMM})\n`);
    const three = one(['--on-error', 'delete', 'sh', '--', '-c', 'cat > /dev/null; exit 3']);
    expect(three.code, three.stderr).toBe(0);
    expect(three.stderr).toMatch(/job 2 .* failed: command exited with status 3$/m);
    const term = one(['--on-error', 'delete', 'sh', '--', '-c', 'kill -TERM $$']);
    expect(term.stderr).toMatch(/job 3 .* failed: command killed by SIGTERM$/m);
    // A command that is there but cannot be exec'd (its interpreter is missing): the exec fails
    // in the spawner. (One not there at all is refused before any job: test/cli-help.test.ts.)
    const script = join(d, 'no-interpreter');
    writeFileSync(script, '#!/fspool-no-such-interpreter\n', { mode: 0o755 });
    const missing = one(['--on-error', 'delete', script]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(new RegExp(`^Error: job 4 .*: cannot run command: ${script}: no such file or directory \\(ENOENT\\); job kept$`, 'm'));
    expect(nextseq(q)).toBe('4');
    const history = runSync(emulated, ['queue-history', '-q', q]).stdout.toString();
    expect(history).toMatch(/^\S+ +1 +1 +success /m);
  }, 300_000);

  it('fspool SIGKILLed mid-delivery through a pipe: the receiver and its group are killed before it could see EOF, then the spawner exits', () =>
    killedMidDelivery(fspoolWithEmulatedSpawner(), QEMU_COMM, 'spawner'), 120_000);
});
