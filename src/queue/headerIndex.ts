// The header cache: each job file's decoded header, keyed by the file's identity (name,
// device, inode, size, mtime and ctime) and the decoder that read it. A scan takes the lstat of
// every file from the directory's read (one native call), reads the cache in one query, and
// reads (and decodes, running the decoder) only files that are new or changed; with `-d CMD`
// that is one decoder run per file ever instead of one per file per scan.
//
// Only a cache: a file whose identity changed is read again; a file that could not be read is
// not cached (the next scan tries again, so a decoder that failed once does not make a job
// unreadable for good); and without the database everything is read as before.
import { constants } from 'node:fs';
import type { DecodeContext } from '../codec/decode.js';
import { log } from '../log.js';
import { mayAccess } from '../sys/access.js';
import { decodeHeader, ENCODED, type Encoded, encodeHeader } from '../packet/codec.js';
import type { Header } from '../packet/header.js';
import type { FileIdentity, JobDir } from './jobfile.js';
import type { CacheHit, HeaderSource, ScannedJob } from './queue.js';
import type { StateDb, Tx } from './stateDb.js';

/**
 * A row as `.raw()` gives it: name, the stored identity as one string (JobDir.identityKey's
 * form: size is an INTEGER column, which SQLite prints as String does), seq, ctime_secs,
 * ctime_nanos, and the header when the scan wants commands. One string for the identity, made
 * by SQLite, instead of five values made by the binding: a listing reads every row, and the
 * binding's cost per value is most of it.
 */
type Row = [string, string, string, string, number, Buffer?];

/** In name order (the primary key's: no sort), as the JobDir is: the two are merged. */
const SELECT_STAMPS =
  "SELECT name, dev || ' ' || ino || ' ' || size || ' ' || mtime || ' ' || ctime, seq, ctime_secs, ctime_nanos FROM headers WHERE decoder = ? ORDER BY name";
const SELECT_HEADERS =
  "SELECT name, dev || ' ' || ino || ' ' || size || ' ' || mtime || ' ' || ctime, seq, ctime_secs, ctime_nanos, header FROM headers WHERE decoder = ? ORDER BY name";

/**
 * Names in the order of their UTF-8 bytes, which is SQLite's (BINARY) and the JobDir's.
 * JavaScript compares UTF-16 code units, which agrees except between a surrogate (half of a
 * character above U+FFFF, whose bytes sort after all others) and U+E000..U+FFFF.
 */
function byBytes(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  let k = 0;
  while (k < n && a.charCodeAt(k) === b.charCodeAt(k)) k++;
  if (k === n) return a.length - b.length;
  const surrogate = (c: number) => (c >= 0xd800 && c <= 0xdfff ? c + 0x10000 : c);
  return surrogate(a.charCodeAt(k)) - surrogate(b.charCodeAt(k));
}

/** Rows per write transaction: each holds the write lock for a few milliseconds at most. */
const BATCH = 1000;

/**
 * The identity of a file as stored: times are Node's millisecond doubles (sub-microsecond
 * resolution), printed exactly.
 */
const identity = (s: FileIdentity) => [String(s.dev), String(s.ino), s.size, String(s.mtimeMs), String(s.ctimeMs)] as const;

/**
 * The stored headers of a scan's hits, end to end in one buffer: one object for them all,
 * where a Buffer each cost ten times their bytes.
 */
class Arena {
  private buf = Buffer.allocUnsafe(16 * 1024);
  private used = 0;

  add(b: Buffer): number {
    if (this.used + b.length > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.used + b.length));
      this.buf.copy(bigger, 0, 0, this.used);
      this.buf = bigger;
    }
    b.copy(this.buf, this.used);
    this.used += b.length;
    return this.used - b.length;
  }

  get(at: number, length: number): Buffer {
    return this.buf.subarray(at, at + length);
  }
}

/**
 * A header from its row: seq and ctime from their columns; the command (params, variables)
 * and stream decoded from the stored header only if something asks for it.
 */
class CachedHeader implements Header, Encoded {
  private decoded: Header | undefined;

  constructor(
    readonly seq: bigint,
    readonly ctimeSecs: bigint,
    readonly ctimeNanos: number,
    private readonly arena: Arena,
    private readonly at: number,
    private readonly length: number,
  ) {}

  private full(): Header {
    this.decoded ??= decodeHeader(this.arena.get(this.at, this.length)).header;
    return this.decoded;
  }

  /** The stored header is encodeHeader's (remember): its id is taken from it, undecoded. */
  [ENCODED](): Buffer {
    return this.arena.get(this.at, this.length);
  }

  get cmd(): Header['cmd'] {
    return this.full().cmd;
  }

  get stream(): string | undefined {
    return this.full().stream;
  }
}

export class HeaderIndex implements HeaderSource {
  constructor(private readonly state: StateDb) {}

  lookup(ctx: DecodeContext, dir: JobDir, which: readonly number[], complete: boolean, commands: boolean, hit: CacheHit): { gone: string[] } | undefined {
    const gone: string[] = [];
    const arena = new Arena();
    let hits = 0;
    const checkAccess = process.geteuid?.() !== 0;
    // The rows and `which` are both in name order: one pass over each, and no row is kept.
    let k = 0;
    let name = which.length > 0 ? dir.name(which[0]!) : '';
    const read = this.state.read((tx) => {
      for (const r of tx.stmt(commands ? SELECT_HEADERS : SELECT_STAMPS).raw(true).iterate(ctx.decoder ?? '') as IterableIterator<Row>) {
        let order = -1;
        while (k < which.length && (order = byBytes(name, r[0])) < 0) name = ++k < which.length ? dir.name(which[k]!) : '';
        if (k === which.length || order > 0) {
          if (complete) gone.push(r[0]);
          continue;
        }
        const i = which[k]!;
        if (r[1] !== dir.identityKey(i)) continue;
        // Whoever filled the cache could read the file, and everyone could by its mode bits
        // (remember), but this user may not (an ACL that keeps it out): a file it cannot open is
        // read as a miss, and so reported as it is.
        if (checkAccess && !mayAccess(`${dir.path}/${r[0]}`, constants.R_OK)) continue;
        const stored = r[5];
        hit(i, r[2], r[3], r[4], stored && new CachedHeader(BigInt(r[2]), BigInt(r[3]), r[4], arena, arena.add(stored), stored.length));
        hits++;
      }
      return true;
    });
    if (read === undefined) return undefined;
    log.debug(`header cache: ${hits} hit(s), ${which.length - hits} file(s) to read`);
    return { gone };
  }

  remember(ctx: DecodeContext, read: ScannedJob[], gone: string[]): void {
    // A header that only OpenPGP decryption revealed (its params and env may be secret) is
    // not written to the database in the clear; such a packet is decrypted at every scan. Nor
    // is that of a file not everyone may read (ScannedJob.private), read at every scan too.
    // The identity stored is that of the file the header was read from (its fstat).
    const store = read.filter(
      (j): j is ScannedJob & { header: Header; identity: FileIdentity } => j.header !== undefined && j.identity !== undefined && !j.layers?.includes('openpgp') && !j.private,
    );
    if (store.length === 0 && gone.length === 0) return;
    const key = ctx.decoder ?? '';
    const now = Date.now();
    for (let at = 0; at < Math.max(store.length, gone.length); at += BATCH) {
      const ok = this.state.write((tx: Tx) => {
        const put = tx.stmt(
          `INSERT INTO headers (decoder, name, dev, ino, size, mtime, ctime, seq, ctime_secs, ctime_nanos, header, first_seen)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (decoder, name) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, size = excluded.size, mtime = excluded.mtime,
             ctime = excluded.ctime, seq = excluded.seq, ctime_secs = excluded.ctime_secs, ctime_nanos = excluded.ctime_nanos, header = excluded.header`,
        );
        for (const { name, header: h, identity: id } of store.slice(at, at + BATCH)) {
          put.run(key, name, ...identity(id), String(h.seq), String(h.ctimeSecs), h.ctimeNanos, encodeHeader(h), now);
        }
        // A file that is gone is gone for every decoder, each named: by the name alone, the
        // primary key (decoder, name) is no index, and every delete would read the whole table.
        const drop = tx.stmt('DELETE FROM headers WHERE decoder = ? AND name = ?');
        const decoders = gone.length > at ? (tx.stmt('SELECT DISTINCT decoder FROM headers').pluck().all() as string[]) : [];
        for (const name of gone.slice(at, at + BATCH)) for (const d of decoders) drop.run(d, name);
        return true;
      });
      if (!ok) return;
    }
  }
}
