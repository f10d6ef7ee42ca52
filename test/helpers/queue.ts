// Looking at a queue directory from a test: its files, its nextseq, packets dropped into it as
// a transport would (temp name, then rename), and waiting for something to happen: one set of
// these for every test file, so that a fix to one (a regex, a poll interval) reaches them all.
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const exists = (path: string) => existsSync(path);

/** The job names in QUEUE/jobs/ (fspl-*.fspl, whatever bytes between), sorted. */
export const jobFiles = (q: string) =>
  readdirSync(join(q, 'jobs'))
    .filter((n) => /^fspl-[\s\S]*\.fspl$/.test(n))
    .sort();

/** Every name in QUEUE/jobs/, temp files and strays included, sorted. */
export const allInJobs = (q: string) => readdirSync(join(q, 'jobs')).sort();

/** QUEUE/nextseq without its newline. */
export const nextseq = (q: string) => readFileSync(join(q, 'nextseq'), 'latin1').trim();

/** QUEUE/nextseq as it is on disk, newline included (fspl's format is checked byte for byte). */
export const nextseqText = (q: string) => readFileSync(join(q, 'nextseq'), 'latin1');

/** Drop a packet into QUEUE/jobs/ as a syncing tool would: a temp name, then a rename. */
export function put(q: string, bytes: Buffer, name = `fspl-${randomUUID()}.fspl`): string {
  const tmp = join(q, 'jobs', `.${randomUUID()}.tmp`);
  writeFileSync(tmp, bytes);
  renameSync(tmp, join(q, 'jobs', name));
  return name;
}

/** The non-empty lines of a file a receiver appends to; none while it does not exist. */
export const fileLines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : []);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` until it holds, or fail after `timeoutMs` saying what was awaited. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Resolve with `p`'s result, or reject if it takes longer than `ms`: a hang is a failure, not a stuck test. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timer = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms (hang)`)), ms);
  });
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

/**
 * Is there a live process with this pid? A zombie counts as gone: it holds no fds and no locks
 * and runs no code, and pid 1 here does not always reap orphans at once.
 */
export function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return false;
  }
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state !== 'Z' && state !== 'X';
}

/** A process as /proc shows it; its command line and environment read when asked. */
export interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  /** The name of its program, as the kernel keeps it (at most 15 bytes). */
  comm: string;
  cmdline(): string;
  environ(): Buffer;
}

/** The live processes (zombies count as gone), this one aside, that `match` picks. */
export function liveProcesses(match: (p: Proc) => boolean): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const close = stat.lastIndexOf(')');
      // After the command's name: state, ppid, pgrp.
      const [state, ppid, pgrp] = stat.slice(close + 2).split(' ');
      if (state === 'Z' || state === 'X') continue;
      const p: Proc = {
        pid: Number(entry),
        ppid: Number(ppid),
        pgrp: Number(pgrp),
        comm: stat.slice(stat.indexOf('(') + 1, close),
        cmdline: () => readFileSync(`/proc/${entry}/cmdline`, 'latin1'),
        environ: () => readFileSync(`/proc/${entry}/environ`),
      };
      if (match(p)) found.push(p.pid);
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return found;
}

/** Is any live process (zombies count as gone) in process group `pgid`? */
export function groupAlive(pgid: number): boolean {
  return liveProcesses((p) => p.pgrp === pgid).length > 0;
}

/** Whether process `pid` has a file whose path ends with `suffix` open now. */
export function holdsOpen(pid: number, suffix: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith(suffix);
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** Live processes whose command line contains `tag`. */
export function processesWith(tag: string): number[] {
  return liveProcesses((p) => p.cmdline().includes(tag));
}

/**
 * FSPOOL_LONG=1 (`.ci/run`, or by hand): tests that sample (mutations, seeds, trials) take a
 * larger sample, and the big-payload runs their full size; the default run stays within its
 * few minutes.
 */
export const LONG = process.env.FSPOOL_LONG === '1';
