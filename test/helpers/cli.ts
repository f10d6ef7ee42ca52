// Running fspool (and the real fspl) as real processes on real temp directories.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
// @ts-expect-error: a plain .mjs module shared with the benchmarks
import { initQueue, packet } from '../../bench/lib/packet.mjs';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
export const FSPOOL = join(ROOT, 'bin/fspool');
export const FIXTURES = join(ROOT, 'test/fixtures/fspl-1.2.2');

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** A fresh temp directory, removed after the test file. */
export function tempDir(prefix = 'fspool-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface RunOpts {
  input?: string | Buffer;
  /** A file to use as stdin instead of a pipe. */
  stdinFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
}

function stdinOf(opts: RunOpts): 'pipe' | number | 'ignore' {
  if (opts.stdinFile) return openSync(opts.stdinFile, 'r');
  return opts.input !== undefined ? 'pipe' : 'ignore';
}

/** Run a program to completion, synchronously. */
export function runSync(file: string, args: string[], opts: RunOpts = {}): Result {
  const stdin = stdinOf(opts);
  const r = spawnSync(file, args, {
    input: opts.input,
    stdio: [stdin, 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 60_000,
    // A program that hangs in a system call (an open of a FIFO) never runs its SIGTERM handler:
    // the test must end anyway, and fail.
    killSignal: 'SIGKILL',
    maxBuffer: 1 << 30,
  });
  if (typeof stdin === 'number') closeSync(stdin);
  // EPIPE: the program exited without reading all of `input` (a usage error, say); its result
  // is still what the test wants to see.
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr.toString() };
}

export const fspool = (args: string[], opts?: RunOpts) => runSync(FSPOOL, args, opts);
export const fspl = (args: string[], opts?: RunOpts) => runSync('fspl', args, opts);

/** Start a program and collect its output; resolves when it has exited and closed stdio. `stderr()`: what it has written there so far. */
export function runAsync(file: string, args: string[], opts: RunOpts = {}): { pid: number; done: Promise<Result>; stderr(): string } {
  const stdin = stdinOf(opts);
  const child = spawn(file, args, { stdio: [stdin, 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  if (typeof stdin === 'number') closeSync(stdin);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const done = new Promise<Result>((resolveDone, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) =>
      resolveDone({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }),
    );
  });
  return { pid: child.pid!, done, stderr: () => Buffer.concat(err).toString() };
}

/**
 * Make a queue laid out as queue-init makes it (jobs/, nextseq "1", nextseq.lock:
 * spec/queue-layout.md), in this process: a test's set-up need not start a process (~150 ms
 * of CPU each); queue-init itself is tested as a command beside fspl's (interop). Packets go
 * in with put() (helpers/queue.ts), as a transport drops them.
 */
export function makeQueue(dir = tempDir(), name = 'q'): string {
  const q = join(dir, name);
  initQueue(q);
  return q;
}

let lastCtime = 0;

/**
 * A Command packet with no params and no env, as fspl prepare writes it (bench/lib/packet.mjs,
 * checked against fspl by the benchmarks), made in this process: for set-up that needs good
 * packets and does not look at how they were made. Each gets a ctime of its own, as packets
 * that prepare writes one after the other do: two with the same seq are two packets, not two
 * copies of one.
 */
export function plainPacket(seq: number, payload?: Buffer): Buffer {
  lastCtime = Math.max(Date.now(), lastCtime + 1);
  return packet(seq, payload, lastCtime);
}

/** prepare a packet with fspool; returns its bytes. */
export function preparePacket(args: string[], input?: string | Buffer, env?: NodeJS.ProcessEnv): Buffer {
  const r = fspool(['prepare', ...args], { input, env: { ...process.env, ...env } });
  if (r.code !== 0) throw new Error(`prepare failed: ${r.stderr}`);
  return r.stdout;
}

/** The user fspool runs as to see what another user meets. */
export const NOBODY = 65534;

/** A directory nobody can traverse to (temp directories are made 0700). */
export function openDir(): string {
  const d = tempDir();
  chmodSync(d, 0o755);
  return d;
}

/**
 * fspool as user nobody. The checkout may lie where nobody cannot reach it (a clone in /root, or
 * in a 0700 temp directory), so the run sees it bind-mounted at a path nobody can traverse, in a
 * mount namespace of its own that ends with it.
 */
export function asNobody(args: string[], input?: Buffer) {
  const at = openDir();
  const script = 'root=$0 at=$1; shift; mount --bind "$root" "$at" && exec setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$at/bin/fspool" "$@"';
  return runSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, dirname(dirname(FSPOOL)), at, ...args], {
    input,
    env: { PATH: process.env.PATH!, HOME: '/nonexistent', NOBODY: String(NOBODY) },
  });
}
