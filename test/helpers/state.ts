// Helpers for the tests of fspool's queue state (QUEUE/fspool/state.db): real queues, real
// packets, the real database read with better-sqlite3 as any other program would.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { fspool, makeQueue, plainPacket, type Result, runSync, tempDir } from './cli.js';
import { jobFiles, nextseq as queueNextseq, put as putInQueue } from './queue.js';

export interface Q {
  dir: string;
  q: string;
  /** Receivers append "$FSPL_SEQ:<stdin>" lines here. */
  log: string;
}

export function setup(prefix = 'fspool-state-'): Q {
  const dir = tempDir(prefix);
  return { dir, q: makeQueue(dir), log: join(dir, 'log') };
}

/** A Command packet with this seq and payload, as `fspool prepare` writes it (made in this process). */
export const packet = (seq: number, payload: string): Buffer => plainPacket(seq, Buffer.from(payload));

export function zstd(b: Buffer): Buffer {
  const r = runSync('zstd', ['-q', '-c'], { input: b });
  if (r.code !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  return r.stdout;
}

/** Drop a packet into jobs/ as a syncing tool would (temp name, rename); returns its name. */
export const put = (q: Q, bytes: Buffer, name?: string) => putInQueue(q.q, bytes, name);

export const LOGGER = 'printf "%s:%s\\n" "$FSPL_SEQ" "$(cat)" >> "$LOG"';

export function proc(q: Q, opts: string[], script = LOGGER, env: NodeJS.ProcessEnv = {}): Result {
  return fspool(['queue-process', '-q', q.q, ...opts, 'sh', '--', '-c', script], { env: { ...process.env, LOG: q.log, ...env } });
}

export const logOf = (q: Q) => (existsSync(q.log) ? readFileSync(q.log, 'utf8') : '');
export const nextseq = (q: Q) => queueNextseq(q.q);
export const jobs = (q: Q) => jobFiles(q.q);
export const dbPath = (q: Q) => join(q.q, 'fspool', 'state.db');
export const lines = (...l: string[]) => l.map((x) => `${x}\n`).join('');

export interface RunRow {
  id: number;
  seq: string;
  file: string;
  packet: string;
  attempt: number;
  outcome: string;
  action: string | null;
  commit_state: string | null;
  exit_code: number | null;
  bytes: number | null;
  stderr_tail: string | null;
  detail: string | null;
}

/** The journal, oldest first, read straight from the database. */
export function runs(q: Q): RunRow[] {
  const db = new Database(dbPath(q), { readonly: true });
  try {
    return db.prepare('SELECT * FROM runs ORDER BY id').all() as RunRow[];
  } finally {
    db.close();
  }
}

/** WARN lines of a run's stderr. */
export const warns = (r: Result) => r.stderr.split('\n').filter((l) => l.startsWith(' WARN'));
