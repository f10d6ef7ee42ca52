// Looking at a queue directory from a test: its files, its nextseq, packets dropped into it as
// a transport would (temp name, then rename), and waiting for something to happen.
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const exists = (path: string) => existsSync(path);

/** The job names in QUEUE/jobs/, sorted. */
export const jobFiles = (q: string) =>
  readdirSync(join(q, 'jobs'))
    .filter((n) => /^fspl-[\s\S]*\.fspl$/.test(n))
    .sort();

/** QUEUE/nextseq without its newline. */
export const nextseq = (q: string) => readFileSync(join(q, 'nextseq'), 'latin1').trim();

/** Drop a packet into QUEUE/jobs/ as a syncing tool would: a temp name, then a rename. */
export function put(q: string, bytes: Buffer, name = `fspl-${randomUUID()}.fspl`): string {
  const tmp = join(q, 'jobs', `.${randomUUID()}.tmp`);
  writeFileSync(tmp, bytes);
  renameSync(tmp, join(q, 'jobs', name));
  return name;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` until it holds, or fail after `timeoutMs` saying what was awaited. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/**
 * FSPOOL_LONG=1 (`.ci/run`, or by hand): tests that sample (mutations, seeds, trials) take a
 * larger sample; the default run stays within its few minutes.
 */
export const LONG = process.env.FSPOOL_LONG === '1';
