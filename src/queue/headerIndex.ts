// The header cache: each job file's decoded header, keyed by the file's identity (name,
// device, inode, size, mtime and ctime to the nanosecond) and the decoder that read it. A scan
// stats every file and reads (and decodes, running the decoder) only files that are new or
// changed; with `-d CMD` that is one decoder run per file ever instead of one per file per scan.
//
// Only a cache: a file whose identity changed is read again; a file that could not be read is
// not cached (the next scan tries again, so a decoder that failed once does not make a job
// unreadable for good); and without the database everything is read as before.
import { type BigIntStats, statSync } from 'node:fs';
import { log } from '../log.js';
import { decodeHeader, encodeHeader } from '../packet/codec.js';
import type { Queue, ScannedJob } from './queue.js';
import type { Db, StateDb } from './stateDb.js';

interface Row {
  name: string;
  dev: string;
  ino: string;
  size: number;
  mtime_ns: string;
  ctime_ns: string;
  header: Buffer;
}

/** Rows per write transaction: each holds the write lock for a few milliseconds at most. */
const BATCH = 1000;

const sameFile = (r: Row, s: BigIntStats) =>
  r.ino === String(s.ino) && r.dev === String(s.dev) && r.size === Number(s.size) && r.mtime_ns === String(s.mtimeNs) && r.ctime_ns === String(s.ctimeNs);

function statOf(path: string): BigIntStats | undefined {
  try {
    return statSync(path, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export class HeaderIndex {
  constructor(private readonly state: StateDb) {}

  /**
   * Scan `names` as Queue.scan does, through the cache. `complete`: `names` is the whole of
   * jobs/, so rows of files that are gone can be dropped.
   */
  async scan(queue: Queue, decoder: string | undefined, names: string[], complete: boolean): Promise<ScannedJob[]> {
    const key = decoder ?? '';
    const rows = this.state.read((db) => db.prepare('SELECT name, dev, ino, size, mtime_ns, ctime_ns, header FROM headers WHERE decoder = ?').all(key) as Row[]);
    if (rows === undefined) return queue.readHeaders(decoder, names);
    const cached = new Map(rows.map((r) => [r.name, r]));

    const out: ScannedJob[] = new Array(names.length);
    const missed: number[] = [];
    let hits = 0;
    const stats: Array<BigIntStats | undefined> = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const path = queue.jobPath(name);
      const st = statOf(path);
      if (!st) {
        out[i] = { name, path, vanished: true };
        continue;
      }
      stats[i] = st;
      const row = cached.get(name);
      if (row && sameFile(row, st)) {
        try {
          out[i] = { name, path, header: decodeHeader(row.header).header };
          hits++;
          continue;
        } catch {
          /* a row that no longer decodes is read again from the file */
        }
      }
      missed.push(i);
    }
    log.debug(`header cache: ${hits} hit(s), ${missed.length} file(s) to read`);
    const fresh = await queue.readHeaders(decoder, missed.map((i) => names[i]!));
    const store: Array<{ job: ScannedJob; st: BigIntStats }> = [];
    missed.forEach((i, k) => {
      const job = fresh[k]!;
      out[i] = job;
      if (job.header) store.push({ job, st: stats[i]! });
    });

    const present = complete ? new Set(names) : undefined;
    const gone = present ? rows.filter((r) => !present.has(r.name)).map((r) => r.name) : [];
    this.save(key, store, gone);
    return out;
  }

  private save(key: string, store: Array<{ job: ScannedJob; st: BigIntStats }>, gone: string[]): void {
    if (store.length === 0 && gone.length === 0) return;
    const now = Date.now();
    for (let at = 0; at < Math.max(store.length, gone.length); at += BATCH) {
      const ok = this.state.write((db: Db) => {
        const put = db.prepare(
          `INSERT INTO headers (decoder, name, dev, ino, size, mtime_ns, ctime_ns, seq, header, first_seen)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (decoder, name) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, size = excluded.size,
             mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, seq = excluded.seq, header = excluded.header`,
        );
        for (const { job, st } of store.slice(at, at + BATCH)) {
          put.run(key, job.name, String(st.dev), String(st.ino), Number(st.size), String(st.mtimeNs), String(st.ctimeNs), String(job.header!.seq), encodeHeader(job.header!), now);
        }
        // A file that is gone is gone for every decoder.
        const drop = db.prepare('DELETE FROM headers WHERE name = ?');
        for (const name of gone.slice(at, at + BATCH)) drop.run(name);
        return true;
      });
      if (!ok) return;
    }
  }
}
