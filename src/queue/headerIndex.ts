// The header cache: each job file's decoded header, keyed by the file's identity (name,
// device, inode, size, mtime and ctime) and the decoder that read it. A scan stats every file
// and reads (and decodes, running the decoder) only files that are new or changed; with
// `-d CMD` that is one decoder run per file ever instead of one per file per scan.
//
// Only a cache: a file whose identity changed is read again; a file that could not be read is
// not cached (the next scan tries again, so a decoder that failed once does not make a job
// unreadable for good); and without the database everything is read as before.
import type { Stats } from 'node:fs';
import type { DecodeContext } from '../codec/decode.js';
import { log } from '../log.js';
import { decodeHeader, encodeHeader } from '../packet/codec.js';
import type { Header } from '../packet/header.js';
import { identityOf, NotAJobFile, statJobFile } from './jobfile.js';
import type { Queue, ScannedJob } from './queue.js';
import type { StateDb, Tx } from './stateDb.js';

/** A row as `.raw()` gives it: name, dev, ino, size, mtime, ctime, seq, ctime_secs, ctime_nanos, header. */
type Row = [string, string, string, number, string, string, string, string, number, Buffer];

/** Rows per write transaction: each holds the write lock for a few milliseconds at most. */
const BATCH = 1000;

/**
 * The identity of a file as stored: times are Node's millisecond doubles (sub-microsecond
 * resolution), printed exactly; a plain stat costs far less than a BigInt one.
 */
const identity = (s: Stats) => [String(s.dev), String(s.ino), s.size, String(s.mtimeMs), String(s.ctimeMs)] as const;

const sameFile = (r: Row, s: Stats) => r[2] === String(s.ino) && r[3] === s.size && r[4] === String(s.mtimeMs) && r[5] === String(s.ctimeMs) && r[1] === String(s.dev);

/** seq and ctime from their columns; the command (params, variables) and stream decoded only if asked for. */
function cachedHeader(r: Row): Header {
  let full: Header | undefined;
  const decoded = () => (full ??= decodeHeader(r[9]).header);
  return {
    seq: BigInt(r[6]),
    ctimeSecs: BigInt(r[7]),
    ctimeNanos: r[8],
    get cmd() {
      return decoded().cmd;
    },
    get stream() {
      return decoded().stream;
    },
  };
}

export class HeaderIndex {
  constructor(private readonly state: StateDb) {}

  /**
   * Scan `names` as Queue.scan does, through the cache. `complete`: `names` is the whole of
   * jobs/, so rows of files that are gone can be dropped.
   */
  async scan(queue: Queue, ctx: DecodeContext, names: string[], complete: boolean): Promise<ScannedJob[]> {
    const key = ctx.decoder ?? '';
    const rows = this.state.read(
      (tx) =>
        tx
          .stmt('SELECT name, dev, ino, size, mtime, ctime, seq, ctime_secs, ctime_nanos, header FROM headers WHERE decoder = ?')
          .raw(true)
          .all(key) as Row[],
    );
    if (rows === undefined) return queue.readHeaders(ctx, names);
    const cached = new Map<string, Row>();
    for (const r of rows) cached.set(r[0], r);

    const out: ScannedJob[] = new Array(names.length);
    const missed: number[] = [];
    const stats: Array<Stats | undefined> = new Array(names.length);
    let hits = 0;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const path = queue.jobPath(name);
      let st: Stats | undefined;
      try {
        st = statJobFile(path);
      } catch (e) {
        if (!(e instanceof NotAJobFile)) throw e;
        out[i] = { name, path, error: e.message };
        continue;
      }
      if (!st) {
        out[i] = { name, path, vanished: true };
        continue;
      }
      const row = cached.get(name);
      if (row && sameFile(row, st)) {
        out[i] = { name, path, header: cachedHeader(row), identity: identityOf(st) };
        hits++;
        continue;
      }
      stats[i] = st;
      missed.push(i);
    }
    log.debug(`header cache: ${hits} hit(s), ${missed.length} file(s) to read`);
    const fresh = await queue.readHeaders(ctx, missed.map((i) => names[i]!));
    const store: Array<{ job: ScannedJob; st: Stats }> = [];
    missed.forEach((i, k) => {
      const job = fresh[k]!;
      out[i] = job;
      // A header that only OpenPGP decryption revealed (its params and env may be secret) is
      // not written to the database in the clear; such a packet is decrypted at every scan.
      if (job.header && !job.layers?.includes('openpgp')) store.push({ job, st: stats[i]! });
    });

    let gone: string[] = [];
    if (complete) {
      const present = new Set(names);
      gone = rows.filter((r) => !present.has(r[0])).map((r) => r[0]);
    }
    this.save(key, store, gone);
    return out;
  }

  private save(key: string, store: Array<{ job: ScannedJob; st: Stats }>, gone: string[]): void {
    if (store.length === 0 && gone.length === 0) return;
    const now = Date.now();
    for (let at = 0; at < Math.max(store.length, gone.length); at += BATCH) {
      const ok = this.state.write((tx: Tx) => {
        const put = tx.stmt(
          `INSERT INTO headers (decoder, name, dev, ino, size, mtime, ctime, seq, ctime_secs, ctime_nanos, header, first_seen)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (decoder, name) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, size = excluded.size, mtime = excluded.mtime,
             ctime = excluded.ctime, seq = excluded.seq, ctime_secs = excluded.ctime_secs, ctime_nanos = excluded.ctime_nanos, header = excluded.header`,
        );
        for (const { job, st } of store.slice(at, at + BATCH)) {
          const h = job.header!;
          put.run(key, job.name, ...identity(st), String(h.seq), String(h.ctimeSecs), h.ctimeNanos, encodeHeader(h), now);
        }
        // A file that is gone is gone for every decoder.
        const drop = tx.stmt('DELETE FROM headers WHERE name = ?');
        for (const name of gone.slice(at, at + BATCH)) drop.run(name);
        return true;
      });
      if (!ok) return;
    }
  }
}
