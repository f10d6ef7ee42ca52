// fspool's spawner (native/fspool_spawner.c, src/sys/spawner.ts; spec/processing.md, "Starting
// a child" and "If fspool dies"): children started from one helper process, told apart by pid,
// waited for without blocking, guarded until released. Real processes throughout: the unit
// tests drive the spawner from this (Node) process, the others run bin/fspool.
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { execRequest } from '../src/sys/exec.js';
import { GuardedChild } from '../src/sys/guarded.js';
import { Spawner } from '../src/sys/spawner.js';
import { native, packageFile } from '../src/sys/native.js';
import { FSPOOL, fspool, makeQueue, preparePacket, queueWrite, runSync, tempDir } from './helpers/cli.js';
import { sleep, waitFor } from './helpers/queue.js';

const SPAWNER = packageFile('build/Release/fspool-spawner');

/** Is there a live (non-zombie) process with this pid? */
function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return false;
  }
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state !== 'Z' && state !== 'X';
}

/** Is `pid` a zombie child of ours, not yet reaped? */
function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2) === 'Z';
  } catch {
    return false;
  }
}

/** Live spawner helpers whose parent is `parent`. */
function helpersOf(parent: number): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === parent && comm === 'fspool-spawner' && alive(Number(d))) found.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

const b = (s: string) => Buffer.from(s);
const started: GuardedChild[] = [];
afterEach(() => {
  for (const c of started.splice(0)) {
    c.kill('SIGKILL');
  }
});

type Stdio = [number, number | 'inherit', number | 'inherit'];

function run(spawner: Spawner, argv: string[], stdio: Stdio, stdinWriteEnd?: number): GuardedChild {
  const c = new GuardedChild({ argv: argv.map(b), env: [], stdio, stdinWriteEnd, spawner });
  started.push(c);
  return c;
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

  it("holds a copy of the stdin pipe's write end until told the payload is whole", async () => {
    const sp = new Spawner(SPAWNER);
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
  });

  it('a spawner killed by someone: its running children are killed and end as lost; the next spawn starts another', async () => {
    const sp = new Spawner(SPAWNER);
    // Other tests' spawners live on in this process: ours is the one that appears.
    const before = new Set(helpersOf(process.pid));
    const c = run(sp, ['sleep', '30'], [devnull, 'inherit', 'inherit']);
    const ours = helpersOf(process.pid).filter((h) => !before.has(h));
    expect(ours).toHaveLength(1);
    process.kill(ours[0]!, 'SIGKILL');
    const e = await c.exited;
    expect(e.startError).toMatch(/fspool-spawner \(pid \d+\) died, and the command was killed with it/);
    await waitFor('the orphan to die', () => !alive(c.pid!), 10_000);
    c.release();
    const again = run(sp, ['true'], [devnull, 'inherit', 'inherit']);
    expect(await again.exited).toEqual({ code: 0, signal: null });
    again.release();
  });
});

describe('bin/fspool and its spawner', () => {
  it('a receiver starts with every signal at its default and none blocked, even if fspool was started with some ignored', () => {
    const q = makeQueue();
    queueWrite(q, preparePacket(['-s', '-', '-i', '-'], b('x\n')));
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
    queueWrite(q, preparePacket(['-s', '-', '-i', '-'], b('x\n')));
    const noexec = join(d, 'noexec');
    writeFileSync(noexec, '#!/bin/sh\nexit 0\n');
    chmodSync(noexec, 0o644);
    const r = fspool(['queue-process', '-q', q, '--on-error', 'delete', noexec]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot run command: .*noexec: permission denied \(EACCES\)/);
    expect(readFileSync(join(q, 'nextseq'), 'utf8').trim()).toBe('1');
    const script = join(d, 'script');
    writeFileSync(script, 'echo "ran under sh: $FSPL_SEQ" > "$(dirname "$0")/ran"\n');
    chmodSync(script, 0o755);
    const ok = fspool(['queue-process', '-q', q, script]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(join(d, 'ran'), 'utf8')).toBe('ran under sh: 1\n');
  });

  it('fspool SIGKILLed mid-delivery through a pipe: the receiver is killed before it could see EOF, then the spawner exits', async () => {
    const d = tempDir();
    const packet = preparePacket(['-s', '-', '-i', '-'], Buffer.alloc(1 << 20, 'p'));
    const recvPid = join(d, 'recv.pid');
    const got = join(d, 'got');
    const eof = join(d, 'eof');
    // stdin-process copies a socket on stdin through a pipe of its own: the pipe path.
    const p = spawn(FSPOOL, ['stdin-process', 'sh', '--', '-c', 'echo $$ > "$0"; cat > "$1"; echo "cat saw EOF" > "$2"', recvPid, got, eof], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    p.stderr!.on('data', (x: Buffer) => (stderr += x));
    const exited = new Promise((res) => p.on('exit', res));
    // Half the packet, and the rest never comes.
    p.stdin!.write(packet.subarray(0, packet.length / 2));
    await waitFor(`the receiver to take some of the payload (${stderr})`, () => existsSync(got) && statSync(got).size > 0, 30_000);
    const receiver = Number(readFileSync(recvPid, 'utf8'));
    const helpers = helpersOf(p.pid!);
    expect(helpers).toHaveLength(1);
    p.kill('SIGKILL');
    await exited;
    await waitFor('the receiver to be killed', () => !alive(receiver), 10_000);
    await waitFor('the spawner to exit', () => !alive(helpers[0]!), 10_000);
    expect(existsSync(eof), 'the receiver saw a clean EOF on a truncated payload').toBe(false);
    p.stdin!.destroy();
  });

  it("fspool's spawner is there while it runs children and gone once fspool has exited", async () => {
    const d = tempDir();
    const q = makeQueue(d);
    const seq = join(d, 'seq');
    for (let i = 0; i < 3; i++) queueWrite(q, preparePacket(['-s', seq, '-i', '-'], b(`${i}\n`)));
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
