// The receipt format (spec/receipts.md, "The receipt format"): what a receiver says about one
// stream's packets in its queue, small, versioned and CRC-checked. Pure functions over
// buffers: no I/O here. Packets are named by their identity (src/packet/identity.ts) through
// per-block digests, so that a receipt of a few KB can vouch for thousands of packets.
import { createHash } from '../sys/lazy.js';
import { crc32 } from './crc32.js';
import { U64_MAX } from './header.js';

export const RECEIPT_MAGIC = Buffer.from('*FSPOOL-RCPT', 'latin1');
/**
 * Version 2 added the sizes of plain packets that ran, and the journal's id and position, which
 * order receipts whatever the receiver's clock; version 1 receipts are still read.
 */
export const RECEIPT_VERSION = 2;
export const RECEIPT_PREFIX_LEN = 26;
/** Bound on the body: a real receipt is a few KB; nothing larger is ever allocated. */
export const MAX_RECEIPT_BODY = 1 << 20;
/** Seqs per block (the mask is a u64). */
export const BLOCK = 64n;
export const MAX_FAILURES = 64;
/** The stream id of a receipt whose queue knows no stream. */
export const NO_STREAM = '0'.repeat(32);

/** A receipt that cannot be read. The message is one line, fit for the user. */
export class ReceiptError extends Error {
  override name = 'ReceiptError';
}

export type Section = 'P' | 'H';

export interface ReceiptBlock {
  /** Block k covers seqs 64k .. 64k+63. */
  index: bigint;
  /** Bit i set: seq 64k+i is listed. */
  mask: bigint;
  digest: Buffer;
}

/** Outcomes a failure can carry, by their code in the format (0: any other). */
export const FAILURE_OUTCOMES = ['other', 'exit-code', 'signal', 'timeout', 'decoder-failure', 'early-exit', 'fail-packet', 'bad-packet', 'error'] as const;
export type FailureOutcome = (typeof FAILURE_OUTCOMES)[number];
/** What became of a failed job: none = it is still held and runs again. */
export const FAILURE_ACTIONS = ['none', 'delete', 'keep', 'quarantine'] as const;
export type FailureAction = (typeof FAILURE_ACTIONS)[number];

export interface ReceiptFailure {
  seq: bigint;
  /** The packet's identity, 32 hex digits. */
  packet: string;
  outcome: FailureOutcome;
  action: FailureAction;
  exitCode: number | null;
  endedAt: number;
}

export interface Receipt {
  /** 32 hex digits; NO_STREAM when the queue knows none. */
  stream: string;
  /** Milliseconds since the epoch, receiver's clock. */
  created: number;
  nextSeq: bigint;
  /** Processed facts are complete for seqs >= windowStart. */
  windowStart: bigint;
  /** Held facts are complete for nextSeq <= seq < heldEnd. */
  heldEnd: bigint;
  /** The stream has packets held at seqs >= heldEnd, not described. */
  heldBeyond: boolean;
  unreadable: number;
  ambiguous: number;
  processed: ReceiptBlock[];
  held: ReceiptBlock[];
  failures: ReceiptFailure[];
  /**
   * Processed seqs whose packet ran as a plain packet (no decoding layer), with the size of
   * its job file then. Empty in a version-1 receipt: sizes not measured.
   */
  sizes: Map<bigint, number>;
  /**
   * The receiver's journal: its id (32 hex digits, made with its state database) and its
   * position (the write transactions it has had), which only grows. Of two receipts of one
   * journal, the one at the further position describes the later queue. NO_STREAM's zeros as
   * the id: none (no journal, or a version-1 receipt).
   */
  journal: string;
  position: bigint;
}

const FULL = (1n << BLOCK) - 1n;
const MAX_INDEX = 1n << 58n;
const DOMAIN = Buffer.from('fspool-receipt-block', 'latin1');

const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};

/** The listed seqs of a block, in increasing order. */
export function seqsOf(b: Pick<ReceiptBlock, 'index' | 'mask'>): bigint[] {
  const out: bigint[] = [];
  for (let i = 0n; i < BLOCK; i++) if ((b.mask >> i) & 1n) out.push(b.index * BLOCK + i);
  return out;
}

/** The digest of a block: over its section, stream, index, mask and listed identities in seq order. */
export function blockDigest(section: Section, stream: string, index: bigint, mask: bigint, ids: string[]): Buffer {
  const h = createHash('sha256');
  h.update(DOMAIN);
  h.update(Buffer.from(section, 'latin1'));
  h.update(Buffer.from(stream, 'hex'));
  h.update(u64(index));
  h.update(u64(mask));
  for (const id of ids) h.update(Buffer.from(id, 'hex'));
  return h.digest().subarray(0, 16);
}

/** Blocks listing these seqs with their identities (seq -> 32 hex digits). */
export function blocksOf(section: Section, stream: string, ids: Map<bigint, string>): ReceiptBlock[] {
  const byBlock = new Map<bigint, bigint[]>();
  for (const seq of ids.keys()) {
    const k = seq / BLOCK;
    const list = byBlock.get(k);
    if (list) list.push(seq);
    else byBlock.set(k, [seq]);
  }
  return [...byBlock.keys()]
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((index) => {
      const seqs = byBlock.get(index)!.sort((a, b) => (a < b ? -1 : 1));
      const mask = seqs.reduce((m, s) => m | (1n << (s - index * BLOCK)), 0n);
      return { index, mask, digest: blockDigest(section, stream, index, mask, seqs.map((s) => ids.get(s)!)) };
    });
}

// ---- Writing ----

function uleb(n: bigint): Buffer {
  const out: number[] = [];
  do {
    let byte = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) byte |= 0x80;
    out.push(byte);
  } while (n > 0n);
  return Buffer.from(out);
}

function blockList(blocks: ReceiptBlock[]): Buffer[] {
  const parts = [uleb(BigInt(blocks.length))];
  let prev = -1n;
  for (const b of blocks) {
    if (b.index <= prev) throw new ReceiptError('receipt blocks must be in increasing order');
    parts.push(uleb(b.index - prev - 1n));
    prev = b.index;
    if (b.mask === FULL) parts.push(Buffer.from([0]));
    else parts.push(Buffer.from([1]), u64(b.mask));
    parts.push(b.digest);
  }
  return parts;
}

/** The sizes section: a count, then each seq (the first as it is, then less the previous one's, less 1) and its size. */
function sizeList(sizes: Map<bigint, number>): Buffer[] {
  const seqs = [...sizes.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts = [uleb(BigInt(seqs.length))];
  let prev = -1n;
  for (const seq of seqs) {
    const size = sizes.get(seq)!;
    if (!Number.isSafeInteger(size) || size <= 0) throw new ReceiptError(`a receipt's size of seq ${seq} must be a positive integer, not ${size}`);
    parts.push(uleb(seq - prev - 1n), uleb(BigInt(size)));
    prev = seq;
  }
  return parts;
}

export function encodeReceipt(r: Receipt): Buffer {
  if (r.failures.length > MAX_FAILURES) throw new ReceiptError(`a receipt carries at most ${MAX_FAILURES} failures`);
  const head = Buffer.alloc(16 + 8 * 4 + 1 + 4 + 4);
  Buffer.from(r.stream, 'hex').copy(head, 0);
  head.writeBigUInt64BE(BigInt(r.created), 16);
  head.writeBigUInt64BE(r.nextSeq, 24);
  head.writeBigUInt64BE(r.windowStart, 32);
  head.writeBigUInt64BE(r.heldEnd, 40);
  head.writeUInt8(r.heldBeyond ? 1 : 0, 48);
  head.writeUInt32BE(r.unreadable, 49);
  head.writeUInt32BE(r.ambiguous, 53);
  const failures = Buffer.alloc(2 + 36 * r.failures.length);
  failures.writeUInt16BE(r.failures.length, 0);
  r.failures.forEach((f, i) => {
    const o = 2 + 36 * i;
    failures.writeBigUInt64BE(f.seq, o);
    Buffer.from(f.packet, 'hex').copy(failures, o + 8);
    failures.writeUInt8(FAILURE_OUTCOMES.indexOf(f.outcome), o + 24);
    failures.writeUInt8(FAILURE_ACTIONS.indexOf(f.action), o + 25);
    failures.writeInt16BE(f.exitCode === null ? -1 : Math.max(-1, Math.min(32767, f.exitCode)), o + 26);
    failures.writeBigUInt64BE(BigInt(f.endedAt), o + 28);
  });
  const journal = Buffer.alloc(24);
  Buffer.from(r.journal, 'hex').copy(journal, 0);
  journal.writeBigUInt64BE(r.position, 16);
  const body = Buffer.concat([head, ...blockList(r.processed), ...blockList(r.held), failures, ...sizeList(r.sizes), journal]);
  const prefix = Buffer.alloc(RECEIPT_PREFIX_LEN);
  RECEIPT_MAGIC.copy(prefix, 0);
  prefix.writeUInt16BE(RECEIPT_VERSION, 12);
  prefix.writeUInt32BE(body.length, 14);
  prefix.writeUInt32BE(crc32(body), 18);
  prefix.writeUInt32BE(crc32(prefix.subarray(0, 22)), 22);
  return Buffer.concat([prefix, body]);
}

// ---- Reading (hostile input: every length is checked against the bytes left) ----

class Reader {
  pos = 0;
  constructor(private readonly b: Buffer) {}

  need(n: number, what: string): void {
    if (this.pos + n > this.b.length) throw new ReceiptError(`receipt is truncated (in ${what})`);
  }

  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u8(what: string): number {
    return this.bytes(1, what)[0]!;
  }

  u64(what: string): bigint {
    return this.bytes(8, what).readBigUInt64BE();
  }

  uleb(what: string): bigint {
    let n = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const byte = this.u8(what);
      n |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) {
        if (n > U64_MAX) break;
        return n;
      }
    }
    throw new ReceiptError(`receipt has an oversized number (in ${what})`);
  }

  get left(): number {
    return this.b.length - this.pos;
  }
}

function readBlocks(r: Reader, what: string): ReceiptBlock[] {
  const n = r.uleb(what);
  // Every block takes at least 18 bytes: a count beyond what is left is a lie, refused before
  // anything is allocated for it.
  if (n > BigInt(Math.floor(r.left / 18))) throw new ReceiptError(`receipt claims ${n} ${what} blocks, more than it has bytes for`);
  const out: ReceiptBlock[] = [];
  let prev = -1n;
  for (let i = 0n; i < n; i++) {
    const index = prev + 1n + r.uleb(what);
    if (index >= MAX_INDEX) throw new ReceiptError(`receipt has a ${what} block beyond the largest sequence number`);
    const form = r.u8(what);
    let mask: bigint;
    if (form === 0) mask = FULL;
    else if (form === 1) mask = r.u64(what);
    else throw new ReceiptError(`receipt has a ${what} block of unknown form ${form}`);
    if (mask === 0n) throw new ReceiptError(`receipt has an empty ${what} block`);
    out.push({ index, mask, digest: Buffer.from(r.bytes(16, what)) });
    prev = index;
  }
  return out;
}

/** Check the 26-byte prefix; returns the body's length, its CRC and the format's version. */
function parseReceiptPrefix(b: Buffer): { length: number; crc: number; version: number } {
  if (b.length < RECEIPT_PREFIX_LEN) {
    if (!RECEIPT_MAGIC.subarray(0, b.length).equals(b.subarray(0, RECEIPT_MAGIC.length))) throw new ReceiptError('not an fspool receipt (bad magic)');
    throw new ReceiptError(`truncated receipt: ${b.length} of ${RECEIPT_PREFIX_LEN} prefix bytes`);
  }
  if (!b.subarray(0, 12).equals(RECEIPT_MAGIC)) throw new ReceiptError('not an fspool receipt (bad magic)');
  const version = b.readUInt16BE(12);
  if (version !== 1 && version !== RECEIPT_VERSION) throw new ReceiptError(`unsupported receipt version ${version} (this fspool reads 1 to ${RECEIPT_VERSION})`);
  if (crc32(b.subarray(0, 22)) !== b.readUInt32BE(22)) throw new ReceiptError('receipt prefix CRC mismatch');
  const length = b.readUInt32BE(14);
  if (length > MAX_RECEIPT_BODY) throw new ReceiptError(`receipt body of ${length} bytes exceeds the limit of ${MAX_RECEIPT_BODY}`);
  return { length, crc: b.readUInt32BE(18), version };
}

function readSizes(r: Reader): Map<bigint, number> {
  const n = r.uleb('sizes');
  // Every entry takes at least 2 bytes.
  if (n > BigInt(Math.floor(r.left / 2))) throw new ReceiptError(`receipt claims ${n} sizes, more than it has bytes for`);
  const sizes = new Map<bigint, number>();
  let prev = -1n;
  for (let i = 0n; i < n; i++) {
    const seq = prev + 1n + r.uleb('sizes');
    if (seq > U64_MAX) throw new ReceiptError('receipt has a size beyond the largest sequence number');
    const size = r.uleb('sizes');
    if (size === 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) throw new ReceiptError(`receipt has a size of ${size} bytes for seq ${seq}`);
    sizes.set(seq, Number(size));
    prev = seq;
  }
  return sizes;
}

export function decodeReceipt(b: Buffer): Receipt {
  const { length, crc, version } = parseReceiptPrefix(b);
  if (b.length !== RECEIPT_PREFIX_LEN + length) {
    throw new ReceiptError(`receipt is ${b.length} bytes, its prefix says ${RECEIPT_PREFIX_LEN + length}${b.length < RECEIPT_PREFIX_LEN + length ? ' (truncated)' : ''}`);
  }
  const body = b.subarray(RECEIPT_PREFIX_LEN);
  if (crc32(body) !== crc) throw new ReceiptError('receipt CRC mismatch');
  const r = new Reader(body);
  const stream = r.bytes(16, 'header').toString('hex');
  const created = r.u64('header');
  if (created > BigInt(Number.MAX_SAFE_INTEGER)) throw new ReceiptError('receipt creation time out of range');
  const nextSeq = r.u64('header');
  const windowStart = r.u64('header');
  const heldEnd = r.u64('header');
  if (windowStart > nextSeq || heldEnd < nextSeq) throw new ReceiptError(`receipt ranges are inconsistent (window from ${windowStart}, next seq ${nextSeq}, held facts to ${heldEnd})`);
  const flags = r.u8('header');
  if (flags > 1) throw new ReceiptError(`receipt has unknown flags ${flags}`);
  const unreadable = r.bytes(4, 'header').readUInt32BE();
  const ambiguous = r.bytes(4, 'header').readUInt32BE();
  const processed = readBlocks(r, 'processed');
  const held = readBlocks(r, 'held');
  const nf = r.bytes(2, 'failures').readUInt16BE();
  if (nf > MAX_FAILURES) throw new ReceiptError(`receipt carries ${nf} failures, more than ${MAX_FAILURES}`);
  const failures: ReceiptFailure[] = [];
  for (let i = 0; i < nf; i++) {
    const f = r.bytes(36, 'failures');
    const outcome = FAILURE_OUTCOMES[f[24]!] ?? 'other';
    const action = FAILURE_ACTIONS[f[25]!];
    if (action === undefined) throw new ReceiptError(`receipt failure has an unknown action ${f[25]}`);
    const exit = f.readInt16BE(26);
    const ended = f.readBigUInt64BE(28);
    failures.push({
      seq: f.readBigUInt64BE(0),
      packet: f.subarray(8, 24).toString('hex'),
      outcome,
      action,
      exitCode: exit < 0 ? null : exit,
      endedAt: ended > BigInt(Number.MAX_SAFE_INTEGER) ? 0 : Number(ended),
    });
  }
  const sizes = version >= 2 ? readSizes(r) : new Map<bigint, number>();
  const journal = version >= 2 ? r.bytes(16, 'journal').toString('hex') : NO_STREAM;
  const position = version >= 2 ? r.u64('journal') : 0n;
  if (r.left !== 0) throw new ReceiptError(`receipt has ${r.left} unexpected bytes at its end`);
  return { stream, created: Number(created), nextSeq, windowStart, heldEnd, heldBeyond: flags === 1, unreadable, ambiguous, processed, held, failures, sizes, journal, position };
}
