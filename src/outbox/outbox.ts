// The sender's outbox (spec/receipts.md, "Outbox layout"): a copy of every packet one stream
// sends, kept until a receipt proves the receiver ran it. The file names are the index:
//
//   OUTBOX/outbox.json             stream id, seqfile (written once)
//   OUTBOX/outbox.lock             flock
//   OUTBOX/packets/SEQ-ID.fspl     kept packets; SEQ-ID.pending while prepare publishes one
//   OUTBOX/acked/SEQ-ID            acknowledged identities, kept while their block is open
//   OUTBOX/tmp/                    packets being written by prepare
//   OUTBOX/state.json              the newest receipt's facts
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, realpathSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { describe, FspoolError } from '../errors.js';
import { log } from '../log.js';
import { BLOCK } from '../packet/receipt.js';
import { FileLock } from '../queue/lock.js';
import { SeqFile } from '../queue/seqfile.js';
import { crashPoint } from '../sys/crashPoint.js';
import { fsyncDir, writeFileDurably, writeSynced } from '../sys/durable.js';
import { who } from '../sys/access.js';
import { readRegularFile } from '../sys/fd.js';
import { crypto } from '../sys/lazy.js';

export interface OutboxConfig {
  version: 1;
  stream: string;
  seqfile: string;
  created: string;
}

/** One packet of the outbox, by its file name. */
export interface Entry {
  seq: bigint;
  id: string;
  name: string;
}

const ENTRY = /^(\d{20})-([0-9a-f]{32})(\.fspl|\.pending)?$/;
export const entryName = (seq: bigint, id: string) => `${String(seq).padStart(20, '0')}-${id}`;

function parseEntry(name: string): (Entry & { kind: string }) | undefined {
  const m = ENTRY.exec(name);
  if (!m) return undefined;
  return { seq: BigInt(m[1]!), id: m[2]!, name, kind: m[3] ?? '' };
}

/** Inclusive ranges of seqs, as state.json stores them (decimal strings: seqs are u64). */
export type Ranges = Array<[string, string]>;

export function toRanges(seqs: bigint[]): Ranges {
  const sorted = [...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: Ranges = [];
  let lo: bigint | undefined;
  let hi = 0n;
  for (const s of sorted) {
    if (lo !== undefined && s === hi + 1n) hi = s;
    else {
      if (lo !== undefined) out.push([String(lo), String(hi)]);
      lo = hi = s;
    }
  }
  if (lo !== undefined) out.push([String(lo), String(hi)]);
  return out;
}

export const inRanges = (r: Ranges, s: bigint) => r.some(([lo, hi]) => BigInt(lo) <= s && s <= BigInt(hi));

/** Where a kept packet stands by the receipts applied (spec/receipts.md, "The state of a sent packet"). */
export type Standing = 'cut-short' | 'held' | 'passed' | 'beyond' | 'missing';

export function standing(e: Entry, s: OutboxState | undefined): Standing {
  if (s?.cut_short?.some((c) => c.packet === e.id && BigInt(c.seq) === e.seq)) return 'cut-short';
  if (s && inRanges(s.held, e.seq)) return 'held';
  if (s && inRanges(s.passed, e.seq)) return 'passed';
  if (s?.receipt.held_beyond && e.seq >= BigInt(s.receipt.held_end)) return 'beyond';
  return 'missing';
}

export interface FailureJson {
  seq: string;
  packet: string;
  outcome: string;
  action: string;
  exit_code: number | null;
  ended_at: number;
}

/** What the newest receipt said (spec/receipts.md, "Outbox layout"). */
export interface OutboxState {
  version: 1;
  receipt: {
    stream: string;
    created: number;
    applied_at: number;
    next_seq: string;
    window_start: string;
    held_end: string;
    held_beyond: boolean;
    unreadable: number;
    ambiguous: number;
    /** The receiver's journal and its position then (absent: a receipt that had none). */
    journal?: string;
    position?: string;
  };
  held: Ranges;
  passed: Ranges;
  /** Seqs whose block the receiver described with other identities than ours. */
  conflicts: Ranges;
  failures: FailureJson[];
  /**
   * Packets the receiver ran from a copy of another size than the packet kept here (plain
   * packets: a copy cut short in transit). Kept from every receipt applied, as long as the
   * packet is kept; absent in a state.json written before there were any.
   */
  cut_short?: CutShortJson[];
  last_apply: { at: number; acknowledged: number };
}

/** A plain packet that ran on the receiver from a copy of `ran_bytes`, where this one is `sent_bytes`. */
export interface CutShortJson {
  seq: string;
  packet: string;
  sent_bytes: number;
  ran_bytes: number;
}

const SEQ_TEXT = /^\d{1,20}$/;
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isRanges = (x: unknown) => Array.isArray(x) && x.every((r) => Array.isArray(r) && r.length === 2 && r.every((n) => typeof n === 'string' && SEQ_TEXT.test(n)));

/** state.json as outbox-apply writes it (a file edited or damaged otherwise is no state). */
function isState(s: unknown): s is OutboxState {
  if (!isObject(s) || s.version !== 1 || !isObject(s.receipt) || !isObject(s.last_apply)) return false;
  const r = s.receipt;
  return (
    typeof r.stream === 'string' &&
    ['created', 'applied_at', 'unreadable', 'ambiguous'].every((k) => Number.isFinite(r[k])) &&
    ['next_seq', 'window_start', 'held_end'].every((k) => typeof r[k] === 'string' && SEQ_TEXT.test(r[k] as string)) &&
    typeof r.held_beyond === 'boolean' &&
    (r.journal === undefined || (typeof r.journal === 'string' && /^[0-9a-f]{32}$/.test(r.journal) && typeof r.position === 'string' && SEQ_TEXT.test(r.position))) &&
    isRanges(s.held) &&
    isRanges(s.passed) &&
    isRanges(s.conflicts) &&
    Number.isFinite(s.last_apply.at) &&
    Number.isFinite(s.last_apply.acknowledged) &&
    Array.isArray(s.failures) &&
    s.failures.every(
      (f) =>
        isObject(f) &&
        typeof f.seq === 'string' &&
        SEQ_TEXT.test(f.seq) &&
        typeof f.packet === 'string' &&
        typeof f.outcome === 'string' &&
        typeof f.action === 'string' &&
        (f.exit_code === null || Number.isInteger(f.exit_code)) &&
        Number.isFinite(f.ended_at),
    ) &&
    (s.cut_short === undefined ||
      (Array.isArray(s.cut_short) &&
        s.cut_short.every(
          (c) =>
            isObject(c) &&
            typeof c.seq === 'string' &&
            SEQ_TEXT.test(c.seq) &&
            typeof c.packet === 'string' &&
            Number.isSafeInteger(c.sent_bytes) &&
            Number.isSafeInteger(c.ran_bytes),
        )))
  );
}

export interface Listing {
  kept: Entry[];
  /** .pending copies of a prepare that did not finish (see tidy()). */
  pending: Entry[];
  acked: Entry[];
}

/** How long prepare waits for the outbox lock: its other holders hold it for milliseconds. */
const PREPARE_LOCK_WAIT = 120;

export class Outbox {
  readonly packetsDir: string;
  readonly ackedDir: string;
  readonly tmpDir: string;

  private constructor(
    readonly dir: string,
    readonly config: OutboxConfig,
  ) {
    this.packetsDir = join(dir, 'packets');
    this.ackedDir = join(dir, 'acked');
    this.tmpDir = join(dir, 'tmp');
  }

  get stream(): string {
    return this.config.stream;
  }

  get statePath(): string {
    return join(this.dir, 'state.json');
  }

  /** An existing outbox. */
  static open(dir: string): Outbox {
    const path = join(dir, 'outbox.json');
    let text: string;
    try {
      text = readRegularFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new FspoolError(`${dir} is not an outbox (no outbox.json); one is made by the first prepare --outbox ${dir}`);
      }
      throw new FspoolError(`cannot read ${path}: ${describe(e)}`);
    }
    let config: OutboxConfig;
    try {
      config = JSON.parse(text) as OutboxConfig;
    } catch {
      throw new FspoolError(`${path} is not valid JSON: the outbox is damaged`);
    }
    if (config.version !== 1 || typeof config.stream !== 'string' || !/^[0-9a-f]{32}$/.test(config.stream) || typeof config.seqfile !== 'string') {
      throw new FspoolError(`${path} is not an outbox description this fspool knows (version ${String(config.version)})`);
    }
    const o = new Outbox(dir, config);
    for (const d of [o.packetsDir, o.ackedDir, o.tmpDir]) mkdirSync(d, { recursive: true });
    return o;
  }

  /**
   * The outbox of `seqfile`, made (with a new stream id) if DIR has none. An outbox belongs to
   * one seqfile: another is refused.
   */
  static forSeqfile(dir: string, seqfile: string): Outbox {
    if (seqfile === '-') throw new FspoolError('--outbox needs a sequence file (-s FILE), not "-": an outbox keeps one numbered stream');
    const want = absoluteSeqfile(seqfile);
    if (!existsSync(join(dir, 'outbox.json'))) create(dir, want);
    const o = Outbox.open(dir);
    if (o.config.seqfile !== want) {
      throw new FspoolError(
        `outbox ${dir} belongs to sequence file ${o.config.seqfile}, not ${want}: an outbox keeps one stream; use another --outbox for this sequence file`,
      );
    }
    return o;
  }

  lock(waitSeconds?: number): Promise<FileLock> {
    return FileLock.acquire(join(this.dir, 'outbox.lock'), { create: true, waitSeconds, what: `outbox ${this.dir}` });
  }

  list(): Listing {
    const kept: Entry[] = [];
    const pending: Entry[] = [];
    for (const n of readdirSync(this.packetsDir)) {
      const e = parseEntry(n);
      if (e?.kind === '.fspl') kept.push(e);
      else if (e?.kind === '.pending') pending.push(e);
    }
    const acked = readdirSync(this.ackedDir)
      .map(parseEntry)
      .filter((e): e is Entry & { kind: string } => e?.kind === '');
    const bySeq = (a: Entry, b: Entry) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0);
    // A kept packet whose marker exists was acknowledged (outbox-apply died before the unlink).
    const ackedNames = new Set(acked.map((a) => a.name));
    return { kept: kept.filter((k) => !ackedNames.has(entryName(k.seq, k.id))).sort(bySeq), pending: pending.sort(bySeq), acked: acked.sort(bySeq) };
  }

  packetPath(e: Entry): string {
    return join(this.packetsDir, e.name);
  }

  /** Where the kept packet of this seq and identity lies. */
  keptPath(seq: bigint, id: string): string {
    return join(this.packetsDir, `${entryName(seq, id)}.fspl`);
  }

  /** The seqfile's next number as it is now, or undefined if it is gone. */
  seqfileNext(): bigint | undefined {
    return new SeqFile(this.config.seqfile).readIfExists();
  }

  /**
   * Under the outbox lock: finish what a killed command left. A `.pending` copy whose number was
   * consumed (the seqfile moved on to the next) is kept; one whose number was not (the seqfile
   * still holds it) is removed: that prepare exited by a signal and its output must be discarded.
   * Every prepare tidies first, so a seqfile further on was moved by something else (a
   * prepare-set-next, an fspl prepare): whether that packet went out is not known, and it is
   * left, neither sent nor removed, for a person. A packet whose acknowledgment marker exists is
   * removed.
   */
  tidy(): void {
    const next = this.seqfileNext();
    let changedPackets = false;
    for (const n of readdirSync(this.packetsDir)) {
      const e = parseEntry(n);
      if (!e) continue;
      const path = join(this.packetsDir, n);
      if (e.kind === '.pending' && next !== undefined && e.seq + 1n < next) {
        const kept = this.keptPath(e.seq, e.id);
        log.warn(
          `outbox ${this.dir}: seq ${e.seq} was left by a prepare that did not finish, and the seqfile has since been moved on to ${next} by other means: ` +
            `whether it was sent is not known; if it was, rename ${path} to ${kept} (it is then re-sent until acknowledged); if not, remove it`,
        );
      } else if (e.kind === '.pending' && next !== undefined && e.seq < next) {
        renameSync(path, this.keptPath(e.seq, e.id));
        log.warn(`outbox ${this.dir}: seq ${e.seq} was published by a prepare that did not finish, after its number was consumed: kept`);
        changedPackets = true;
      } else if (e.kind === '.pending' && next === e.seq) {
        unlinkSync(path);
        log.warn(`outbox ${this.dir}: seq ${e.seq} was left by a prepare that did not finish before consuming its number: removed (its output must be discarded)`);
        changedPackets = true;
      } else if (e.kind === '.fspl' && existsSync(join(this.ackedDir, entryName(e.seq, e.id)))) {
        unlinkSync(path);
        changedPackets = true;
      }
    }
    if (changedPackets) fsyncDir(this.packetsDir);
  }

  readState(): OutboxState | undefined {
    let s: unknown;
    try {
      s = JSON.parse(readRegularFile(this.statePath));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      log.warn(`outbox ${this.dir}: state.json cannot be read (${describe(e)}); the next receipt replaces it`);
      return undefined;
    }
    if (isState(s)) return s;
    log.warn(`outbox ${this.dir}: state.json is not what outbox-apply writes; the next receipt replaces it`);
    return undefined;
  }

  /**
   * Record what the newest receipt said. Called after its acknowledgments are carried out, so
   * a failure here loses nothing: the same receipt applied again writes it.
   */
  writeState(s: OutboxState): void {
    try {
      writeFileDurably(this.statePath, join(this.dir, 'state.json.tmp'), `${JSON.stringify(s)}\n`);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const fix =
        code === 'ENOSPC' || code === 'EDQUOT'
          ? `free some space on its file system`
          : code === 'EISDIR'
            ? `remove the directory ${this.statePath}`
            : code === 'EROFS'
              ? 'mount its file system read-write'
              : `let ${who()} write ${this.dir}`;
      throw new FspoolError(`cannot record the receipt in ${this.statePath}: ${describe(e)}; ${fix}, then apply the receipt again (what it acknowledged is done)`);
    }
  }

  /**
   * Drop the markers of closed blocks: no kept or pending packet in the block, and the stream
   * has a packet beyond it (so no new packet can land in it). A partly acknowledged block keeps
   * its markers, which a receipt's digest over the whole block needs.
   */
  dropClosedMarkers(l: Listing): number {
    const all = [...l.kept, ...l.pending, ...l.acked];
    if (all.length === 0) return 0;
    const highest = all.reduce((m, e) => (e.seq > m ? e.seq : m), 0n);
    const open = new Set([...l.kept, ...l.pending].map((e) => e.seq / BLOCK));
    open.add(highest / BLOCK);
    let dropped = 0;
    for (const a of l.acked) {
      if (open.has(a.seq / BLOCK)) continue;
      rmSync(join(this.ackedDir, a.name), { force: true });
      dropped++;
    }
    if (dropped > 0) fsyncDir(this.ackedDir);
    return dropped;
  }

  /** Begin a prepare --outbox: under the seqfile lock, with `seq` the number it will use. */
  startPrepare(seq: bigint): Promise<PrepareCopy> {
    return PrepareCopy.start(this, seq);
  }
}

function absoluteSeqfile(seqfile: string): string {
  const abs = resolve(seqfile);
  try {
    return realpathSync(abs);
  } catch {
    // Not made yet (prepare creates it): its directory's real path and its name.
    try {
      return join(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

/** A new outbox: outbox.json written durably, by link so that two creators cannot both win. */
function create(dir: string, seqfile: string): void {
  // Resolved first: `a/../b` would make `a`, which is not on the way up from the outbox.
  const made = mkdirSync(resolve(dir), { recursive: true });
  const config: OutboxConfig = { version: 1, stream: crypto().randomBytes(16).toString('hex'), seqfile, created: new Date().toISOString() };
  const tmp = join(dir, `.outbox.json.${process.pid}.tmp`);
  writeSynced(tmp, `${JSON.stringify(config)}\n`);
  try {
    linkSync(tmp, join(dir, 'outbox.json'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new FspoolError(`cannot create outbox ${dir}: ${describe(e)}`);
  } finally {
    unlinkSync(tmp);
  }
  for (const d of ['packets', 'acked', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  fsyncDir(dir);
  // The new directories' names in their parents, up to the first that was there: else a power
  // cut could lose the outbox whose packets were sent. A parent we may write but not read (a
  // drop box) cannot be fsynced, and is left to the file system.
  if (made !== undefined) {
    for (let d = resolve(dir); d !== dirname(d); d = dirname(d)) {
      try {
        fsyncDir(dirname(d));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
      }
      if (d === made) break;
    }
  }
}

/**
 * One prepare's copy of its packet: written to tmp/ while the packet is made, published as
 * `.pending` before the seqfile moves, finalized to `.fspl` after (spec/receipts.md).
 */
export class PrepareCopy {
  private tmp: string | undefined;
  private fd: number | undefined;
  private pending: string | undefined;
  private lock: FileLock | undefined;
  private id = '';

  private constructor(
    private readonly outbox: Outbox,
    readonly seq: bigint,
  ) {}

  static async start(outbox: Outbox, seq: bigint): Promise<PrepareCopy> {
    const lock = await outbox.lock(PREPARE_LOCK_WAIT);
    try {
      outbox.tidy();
      // Only prepare writes tmp/, and prepares on this outbox's one seqfile hold its lock:
      // whatever is there was left by one that died.
      for (const n of readdirSync(outbox.tmpDir)) rmSync(join(outbox.tmpDir, n), { force: true });
      const l = outbox.list();
      const ahead = [...l.kept, ...l.pending, ...l.acked].filter((e) => e.seq >= seq);
      if (ahead.length > 0) {
        const top = ahead.reduce((m, e) => (e.seq > m ? e.seq : m), 0n);
        throw new FspoolError(
          `sequence file ${outbox.config.seqfile} is at ${seq}, but outbox ${outbox.dir} already has seq ${top}: the sequence file was set back; a stream's seqs only grow, so set it to ${top + 1n} (prepare-set-next) or use a new outbox`,
        );
      }
    } finally {
      lock.release();
    }
    return new PrepareCopy(outbox, seq);
  }

  /** Open the temp file the packet is written to, once its identity is known. */
  open(id: string): number {
    this.id = id;
    this.tmp = join(this.outbox.tmpDir, `${entryName(this.seq, id)}.tmp`);
    this.fd = openSync(this.tmp, 'wx', 0o644);
    return this.fd;
  }

  get tmpPath(): string {
    return this.tmp!;
  }

  /** The copy is whole: fsync it and close it. */
  durable(): void {
    fsyncSync(this.fd!);
    closeSync(this.fd!);
    this.fd = undefined;
    crashPoint('outbox-copied');
  }

  /** Before the seqfile moves: take the outbox lock, publish the copy as `.pending`, durably. */
  async publish(): Promise<void> {
    this.lock = await this.outbox.lock(PREPARE_LOCK_WAIT);
    this.pending = join(this.outbox.packetsDir, `${entryName(this.seq, this.id)}.pending`);
    renameSync(this.tmp!, this.pending);
    this.tmp = undefined;
    fsyncDir(this.outbox.packetsDir);
    crashPoint('outbox-pending');
  }

  /** After the seqfile moved: the copy is kept. Releases the lock. */
  finalize(): void {
    try {
      renameSync(this.pending!, this.outbox.keptPath(this.seq, this.id));
      this.pending = undefined;
      fsyncDir(this.outbox.packetsDir);
    } finally {
      this.lock?.release();
      this.lock = undefined;
    }
  }

  /** Leave the `.pending` copy for tidy() to judge by the seqfile; release the lock. */
  leave(): void {
    this.lock?.release();
    this.lock = undefined;
  }

  /** The number was not consumed: no copy. */
  abort(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    for (const p of [this.tmp, this.pending]) if (p) rmSync(p, { force: true });
    this.lock?.release();
    this.lock = undefined;
  }
}
