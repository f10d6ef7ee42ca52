// fspool's own state for a queue: QUEUE/fspool/state.db, an SQLite database in WAL mode
// (spec/state-db.md). It holds the journal of runs and the header cache. fspl's files stay
// authoritative: nextseq is the truth about the next job, jobs/ about what is queued. The
// database is only ever an addition, so anything wrong with it (damaged, locked, unwritable,
// made by a newer fspool) is reported once and fspool goes on without it.
//
// better-sqlite3 is loaded here, on first use, and only by the commands that need it: the
// sending commands never pay for it at start-up.
//
// Its API is synchronous: a transaction waiting for a lock freezes the event loop. So every
// transaction is short, IMMEDIATE when it writes, and never spans an await or a receiver's run.
//
// A processor writes a few rows per job, so the per-transaction overhead matters (1,000 tiny
// jobs, bench/ jobs-1k): every statement is compiled once and kept. Commits are
// synchronous=NORMAL (a commit reaches the OS, not the disk), except the journal entries that
// decide what the next run does, for which the one connection is switched to synchronous=FULL
// (the commit fsyncs the WAL) for that transaction. The WAL is one file, appended in commit
// order, so a durable commit makes every earlier commit durable too. A second connection for
// them would cost its opening at every run, and each would re-read the pages the other wrote.
import { constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { describe } from '../errors.js';
import { log } from '../log.js';
import { mayAccess } from '../sys/access.js';
import { isSymlink } from '../sys/fd.js';
import { betterSqlite3, betterSqlite3Addon } from '../sys/native.js';
import { os } from '../sys/lazy.js';
import { asOwner, foreignOwner, type Owner, SYMLINK_FIX, symlinkProblem } from './owner.js';

export type Db = BetterSqlite3.Database;
export type Statement = BetterSqlite3.Statement;

/** What the body of a transaction works with. */
export interface Tx {
  /**
   * The statement for `sql`, compiled on its first use on this connection and reused after.
   * Callers that set a mode (`raw`, `pluck`) set it at every use.
   */
  stmt(sql: string): Statement;
}

/** Everything fspool adds to a queue lives under this folder; fspl ignores it. */
export const STATE_DIR = 'fspool';
export const SCHEMA_VERSION = 3;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS headers (
  decoder   TEXT NOT NULL,
  name      TEXT NOT NULL,
  dev       TEXT NOT NULL,
  ino       TEXT NOT NULL,
  size      INTEGER NOT NULL,
  mtime     TEXT NOT NULL,
  ctime     TEXT NOT NULL,
  seq       TEXT NOT NULL,
  ctime_secs TEXT NOT NULL,
  ctime_nanos INTEGER NOT NULL,
  header    BLOB NOT NULL,
  first_seen INTEGER NOT NULL,
  PRIMARY KEY (decoder, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  seq         TEXT NOT NULL,
  packet      TEXT NOT NULL,
  file        TEXT NOT NULL,
  ctime_secs  TEXT NOT NULL,
  ctime_nanos INTEGER NOT NULL,
  attempt     INTEGER NOT NULL,
  order_by    TEXT NOT NULL,
  pid         INTEGER NOT NULL,
  started_at  INTEGER NOT NULL,
  ended_at    INTEGER,
  outcome     TEXT NOT NULL,
  exit_code   INTEGER,
  signal      TEXT,
  detail      TEXT,
  bytes       INTEGER,
  stderr_tail TEXT,
  action      TEXT,
  moved_to    TEXT,
  commit_state TEXT,
  stream      TEXT,
  file_size   INTEGER
);
CREATE INDEX IF NOT EXISTS runs_seq ON runs (seq);
CREATE INDEX IF NOT EXISTS runs_packet ON runs (packet);
CREATE INDEX IF NOT EXISTS runs_outcome ON runs (outcome);
CREATE INDEX IF NOT EXISTS runs_pending ON runs (commit_state) WHERE commit_state = 'pending';
CREATE INDEX IF NOT EXISTS runs_stream ON runs (stream) WHERE stream IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('journal', lower(hex(randomblob(16)))), ('position', 0);
`;

/**
 * What each older version lacked, by version: 1 the stream of each run's packet, 2 the size of
 * a plain packet's file as it ran (receipts, spec/receipts.md), and the meta table (which
 * SCHEMA creates). Applied in order.
 */
const MIGRATIONS: Record<number, string> = {
  1: 'ALTER TABLE runs ADD COLUMN stream TEXT;',
  2: 'ALTER TABLE runs ADD COLUMN file_size INTEGER;',
};

export interface OpenOptions {
  /**
   * Create QUEUE/fspool/ and the database when missing, if the queue is writable. Commands that
   * only report (queue-history) pass false: no database means no history, nothing to create.
   */
  create: boolean;
  /** How long a write waits for another writer before the database is given up (ms). */
  busyMs: number;
  /** What going on without the database means for this command, for the one WARN line. */
  without: string;
  /** Read the file through a mapping: for a command that only reads, and ends soon (READER_MMAP_BYTES). */
  mapped?: boolean;
  /** A failure to open is a DEBUG line, not a WARN: a long run trying again what it already reported. */
  quiet?: boolean;
}

let loaded: typeof BetterSqlite3 | undefined;
function sqlite(): typeof BetterSqlite3 {
  loaded ??= betterSqlite3();
  return loaded;
}

const code = (e: unknown) => (e as { code?: string }).code ?? '';

export function stateDir(queueDir: string): string {
  return join(queueDir, STATE_DIR);
}

/**
 * A command that only reads and ends soon (a listing) reads the database through a mapping of
 * the file, up to this size, instead of a pread per page: a warm listing of 10,000 jobs reads
 * ~600 pages of the header cache, and each system call cost more than the page's copy
 * (bench/README.md, "Listing, an empty queue, raw delivery"). A processor, or serve, does not:
 * it runs for hours, and an I/O error on a mapped page, or the file cut short under it by
 * someone else, is a SIGBUS that ends it, where a failed read is one WARN and the run goes on
 * without the database. SQLite only reads through the mapping; nothing of fspool's shrinks the
 * file.
 */
const READER_MMAP_BYTES = 256 << 20;

/**
 * One connection, its cached statements, and its transaction runners (made once: building
 * better-sqlite3's transaction wrapper per call costs more than a small statement).
 */
class Conn implements Tx {
  private readonly stmts = new Map<string, Statement>();
  readonly immediate: <T>(fn: () => T) => T;
  readonly deferred: <T>(fn: () => T) => T;

  constructor(readonly db: Db) {
    const tx = db.transaction((fn: () => unknown) => fn());
    this.immediate = tx.immediate as <T>(fn: () => T) => T;
    this.deferred = tx.deferred as <T>(fn: () => T) => T;
  }

  stmt(sql: string): Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  close(): void {
    try {
      this.db.close();
    } catch {
      /* closing a broken database: nothing more to lose */
    }
  }
}

/**
 * The database's position: how many write transactions it has had. Only ever grows, so that of
 * two receipts from one journal the later one is known whatever the receiver's clock says
 * (spec/receipts.md, "Which receipt is newer").
 */
const ADVANCE = "UPDATE meta SET value = value + 1 WHERE key = 'position'";

/** Errors of a read-only connection that cannot create the WAL's shared-memory file. */
const CANNOT_SHARE = ['SQLITE_READONLY_DIRECTORY', 'SQLITE_READONLY_CANTINIT', 'SQLITE_CANTOPEN'];

interface Snapshot {
  path: string;
  remove(): void;
}

/**
 * A private copy of the database for a reader that may read it but not write beside it. The
 * WAL is copied before the database: a checkpoint between the two copies only moves into the
 * database pages that the copied WAL holds too, and a frame torn by a writer at the WAL's end
 * fails its checksum and is ignored, so the copy is a state some commit left.
 */
function snapshot(path: string): Snapshot {
  const dir = mkdtempSync(join(os().tmpdir(), 'fspool-state-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    try {
      copyFileSync(`${path}-wal`, join(dir, 'state.db-wal'));
    } catch (e) {
      if (code(e) !== 'ENOENT') throw e;
    }
    copyFileSync(path, join(dir, 'state.db'));
  } catch (e) {
    remove();
    throw e;
  }
  return { path: join(dir, 'state.db'), remove };
}

export class StateDb {
  private broken = false;
  /** A failure is a DEBUG line (OpenOptions.quiet), until loud(). */
  private quiet = false;
  /** The private copy a read-only reader works on, removed on close. */
  private snapshot: Snapshot | undefined;
  private readonly conn: Conn;
  /**
   * The schema version the database has (a read-only one of an older version is read as it
   * is): what it lacks, a reader takes as unknown.
   */
  schema = SCHEMA_VERSION;

  private constructor(
    db: Db,
    readonly path: string,
    readonly readonly: boolean,
    private readonly without: string,
    /** Whose identity the database is used with (owner.ts): every use of it is a file access. */
    private readonly owner: Owner | undefined,
  ) {
    this.conn = new Conn(db);
  }

  /**
   * The queue's state database, or undefined when there is none to use: not wanted here,
   * not creatable (read-only queue), or unusable (reported with one WARN line).
   */
  static open(queueDir: string, opts: OpenOptions): StateDb | undefined {
    let owner: Owner | undefined;
    try {
      owner = foreignOwner(queueDir);
    } catch (e) {
      log.debug(`cannot look at queue ${queueDir}: ${describe(e)}; no state database`);
      return undefined;
    }
    // SQLite's addon is found as we are (better-sqlite3 asks for it at its first connection):
    // the owner may not be able to read where fspool is installed (a clone in root's home).
    if (owner) betterSqlite3Addon();
    return asOwner(owner, () => StateDb.openAs(queueDir, opts, owner));
  }

  /** open(), as the queue's owner when that is not us (owner.ts). */
  private static openAs(queueDir: string, opts: OpenOptions, owner: Owner | undefined): StateDb | undefined {
    const dir = stateDir(queueDir);
    const path = join(dir, 'state.db');
    // Not followed (as the owner it could do no harm, owner.ts), and said for what it is.
    const link = [dir, path].find(isSymlink);
    if (link) {
      warnUnusable(path, new Error(`${symlinkProblem(link)}: ${SYMLINK_FIX}`), opts.without, opts.quiet);
      return undefined;
    }
    const creating = !existsSync(path);
    if (creating) {
      if (!opts.create) return undefined;
      if (!existsSync(dir)) {
        if (!mayAccess(queueDir, constants.W_OK)) {
          log.debug(`queue ${queueDir} is not writable: no state database`);
          return undefined;
        }
        try {
          mkdirSync(dir);
        } catch (e) {
          if (code(e) !== 'EEXIST') {
            log.debug(`cannot create ${dir}: ${describe(e)}; no state database`);
            return undefined;
          }
        }
      }
    }
    const readonly = !mayAccess(dir, constants.W_OK);
    if (readonly && !existsSync(path)) {
      log.debug(`${dir} is not writable: no state database`);
      return undefined;
    }
    let db: Db | undefined;
    let copy: Snapshot | undefined;
    try {
      const Database = sqlite();
      db = new Database(path, { readonly, timeout: opts.busyMs });
      if (readonly) {
        try {
          db.pragma('user_version', { simple: true });
        } catch (e) {
          if (!CANNOT_SHARE.includes(code(e))) throw e;
          // WAL mode needs the -shm file, which a reader who may not write QUEUE/fspool/
          // cannot create: it reads a snapshot instead (a monitoring user, say).
          db.close();
          copy = snapshot(path);
          db = new Database(copy.path, { readonly: true, timeout: opts.busyMs });
        }
      }
      if (!readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
      }
      if (opts.mapped) db.pragma(`mmap_size = ${READER_MMAP_BYTES}`);
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new Error(`it was made by a newer fspool (schema ${version}, this one knows ${SCHEMA_VERSION})`);
      }
      // A read-only database of an older version is read as it is (what it lacks reads as unknown).
      if (version < SCHEMA_VERSION && !(readonly && version > 0)) {
        if (readonly) throw new Error('it has no tables yet and is read-only');
        db.transaction(() => {
          // Read again under the write lock: another process may have migrated it meanwhile,
          // and a column added twice fails the whole migration.
          const now = db!.pragma('user_version', { simple: true }) as number;
          if (now > SCHEMA_VERSION) throw new Error(`it was made by a newer fspool (schema ${now}, this one knows ${SCHEMA_VERSION})`);
          if (now === SCHEMA_VERSION) return;
          if (now > 0) for (let v = now; v < SCHEMA_VERSION; v++) db!.exec(MIGRATIONS[v]!);
          db!.exec(SCHEMA);
          db!.pragma(`user_version = ${SCHEMA_VERSION}`);
        }).immediate();
      }
      const state = new StateDb(db, path, readonly, opts.without, owner);
      state.schema = readonly ? version : SCHEMA_VERSION;
      state.snapshot = copy;
      state.quiet = opts.quiet === true;
      return state;
    } catch (e) {
      db?.close();
      copy?.remove();
      if (readonly && (code(e) === 'SQLITE_CANTOPEN' || code(e) === 'SQLITE_READONLY')) {
        log.debug(`cannot open ${path} read-only: ${describe(e)}; no state database`);
        return undefined;
      }
      warnUnusable(path, e, opts.without, opts.quiet);
      return undefined;
    }
  }

  /** False once the database failed: the rest of the run goes on without it. */
  get usable(): boolean {
    return !this.broken;
  }

  /**
   * Run `fn` in a short IMMEDIATE transaction. `durable` makes this commit reach the disk
   * before it returns (synchronous=FULL for it: the WAL is fsynced), for the journal entries
   * that decide what the next run does. On any database error: one WARN, and undefined from
   * here on.
   */
  write<T>(fn: (tx: Tx) => T, durable = false): T | undefined {
    if (this.broken || this.readonly) return undefined;
    return asOwner(this.owner, () => this.writeAs(fn, durable));
  }

  private writeAs<T>(fn: (tx: Tx) => T, durable: boolean): T | undefined {
    try {
      const c = this.conn;
      // Every write moves the database's position on (receipts order themselves by it).
      const moved = () => {
        const r = fn(c);
        c.stmt(ADVANCE).run();
        return r;
      };
      if (!durable) return c.immediate(moved);
      c.stmt('PRAGMA synchronous = FULL').run();
      try {
        return c.immediate(moved);
      } catch (e) {
        // Reported before the reset can fail too: the transaction's own error is the one to say.
        this.fail(e);
        return undefined;
      } finally {
        this.resetSynchronous();
      }
    } catch (e) {
      this.fail(e);
      return undefined;
    }
  }

  /**
   * Back to synchronous=NORMAL after a durable transaction. Failing that, the transaction's own
   * outcome stands (it was committed, or it failed): the database is given up from here on.
   */
  private resetSynchronous(): void {
    try {
      this.conn.stmt('PRAGMA synchronous = NORMAL').run();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Run `fn` in a read transaction (WAL: never waits for a writer). */
  read<T>(fn: (tx: Tx) => T): T | undefined {
    if (this.broken) return undefined;
    return asOwner(this.owner, () => {
      try {
        return this.conn.deferred(() => fn(this.conn));
      } catch (e) {
        this.fail(e);
        return undefined;
      }
    });
  }

  close(): void {
    asOwner(this.owner, () => {
      this.conn.close();
      this.snapshot?.remove();
    });
  }

  /** Whether a write transaction can be had (one that only moves the position on). */
  canWrite(): boolean {
    return this.write(() => true) === true;
  }

  /** Report failures from now on (a database taken up again has proved it can be written). */
  loud(): void {
    this.quiet = false;
  }

  /** Give the database up; only the first failure is a WARN (one line per database given up). */
  private fail(e: unknown): void {
    const again = this.broken;
    this.broken = true;
    warnUnusable(this.path, e, this.without, this.quiet || again);
  }
}

/** One WARN line for a database given up; a DEBUG one when `quiet` (it was said already). */
function warnUnusable(path: string, e: unknown, without: string, quiet = false): void {
  if (quiet) {
    log.debug(`state database ${path} still cannot be used: ${describe(e)}`);
    return;
  }
  const c = code(e);
  let why: string;
  if (c === 'SQLITE_BUSY' || c === 'SQLITE_LOCKED') why = 'is locked by another process';
  else if (c === 'SQLITE_NOTADB' || c === 'SQLITE_CORRUPT') why = `is damaged (${describe(e)}); move it away to start afresh (only history is lost)`;
  else why = `cannot be used: ${describe(e)}`;
  log.warn(`state database ${path} ${why}; ${without}`);
}
