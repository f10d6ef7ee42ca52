// Receipts and the outbox (spec/receipts.md): the receipt format (round trips, hostile input,
// sizes), the stream key against the real fspl, and the commands on real queues and outboxes:
// identity (another stream, other packets with the same seqs), order (twice, older after
// newer), failures, signatures, the outbox's binding to one seqfile.
import { randomUUID } from 'node:crypto';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { crc32, gzipSync } from 'node:zlib';
import { Decoder } from '@msgpack/msgpack';
import Database from 'better-sqlite3';
import * as openpgp from 'openpgp';
import { readToEnd } from '@openpgp/web-stream-tools';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeHeader, encodeHeader, PREFIX_LEN } from '../src/packet/codec.js';
import type { Header } from '../src/packet/header.js';
import { blockDigest, blocksOf, decodeReceipt, encodeReceipt, NO_STREAM, type Receipt, ReceiptError, seqsOf } from '../src/packet/receipt.js';
import { asNobody, FSPOOL, fspl, fspool, makeQueue, type Result, runAsync, runSync, tempDir } from './helpers/cli.js';
import { groupAlive, waitFor, within } from './helpers/queue.js';

const STREAM = 'a1'.repeat(16);
const id = (n: number) => n.toString(16).padStart(32, '0');

function receipt(over: Partial<Receipt> = {}): Receipt {
  return { stream: STREAM, created: 1_700_000_000_000, nextSeq: 1n, windowStart: 0n, heldEnd: 16385n, heldBeyond: false, unreadable: 0, ambiguous: 0, processed: [], held: [], failures: [], sizes: new Map(), journal: NO_STREAM, position: 0n, ...over };
}

const seqIds = (from: number, to: number, skip: (s: number) => boolean = () => false) =>
  new Map(Array.from({ length: to - from + 1 }, (_, i) => from + i).filter((s) => !skip(s)).map((s) => [BigInt(s), id(s)] as const));

describe('the receipt format', () => {
  it('round-trips, with full and partial blocks, failures and the flags', () => {
    const r = receipt({
      nextSeq: 200n,
      windowStart: 64n,
      heldEnd: 200n + 16384n,
      heldBeyond: true,
      unreadable: 3,
      ambiguous: 1,
      processed: blocksOf('P', STREAM, seqIds(64, 199)),
      held: blocksOf('H', STREAM, seqIds(201, 300, (s) => s % 7 === 0)),
      failures: [{ seq: 150n, packet: id(150), outcome: 'exit-code', action: 'quarantine', exitCode: 3, endedAt: 1_700_000_000_123 }],
      sizes: new Map([
        [64n, 85],
        [65n, 2 ** 40 + 3],
        [199n, Number.MAX_SAFE_INTEGER],
      ]),
    });
    const bytes = encodeReceipt(r);
    expect(decodeReceipt(bytes)).toEqual(r);
    expect(bytes.subarray(0, 12).toString('latin1')).toBe('*FSPOOL-RCPT');
    expect(seqsOf(r.processed[1]!)).toEqual(Array.from({ length: 64 }, (_, i) => BigInt(128 + i)));
  });

  it('an empty receipt is 112 bytes; a block 18 bytes, 26 with a mask; a size 2 to 4 bytes for most', () => {
    expect(encodeReceipt(receipt()).length).toBe(112);
    expect(encodeReceipt(receipt({ held: blocksOf('H', STREAM, seqIds(64, 127)) })).length).toBe(112 + 18);
    expect(encodeReceipt(receipt({ held: blocksOf('H', STREAM, seqIds(64, 100)) })).length).toBe(112 + 26);
    const sizes = (m: Array<[bigint, number]>) => encodeReceipt(receipt({ sizes: new Map(m) })).length - 112;
    expect(sizes([[5n, 100]])).toBe(2);
    expect(sizes([[5n, 100], [6n, 1 << 20]])).toBe(2 + 4);
    expect(() => encodeReceipt(receipt({ sizes: new Map([[5n, 0]]) }))).toThrow(/positive integer/);
  });

  it('reads a version-1 receipt (no sizes: not measured; no journal)', () => {
    const r = receipt({ nextSeq: 70n, processed: blocksOf('P', STREAM, seqIds(1, 69)) });
    const v2 = encodeReceipt(r);
    // Version 1 is version 2 without the sizes (here one byte: a count of 0) and the journal.
    const body = v2.subarray(26, v2.length - 25);
    const prefix = Buffer.from(v2.subarray(0, 26));
    prefix.writeUInt16BE(1, 12);
    prefix.writeUInt32BE(body.length, 14);
    prefix.writeUInt32BE(crc32(body), 18);
    prefix.writeUInt32BE(crc32(prefix.subarray(0, 22)), 22);
    expect(decodeReceipt(Buffer.concat([prefix, body]))).toEqual(r);
    // The same bytes claiming version 2 lack the sizes section.
    prefix.writeUInt16BE(2, 12);
    prefix.writeUInt32BE(crc32(prefix.subarray(0, 22)), 22);
    expect(() => decodeReceipt(Buffer.concat([prefix, body]))).toThrow(/truncated \(in sizes\)/);
    const journal = receipt({ journal: 'c3'.repeat(16), position: 2n ** 64n - 1n });
    expect(decodeReceipt(encodeReceipt(journal))).toEqual(journal);
  });

  it('10,000 held jobs give a receipt of a few KB (the figure in spec/receipts.md)', () => {
    const held = blocksOf('H', STREAM, seqIds(4097, 14096));
    const alone = encodeReceipt(receipt({ nextSeq: 4097n, windowStart: 0n, held })).length;
    const withWindow = encodeReceipt(receipt({ nextSeq: 4097n, windowStart: 0n, held, processed: blocksOf('P', STREAM, seqIds(1, 4096)) })).length;
    expect(held).toHaveLength(157);
    expect(alone).toBe(2955);
    expect(withWindow).toBe(4141);
  });

  it('a digest binds the section, the stream, the block and every identity', () => {
    const ids = [id(1), id(2)];
    const d = blockDigest('P', STREAM, 0n, 0b110n, ids);
    expect(blockDigest('H', STREAM, 0n, 0b110n, ids)).not.toEqual(d);
    expect(blockDigest('P', 'b2'.repeat(16), 0n, 0b110n, ids)).not.toEqual(d);
    expect(blockDigest('P', STREAM, 1n, 0b110n, ids)).not.toEqual(d);
    expect(blockDigest('P', STREAM, 0n, 0b101n, ids)).not.toEqual(d);
    expect(blockDigest('P', STREAM, 0n, 0b110n, [id(1), id(3)])).not.toEqual(d);
    expect(d).toHaveLength(16);
  });

  it('refuses every truncation, every flipped byte and a lying block count with one line', () => {
    const bytes = encodeReceipt(receipt({ nextSeq: 70n, processed: blocksOf('P', STREAM, seqIds(1, 69)), failures: [{ seq: 3n, packet: id(3), outcome: 'timeout', action: 'delete', exitCode: null, endedAt: 5 }] }));
    for (let n = 0; n < bytes.length; n++) expect(() => decodeReceipt(bytes.subarray(0, n)), `truncated at ${n}`).toThrow(ReceiptError);
    for (let i = 0; i < bytes.length; i++) {
      const b = Buffer.from(bytes);
      b[i]! ^= 0x40;
      expect(() => decodeReceipt(b), `byte ${i} flipped`).toThrow(ReceiptError);
    }
    expect(() => decodeReceipt(Buffer.concat([bytes, Buffer.from([0])]))).toThrow(/prefix says/);
    // A body with a valid CRC that claims 2^40 blocks: refused before anything is allocated.
    const body = Buffer.concat([encodeReceipt(receipt()).subarray(26, 26 + 57), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x20]), Buffer.alloc(40)]);
    const prefix = Buffer.alloc(26);
    Buffer.from('*FSPOOL-RCPT').copy(prefix);
    prefix.writeUInt16BE(1, 12);
    prefix.writeUInt32BE(body.length, 14);
    prefix.writeUInt32BE(crc32(body), 18);
    prefix.writeUInt32BE(crc32(prefix.subarray(0, 22)), 22);
    expect(() => decodeReceipt(Buffer.concat([prefix, body]))).toThrow(/more than it has bytes for/);
    const v3 = Buffer.from(bytes);
    v3.writeUInt16BE(3, 12);
    v3.writeUInt32BE(crc32(v3.subarray(0, 22)), 22);
    expect(() => decodeReceipt(v3)).toThrow(/unsupported receipt version 3 \(this fspool reads 1 to 2\)/);
    // Sizes: a lying count, a zero size, seqs beyond u64.
    const withSizes = (tail: number[]) => {
      const b = Buffer.concat([encodeReceipt(receipt()).subarray(26, -25), Buffer.from(tail), Buffer.alloc(24)]);
      const p = Buffer.alloc(26);
      Buffer.from('*FSPOOL-RCPT').copy(p);
      p.writeUInt16BE(2, 12);
      p.writeUInt32BE(b.length, 14);
      p.writeUInt32BE(crc32(b), 18);
      p.writeUInt32BE(crc32(p.subarray(0, 22)), 22);
      return Buffer.concat([p, b]);
    };
    expect(decodeReceipt(withSizes([1, 4, 85])).sizes).toEqual(new Map([[4n, 85]]));
    expect(() => decodeReceipt(withSizes([0x80, 0x80, 0x80, 0x80, 0x20, 1, 1]))).toThrow(/more than it has bytes for/);
    expect(() => decodeReceipt(withSizes([1, 4, 0]))).toThrow(/a size of 0 bytes for seq 4/);
    const maxSeq = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    expect(() => decodeReceipt(withSizes([2, ...maxSeq, 5, 0, 5]))).toThrow(/beyond the largest sequence number/);
  });
});

describe('the stream key in packets', () => {
  const header: Header = { seq: 5n, ctimeSecs: 1_700_000_000n, ctimeNanos: 7, cmd: { kind: 'Command', params: [], env: [] } };

  it('is a fourth metadata key when set, and absent (fspl bytes) otherwise', () => {
    const plain = encodeHeader(header);
    const keys = (b: Buffer) => Object.keys(new Decoder().decode(b.subarray(PREFIX_LEN)) as object);
    expect(keys(plain)).toEqual(['seq', 'ctime', 'cmd_type']);
    const withStream = encodeHeader({ ...header, stream: STREAM });
    expect(keys(withStream)).toEqual(['seq', 'ctime', 'cmd_type', 'fspool_stream']);
    expect(decodeHeader(withStream).header.stream).toBe(STREAM);
    expect(decodeHeader(plain).header.stream).toBeUndefined();
  });

  it('prepare without --outbox writes fspl\'s three keys; with it, the real fspl still reads and runs the packet', () => {
    const dir = tempDir('fspool-rcpt-');
    const plain = fspool(['prepare', '-s', join(dir, 'a.seq'), '-i', '-', '--', 'x'], { input: 'one' });
    expect(plain.code, plain.stderr).toBe(0);
    const fsplMade = fspl(['prepare', '-s', join(dir, 'b.seq'), '-i', '-', '--', 'x'], { input: 'one' });
    const meta = (b: Buffer) => b.subarray(PREFIX_LEN, PREFIX_LEN + Number(b.readBigUInt64BE(14)));
    // Same keys, same lengths: only the creation time differs.
    expect(meta(plain.stdout).length).toBe(meta(fsplMade.stdout).length);
    expect(Object.keys(new Decoder().decode(meta(plain.stdout)) as object)).toEqual(['seq', 'ctime', 'cmd_type']);

    const out = fspool(['prepare', '-s', join(dir, 'c.seq'), '-i', '-', '--outbox', join(dir, 'ob'), '--', 'p1'], { input: 'payload\n' });
    expect(out.code, out.stderr).toBe(0);
    const stream = JSON.parse(readFileSync(join(dir, 'ob', 'outbox.json'), 'utf8')).stream as string;
    expect((new Decoder().decode(meta(out.stdout)) as Record<string, unknown>).fspool_stream).toBe(stream);
    const info = fspl(['stdin-info'], { input: out.stdout });
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout.toString()).toContain('FSPL_SEQ=1');
    expect(info.stdout.toString()).toContain('FSPL_PARAM_1=p1');
    const q = makeQueue(dir);
    writeFileSync(join(q, 'jobs', `fspl-${randomUUID()}.fspl`), out.stdout);
    const ls = fspl(['queue-ls', '-q', q]);
    expect(ls.code, ls.stderr).toBe(0);
    const ran = fspl(['queue-process', '-q', q, 'sh', '--', '-c', 'cat; echo "seq $FSPL_SEQ"']);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout.toString()).toBe('payload\nseq 1\n');
    expect(readFileSync(join(q, 'nextseq'), 'utf8')).toBe('2\n');
  });
});

// ---------------------------------------------------------------------------------------------
// The commands

interface Side {
  dir: string;
  q: string;
  ob: string;
  seq: string;
  log: string;
}

function side(prefix = 'fspool-rcpt-'): Side {
  const dir = tempDir(prefix);
  return { dir, q: makeQueue(dir), ob: join(dir, 'outbox'), seq: join(dir, 'sender.seq'), log: join(dir, 'log') };
}

function ok(args: string[], input?: string | Buffer, env?: NodeJS.ProcessEnv): Result {
  const r = fspool(args, { input, env: env && { ...process.env, ...env } });
  expect(r.code, `fspool ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

/** prepare --outbox; returns the packet. */
const send = (s: Side, payload: string, extra: string[] = []) => ok(['prepare', '-s', s.seq, '-i', '-', '--outbox', s.ob, ...extra], payload).stdout;

function deliver(s: Side, packet: Buffer): void {
  const name = `fspl-${randomUUID()}.fspl`;
  writeFileSync(join(s.q, 'jobs', `.${name}.part`), packet);
  renameSync(join(s.q, 'jobs', `.${name}.part`), join(s.q, 'jobs', name));
}

const RECORD = 'printf "%s:%s\\n" "$FSPL_SEQ" "$(cat)" >> "$0"';
const processQ = (s: Side, script = RECORD, extra: string[] = []) => fspool(['queue-process', '-q', s.q, ...extra, 'sh', '--', '-c', script, s.log]);
const receiptOf = (s: Side, extra: string[] = []) => ok(['queue-receipt', '-q', s.q, ...extra]).stdout;
const apply = (s: Side, r: Buffer, extra: string[] = []) => fspool(['outbox-apply', '--outbox', s.ob, ...extra], { input: r });
const status = (s: Side) => JSON.parse(fspool(['outbox-status', '--outbox', s.ob, '--json']).stdout.toString());
const kept = (s: Side) => readdirSync(join(s.ob, 'packets')).filter((n) => n.endsWith('.fspl')).map((n) => Number(n.slice(0, 20)));
const logOf = (s: Side) => (existsSync(s.log) ? readFileSync(s.log, 'utf8') : '');

describe('outbox-apply', () => {
  it('prunes exactly what ran, records what is held and missing; applying twice changes nothing', () => {
    const s = side();
    const p = [1, 2, 3, 4, 5].map((i) => send(s, `p${i}`));
    for (const i of [0, 1, 3]) deliver(s, p[i]!);
    expect(processQ(s).code).toBe(0);
    expect(logOf(s)).toBe('1:p1\n2:p2\n');
    const r = receiptOf(s);
    expect(apply(s, r).code).toBe(0);
    expect(kept(s)).toEqual([3, 4, 5]);
    const st = status(s);
    expect(st).toMatchObject({ unacked: 3, held: 1, missing: 2, lowest_seq: 3, highest_seq: 5 });
    expect(st.last_receipt.next_seq).toBe(3);
    const again = apply(s, r);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('acknowledged 0 packet(s)');
    expect(status(s)).toMatchObject({ unacked: 3, held: 1, missing: 2 });

    // outbox-resend sends 3 and 5, not 4 (held).
    const wire = join(s.dir, 'wire');
    mkdirSync(wire);
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', wire]);
    const sent = readdirSync(wire).sort();
    expect(sent).toHaveLength(2);
    expect(sent.every((n) => /^fspl-[0-9a-f]{32}\.fspl$/.test(n))).toBe(true);
    const seqsSent = sent.map((n) => decodeHeader(readFileSync(join(wire, n))).header.seq).sort();
    expect(seqsSent).toEqual([3n, 5n]);
    // Again: the files are still there, nothing is written twice.
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', wire]);
    expect(readdirSync(wire)).toHaveLength(2);
    for (const n of sent) renameSync(join(wire, n), join(s.q, 'jobs', n));
    expect(processQ(s).code).toBe(0);
    expect(logOf(s)).toBe('1:p1\n2:p2\n3:p3\n4:p4\n5:p5\n');
    expect(apply(s, receiptOf(s)).code).toBe(0);
    expect(kept(s)).toEqual([]);
    expect(status(s).unacked).toBe(0);
  });

  it('an older receipt after a newer one prunes what it proves and takes none of its other facts', () => {
    const s = side();
    const p = [1, 2, 3].map((i) => send(s, `p${i}`));
    deliver(s, p[1]!);
    deliver(s, p[2]!);
    expect(processQ(s).code).toBe(0);
    const old = receiptOf(s); // holds 2 and 3, waits for 1
    deliver(s, p[0]!);
    expect(processQ(s).code).toBe(0);
    const newer = receiptOf(s);
    expect(apply(s, newer).code).toBe(0);
    expect(kept(s)).toEqual([]);
    const r = apply(s, old);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('an older receipt');
    expect(kept(s)).toEqual([]);
    expect(status(s).last_receipt.next_seq).toBe(4);

    // Older first, then newer, in the other outbox order: the same end.
    const t = side();
    const q = [1, 2].map((i) => send(t, `q${i}`));
    deliver(t, q[1]!);
    expect(processQ(t).code).toBe(0);
    const held = receiptOf(t);
    deliver(t, q[0]!);
    expect(processQ(t).code).toBe(0);
    const done = receiptOf(t);
    expect(apply(t, held).code).toBe(0);
    expect(status(t)).toMatchObject({ unacked: 2, held: 1, missing: 1 });
    expect(apply(t, done).code).toBe(0);
    expect(status(t)).toMatchObject({ unacked: 0, held: 0, missing: 0 });
  });

  it("a receipt from another stream's queue is refused; one about other packets with the same seqs prunes nothing", () => {
    const a = side();
    const b = side();
    for (let i = 1; i <= 3; i++) deliver(a, send(a, `a${i}`));
    for (let i = 1; i <= 3; i++) send(b, `b${i}`);
    expect(processQ(a).code).toBe(0);
    const r = apply(b, receiptOf(a));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: the receipt is about stream [0-9a-f]{32}, and outbox .* sends stream [0-9a-f]{32}: nothing applied/m);
    expect(kept(b)).toEqual([1, 2, 3]);

    // A clone of an outbox (same stream id, its own seqfile copy) makes other packets with the
    // same seqs: the receiver ran the original's, and the clone's are kept and shown as passed.
    const c = side();
    send(c, 'c0');
    cpSync(c.ob, join(c.dir, 'clone'), { recursive: true });
    cpSync(c.seq, join(c.dir, 'clone.seq'));
    const clone: Side = { ...c, ob: join(c.dir, 'clone'), seq: join(c.dir, 'clone.seq') };
    writeFileSync(join(clone.ob, 'outbox.json'), readFileSync(join(clone.ob, 'outbox.json'), 'utf8').replace(c.seq, clone.seq));
    const mine = [2, 3].map((i) => send(c, `c${i}`));
    [2, 3].forEach((i) => send(clone, `other${i}`));
    for (const p of mine) deliver(c, p);
    deliver(c, readFileSync(join(c.ob, 'packets', readdirSync(join(c.ob, 'packets')).sort()[0]!)));
    expect(processQ(c).code).toBe(0);
    expect(logOf(c)).toBe('1:c0\n2:c2\n3:c3\n');
    const rc = receiptOf(c);
    const onClone = apply(clone, rc);
    expect(onClone.code).toBe(0);
    expect(onClone.stderr).toContain('the receiver processed other packets than this outbox');
    // Seq 1 is the same packet in both (made before the split), but a block is checked whole:
    // its digest cannot match, so nothing in it is pruned (a delay, never a loss).
    expect(kept(clone)).toEqual([1, 2, 3]);
    expect(status(clone).passed).toEqual([{ from: 1, to: 3 }]);
    expect(status(clone).conflicts).toEqual([{ from: 1, to: 3 }]);
    const wire = join(c.dir, 'wire');
    mkdirSync(wire);
    ok(['outbox-resend', '--outbox', clone.ob, '--to-dir', wire]);
    expect(readdirSync(wire)).toEqual([]); // passed packets are not re-sent
    expect(apply(c, rc).code).toBe(0);
    expect(kept(c)).toEqual([]);
  });

  it("another queue's receipt that knows no stream stops no re-send; one stamped ahead of the clock holds back a genuine one's facts for minutes, not a day; inconsistent ranges are refused", () => {
    const s = side();
    for (let i = 1; i <= 3; i++) send(s, `p${i}`);
    const other = makeQueue(tempDir());
    ok(['queue-set-next', '-q', other, '100']);
    const foreign = ok(['queue-receipt', '-q', other]).stdout;
    expect(decodeReceipt(foreign).stream).toBe(NO_STREAM);
    expect(apply(s, foreign).code).toBe(0);
    expect(status(s).passed).toEqual([]);
    const wire = join(s.dir, 'wire');
    mkdirSync(wire);
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', wire]);
    expect(readdirSync(wire)).toHaveLength(3);

    // Stamped 20 minutes ahead (a forgery, or a receiver's clock far off): the genuine receipt
    // that follows is taken all the same; one 5 minutes ahead still orders the ones after it.
    const stream = status(s).stream as string;
    const at = (created: number, nextSeq: bigint) => encodeReceipt(receipt({ stream, created, nextSeq, windowStart: 0n, heldEnd: nextSeq + 16384n, heldBeyond: true }));
    expect(apply(s, at(Date.now() + 20 * 60_000, 1n)).code).toBe(0);
    expect(status(s).last_receipt.next_seq).toBe(1);
    expect(apply(s, at(Date.now(), 2n)).code).toBe(0);
    expect(status(s).last_receipt.next_seq).toBe(2);
    expect(apply(s, at(Date.now() + 5 * 60_000, 3n)).code).toBe(0);
    const older = apply(s, at(Date.now(), 1n));
    expect(older.code).toBe(0);
    expect(status(s).last_receipt.next_seq).toBe(3);

    const bad = apply(s, encodeReceipt(receipt({ stream, nextSeq: 10n, windowStart: 0n, heldEnd: 5n })));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^Error: .*receipt ranges are inconsistent \(window from 0, next seq 10, held facts to 5\)/);
  });

  it('a state.json of another shape (edited, damaged, a FIFO) is no state: one WARN, and status, resend and apply go on; apply replaces it', () => {
    const s = side();
    send(s, 'p1');
    const q0 = makeQueue(tempDir());
    expect(apply(s, ok(['queue-receipt', '-q', q0]).stdout).code).toBe(0);
    const good = JSON.parse(readFileSync(join(s.ob, 'state.json'), 'utf8')) as Record<string, unknown>;
    const wrong = [
      '{"version":1}',
      '{"version":1,"receipt":{"held_end":"xyz"}}',
      '[]',
      JSON.stringify({ ...good, last_apply: {} }),
      JSON.stringify({ ...good, failures: [{ seq: '1', packet: 'x' }] }),
    ];
    for (const text of wrong) {
      writeFileSync(join(s.ob, 'state.json'), text);
      const st = fspool(['outbox-status', '--outbox', s.ob]);
      expect(st.code, `${text}: ${st.stderr}`).toBe(0);
      expect(st.stderr, text).toMatch(/WARN fspool: outbox .*: state.json is not what outbox-apply writes; the next receipt replaces it/);
      const out = join(s.dir, `out-${randomUUID()}`);
      mkdirSync(out);
      expect(fspool(['outbox-resend', '--outbox', s.ob, '--to-dir', out]).code, text).toBe(0);
      expect(readdirSync(out), text).toHaveLength(1);
    }
    // A FIFO there is not waited on.
    rmSync(join(s.ob, 'state.json'));
    expect(runSync('mkfifo', [join(s.ob, 'state.json')]).code).toBe(0);
    const fifo = fspool(['outbox-status', '--outbox', s.ob], { timeoutMs: 20_000 });
    expect(fifo.code, fifo.stderr).toBe(0);
    expect(fifo.stderr).toMatch(/WARN fspool: outbox .*: state.json cannot be read \(.*state.json is not a regular file\); the next receipt replaces it/);
    const q = makeQueue(tempDir());
    expect(apply(s, ok(['queue-receipt', '-q', q]).stdout).code).toBe(0);
    expect(fspool(['outbox-status', '--outbox', s.ob]).stderr).toBe('');
    // A directory there cannot be replaced: said with the fix, in one line.
    rmSync(join(s.ob, 'state.json'));
    mkdirSync(join(s.ob, 'state.json'));
    const dirThere = apply(s, ok(['queue-receipt', '-q', q]).stdout);
    expect(dirThere.code).toBe(1);
    expect(dirThere.stderr).toMatch(/^Error: cannot record the receipt in .*state\.json: rename .*: is a directory \(EISDIR\); remove the directory .*state\.json, then apply the receipt again \(what it acknowledged is done\)$/m);
  });

  it("a receipt that knows no stream, after one of the outbox's own queue, hides nothing that one reported", () => {
    const s = side();
    for (let i = 1; i <= 2; i++) deliver(s, send(s, `p${i}`));
    expect(processQ(s, 'cat >/dev/null; exit 7').code).toBe(1);
    expect(apply(s, receiptOf(s)).code).toBe(4);
    const before = status(s);
    expect(before.failures).toHaveLength(1);
    // Any other queue's receipt: a fresh queue knows no stream; its next seq is far ahead.
    const other = makeQueue(tempDir());
    expect(fspool(['queue-set-next', '-q', other, '777']).code).toBe(0);
    const r = apply(s, ok(['queue-receipt', '-q', other]).stdout);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/a receipt from a queue that knows no stream, where this stream's queue has sent receipts: not its queue's .*nothing of it was taken/);
    const after = status(s);
    expect(after.failures).toEqual(before.failures);
    expect(after.last_receipt).toEqual(before.last_receipt);
    expect(after.held).toBe(before.held);
    expect(kept(s)).toEqual([1, 2]);
  });

  it('reports a failing job (exit 4, one line each) and keeps it until it ran', () => {
    const s = side();
    for (let i = 1; i <= 2; i++) deliver(s, send(s, `p${i}`));
    const failing = processQ(s, 'cat >/dev/null; exit 7');
    expect(failing.code).toBe(1);
    const r = apply(s, receiptOf(s));
    expect(r.code).toBe(4);
    expect(r.stdout.toString()).toMatch(/^seq 1 failed on the receiver at \S+: exit-code \(exit status 7\); it stays queued and runs again\n$/);
    expect(kept(s)).toEqual([1, 2]);
    expect(status(s).failures).toMatchObject([{ seq: 1, outcome: 'exit-code', action: 'none', exit_code: 7 }]);
    // The same receipt again is no news: exit 0, the failure still shown.
    expect(apply(s, receiptOf(s)).code).toBe(4); // a new receipt, made later: news again
    const same = receiptOf(s);
    expect(apply(s, same).code).toBe(4);
    expect(apply(s, same).code).toBe(0);
    expect(status(s).failures).toHaveLength(1);
    expect(processQ(s).code).toBe(0);
    const fine = apply(s, receiptOf(s));
    expect(fine.code).toBe(0);
    expect(kept(s)).toEqual([]);
    expect(status(s).failures).toEqual([]);

    // Quarantined: processed (pruned), and reported.
    const t = side();
    deliver(t, send(t, 'bad'));
    expect(processQ(t, 'cat >/dev/null; exit 3', ['--on-error', 'quarantine']).code).toBe(0);
    const q = apply(t, receiptOf(t));
    expect(q.code).toBe(4);
    expect(q.stdout.toString()).toContain('it was quarantined');
    expect(kept(t)).toEqual([]);
  });

  it('a --zstd packet is kept as sent, and acknowledged by the identity of the header inside', () => {
    const s = side();
    const packet = send(s, 'compressed', ['--zstd']);
    expect(packet.subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); // a zstd frame
    expect(readFileSync(join(s.ob, 'packets', readdirSync(join(s.ob, 'packets'))[0]!))).toEqual(packet);
    deliver(s, packet);
    expect(processQ(s).code).toBe(0);
    expect(logOf(s)).toBe('1:compressed\n');
    expect(apply(s, receiptOf(s)).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });

  it('an unreadable receipt or a truncated one changes nothing (exit 1)', () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    expect(processQ(s).code).toBe(0);
    const r = receiptOf(s);
    for (const bad of [r.subarray(0, r.length - 1), Buffer.from('hello'), Buffer.alloc(0)]) {
      const x = apply(s, bad);
      expect(x.code).toBe(1);
      expect(x.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(kept(s)).toEqual([1]);
  });
});

describe('a plain packet cut short on the way', () => {
  it('is not acknowledged when its command ran on part of it: the sender keeps the whole packet, says so once, and does not re-send it', () => {
    const s = side();
    const dump = 'BEGIN; INSERT 1; INSERT 2; COMMIT;';
    const p1 = send(s, dump);
    const p2 = send(s, 'p2');
    // An ssh that dropped: queue-write saw EOF, and has no length to check a plain packet against.
    const cut = p1.subarray(0, p1.length - 10);
    expect(fspool(['queue-write', '-q', s.q], { input: cut }).code).toBe(0);
    deliver(s, p2);
    expect(processQ(s).code).toBe(0);
    expect(logOf(s)).toBe(`1:${dump.slice(0, -10)}\n2:p2\n`);
    const r = receiptOf(s);
    const a = apply(s, r);
    expect(a.code, a.stderr).toBe(4);
    expect(a.stdout.toString()).toBe(`seq 1 ran on the receiver from a copy of ${cut.length} bytes; the packet is ${p1.length} bytes: it was cut short on the way; kept, not re-sent\n`);
    expect(a.stderr).toMatch(/^ERROR fspool: seq 1: the receiver ran a copy cut short \(\d+ of \d+ bytes\), so its command had part of the payload; see what it did with it, run the whole packet there by hand \(.*\/packets\/0{19}1-[0-9a-f]{32}\.fspl into `fspool stdin-process`\), then remove it from the outbox$/m);
    expect(a.stderr).toContain('acknowledged 1 packet(s)');
    expect(kept(s)).toEqual([1]);
    const st = status(s);
    expect(st.cut_short).toEqual([{ seq: 1, packet: expect.stringMatching(/^[0-9a-f]{32}$/), sent_bytes: p1.length, ran_bytes: cut.length }]);
    expect(st.passed).toEqual([]);
    expect(st.missing).toBe(0);
    expect(fspool(['outbox-status', '--outbox', s.ob]).stdout.toString()).toMatch(/^cut short: {4}seq 1: ran on the receiver from \d+ of its \d+ bytes; kept, not re-sent/m);
    // Not re-sent: a copy would land below the receiver's next seq, where it never runs.
    const wire = join(s.dir, 'wire');
    mkdirSync(wire);
    const re = ok(['outbox-resend', '--outbox', s.ob, '--to-dir', wire]);
    expect(readdirSync(wire)).toEqual([]);
    expect(re.stderr).toContain('re-sent 0 packet(s); not re-sent: 1 that ran cut short on the receiver (see outbox-status)');
    // The same receipt again (a transport retrying): no news, exit 0; still kept.
    const again = apply(s, r);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.toString()).toBe('');
    expect(kept(s)).toEqual([1]);
    // Later receipts keep it said, for as long as the packet is kept.
    deliver(s, send(s, 'p3'));
    expect(processQ(s).code).toBe(0);
    const r3 = decodeReceipt(receiptOf(s));
    expect(apply(s, encodeReceipt(r3)).code).toBe(0);
    expect(kept(s)).toEqual([1]);
    expect(status(s).cut_short).toHaveLength(1);
    // Even one whose processed window has moved past it (a queue 4,096 seqs further on).
    const later = { ...r3, nextSeq: 5000n, windowStart: 904n, heldEnd: 5000n + 16384n, processed: [], held: [], failures: [], sizes: new Map(), position: r3.position + 1n };
    expect(apply(s, encodeReceipt(later)).code).toBe(0);
    expect(kept(s)).toEqual([1]);
    expect(status(s)).toMatchObject({ cut_short: [expect.objectContaining({ seq: 1 })], passed: [], missing: 0 });
    // Once a person has run it and removed it, it is no longer said.
    rmSync(join(s.ob, 'packets', readdirSync(join(s.ob, 'packets')).find((n) => n.endsWith('.fspl'))!));
    expect(apply(s, receiptOf(s)).code).toBe(0);
    expect(status(s).cut_short).toEqual([]);
  });

  it('encoded packets, and plain ones encoded outside fspool on the way, are acknowledged as before', () => {
    const z = side();
    deliver(z, send(z, 'zz', ['--zstd']));
    expect(processQ(z).code).toBe(0);
    expect(apply(z, receiptOf(z)).code).toBe(0);
    expect(kept(z)).toEqual([]);
    // gzip between prepare and the queue, undone by -d: the job file is not the packet's size.
    const g = side();
    const p = send(g, 'gg');
    deliver(g, gzipSync(p));
    expect(processQ(g, RECORD, ['-d', 'gzip -dc']).code).toBe(0);
    expect(logOf(g)).toBe('1:gg\n');
    expect(apply(g, receiptOf(g)).code).toBe(0);
    expect(kept(g)).toEqual([]);
  });
});

describe('a receiver whose clock was set back', () => {
  it('still has its later receipts taken as the newest: their journal is further on, so a failure they report is said', () => {
    const s = side();
    const p1 = send(s, 'p1');
    const p2 = send(s, 'p2');
    deliver(s, p1);
    expect(processQ(s).code).toBe(0);
    const r1 = decodeReceipt(receiptOf(s));
    expect(r1.journal).toMatch(/^[0-9a-f]{32}$/);
    expect(r1.position).toBeGreaterThan(0n);
    expect(apply(s, encodeReceipt(r1)).code).toBe(0);
    deliver(s, p2);
    expect(processQ(s, 'exit 3').code).toBe(1);
    const r2 = decodeReceipt(receiptOf(s));
    expect(r2.journal).toBe(r1.journal);
    expect(r2.position).toBeGreaterThan(r1.position);
    // Made five minutes "before" the first: the receiver's clock stepped back meanwhile.
    const back = r1.created - 5 * 60_000;
    const a = apply(s, encodeReceipt({ ...r2, created: back }));
    expect(a.code, a.stderr).toBe(4);
    expect(a.stdout.toString()).toMatch(/^seq 2 failed on the receiver at .*: early-exit \(exit status 3\); it stays queued and runs again$/m);
    expect(status(s).failures).toEqual([expect.objectContaining({ seq: 2, outcome: 'early-exit', action: 'none' })]);
    // The first receipt, delivered again late (stamped later, before the clock went back):
    // older by its journal, so it changes nothing of what the second said.
    const late = apply(s, encodeReceipt(r1));
    expect(late.code).toBe(0);
    expect(late.stderr).toContain('an older receipt than the newest applied');
    expect(status(s).failures).toHaveLength(1);
    // A position gone back in a receipt made well after (beyond the clock's 10 minutes): the
    // receiver's database was restored or rolled back. Taken, and said.
    const restored = apply(s, encodeReceipt({ ...r1, created: back + 11 * 60_000 }));
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).toMatch(new RegExp(`WARN fspool: the receiver's journal went back \\(position ${r1.position}, ${r2.position} before\\) in a receipt made later: its state database was restored or rolled back; the receipt was taken as the newest`));
    expect(status(s).failures).toEqual([]);
    // A lost journal is another journal: its receipts are ordered by their time.
    rmSync(join(s.q, 'fspool'), { recursive: true });
    const r3 = decodeReceipt(receiptOf(s));
    expect(r3.journal).not.toBe(r1.journal);
    expect(r3.position).toBeLessThan(r2.position);
    // Stamped after the restored one (which was stamped ahead of this test's clock).
    const other = apply(s, encodeReceipt({ ...r3, created: back + 12 * 60_000 }));
    expect(other.code).toBe(0);
    expect(other.stderr).not.toContain('an older receipt');
    expect(status(s).failures).toEqual([]);
  });
});

describe('signed receipts', () => {
  const keys: Record<string, string> = {};
  beforeAll(async () => {
    const dir = tempDir('fspool-rcpt-keys-');
    for (const who of ['recv', 'other']) {
      const k = await openpgp.generateKey({ userIDs: [{ name: who }], type: 'ecc', curve: 'ed25519Legacy', format: 'armored' });
      keys[`${who}.sec`] = join(dir, `${who}.sec`);
      keys[`${who}.pub`] = join(dir, `${who}.pub`);
      writeFileSync(keys[`${who}.sec`]!, k.privateKey);
      writeFileSync(keys[`${who}.pub`]!, k.publicKey);
    }
  });

  it('a compressed OpenPGP message that unpacks to far more than a receipt can be is refused unread, with or without --require-signature', async () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    // Message.compress is openpgp.js's, left out of its typings.
    type Compressible = { compress(algo: number): Promise<{ write(): ReadableStream<Uint8Array> }> };
    const plain = (await openpgp.createMessage({ binary: new Uint8Array(256 << 20) })) as unknown as Compressible;
    const message = await plain.compress(openpgp.enums.compression.zlib);
    const bomb = Buffer.from(await readToEnd(message.write()));
    expect(bomb.length).toBeLessThan(1 << 20);
    for (const extra of [[], ['--require-signature', keys['recv.pub']!]]) {
      const r = apply(s, bomb, extra);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toBe(`Error: the OpenPGP message unpacks to more than a receipt can be (1048576 bytes): not a receipt; nothing applied\n`);
    }
    expect(kept(s)).toEqual([1]);
  });

  it('an unsigned copy of a signed packet, refused under --require-signature, is not claimed as held: the real one is still re-sent', async () => {
    const s = side();
    const signed = send(s, 'p1', ['--sign-with', keys['recv.sec']!]);
    // The forger's copy: the packet inside the signed message, header and all, unsigned.
    const inner = Buffer.from((await openpgp.readMessage({ binaryMessage: signed })).getLiteralData() as Uint8Array);
    expect(decodeHeader(inner).header.seq).toBe(1n);
    deliver(s, inner);
    const p = processQ(s, RECORD, ['--require-signature', keys['recv.pub']!]);
    expect(p.stderr).toMatch(/WARN .*signature/);
    expect(logOf(s)).toBe('');
    const r = apply(s, receiptOf(s));
    expect(r.code, r.stderr).toBe(0);
    const out = join(s.dir, 'resend');
    mkdirSync(out);
    const resent = ok(['outbox-resend', '--outbox', s.ob, '--to-dir', out]);
    expect(readdirSync(out).map((n) => readFileSync(join(out, n))), resent.stderr).toEqual([signed]);
    // Delivered, the real one runs.
    deliver(s, signed);
    expect(processQ(s, RECORD, ['--require-signature', keys['recv.pub']!]).code).toBe(0);
    expect(logOf(s)).toBe('1:p1\n');
  });

  it('--require-signature takes a receipt signed by the key, and refuses an unsigned or wrongly signed one', () => {
    const s = side();
    for (let i = 1; i <= 2; i++) deliver(s, send(s, `p${i}`));
    expect(processQ(s).code).toBe(0);
    const unsigned = receiptOf(s);
    const byOther = receiptOf(s, ['--sign-with', keys['other.sec']!]);
    const signed = receiptOf(s, ['--sign-with', keys['recv.sec']!]);
    expect(signed.subarray(0, 12).toString('latin1')).not.toBe('*FSPOOL-RCPT');
    const req = ['--require-signature', keys['recv.pub']!];
    for (const [bad, msg] of [
      [unsigned, /not signed, and --require-signature was given: nothing applied/],
      [byOther, /no valid signature by an accepted key/],
    ] as const) {
      const r = apply(s, bad, req);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(msg);
      expect(kept(s)).toEqual([1, 2]);
    }
    // A signed receipt whose literal data was altered does not verify either.
    const tampered = Buffer.from(signed);
    const at = tampered.indexOf(Buffer.from('*FSPOOL-RCPT'));
    tampered[at + 40]! ^= 1;
    expect(apply(s, tampered, req).code).toBe(1);
    expect(kept(s)).toEqual([1, 2]);
    expect(apply(s, signed, req).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });

  it('queue-process --receipt-sign-with signs the receipts it writes; a key file it cannot read stops it before any job', () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    const dir = join(s.dir, 'receipts');
    mkdirSync(dir);
    const typo = `${keys['recv.sec']!}x`;
    const refused = processQ(s, RECORD, ['--receipt-to-dir', dir, '--receipt-sign-with', typo]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`Error: --receipt-sign-with ${typo}: no such file or directory (ENOENT); check the path; nothing was done\n`);
    expect(logOf(s)).toBe('');
    expect(processQ(s, RECORD, ['--receipt-to-dir', dir, '--receipt-sign-with', keys['recv.sec']!]).code).toBe(0);
    const [file] = readdirSync(dir);
    expect(file).toMatch(/^fspool-receipt-[0-9a-f]{32}\.rcpt$/);
    expect(apply(s, readFileSync(join(dir, file!)), ['--require-signature', keys['recv.pub']!]).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });
});

describe('the outbox', () => {
  it('is made wherever its path leads, through .. too (its new directories fsynced into their parents)', () => {
    const dir = tempDir();
    const r = fspool(['prepare-nop', '-s', join(dir, 'seq'), '--outbox', join(dir, 'nx/../ob/o')], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(dir, 'ob/o/outbox.json'))).toBe(true);
  });

  it('belongs to one seqfile; -s - and a seqfile set back are refused; enqueue and prepare-nop take it too', () => {
    const s = side();
    send(s, 'p1');
    const other = fspool(['prepare', '-s', join(s.dir, 'other.seq'), '--outbox', s.ob]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/belongs to sequence file .*sender\.seq, not .*other\.seq/);
    expect(fspool(['prepare', '-s', '-', '--outbox', s.ob]).stderr).toMatch(/--outbox needs a sequence file/);
    ok(['prepare-nop', '-s', s.seq, '--outbox', s.ob]);
    ok(['enqueue', '-q', s.q, '-s', s.seq, '-i', '-', '--outbox', s.ob], 'p3');
    expect(kept(s)).toEqual([1, 2, 3]);
    ok(['prepare-set-next', '-s', s.seq, '2']);
    const back = fspool(['prepare', '-s', s.seq, '--outbox', s.ob]);
    expect(back.code).toBe(1);
    expect(back.stderr).toMatch(/the sequence file was set back; .* set it to 4/);
    expect(back.stdout.length).toBe(0);
    expect(readFileSync(s.seq, 'utf8')).toBe('2\n');
    expect(kept(s)).toEqual([1, 2, 3]);
  });

  it('outbox-status exits 3 once a packet waits longer than --stale-after, and outbox-resend --older-than leaves young ones', () => {
    const s = side();
    send(s, 'p1');
    const young = fspool(['outbox-status', '--outbox', s.ob, '--stale-after', '3600']);
    expect(young.code).toBe(0);
    expect(young.stdout.toString()).toMatch(/unacked: +1 \(seqs 1 to 1/);
    const old = fspool(['outbox-status', '--outbox', s.ob, '--stale-after', '0']);
    expect(old.code).toBe(3);
    const wire = join(s.dir, 'wire');
    mkdirSync(wire);
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', wire, '--older-than', '3600']);
    expect(readdirSync(wire)).toEqual([]);
    const both = fspool(['outbox-resend', '--outbox', s.ob]);
    expect(both.code).toBe(2);
  });

  it('outbox-resend --exec runs the command once per packet with it on stdin, and reports failures (exit 1); --to-dir that is not there is an error even with nothing to send', () => {
    const s = side();
    const p = [send(s, 'p1'), send(s, 'p2')];
    const got = join(s.dir, 'got');
    mkdirSync(got);
    ok(['outbox-resend', '--outbox', s.ob, '--exec', `cat > "${got}/$FSPOOL_SEQ-$FSPOOL_STREAM"`]);
    const stream = status(s).stream;
    expect(readdirSync(got).sort()).toEqual([`1-${stream}`, `2-${stream}`]);
    expect(readFileSync(join(got, `2-${stream}`))).toEqual(p[1]);
    // A directory that is not there is said even with nothing to send.
    const none = fspool(['outbox-resend', '--outbox', s.ob, '--to-dir', join(s.dir, 'nowhere'), '--older-than', '3600']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^Error: --to-dir .*nowhere: no such directory; create it \(packets are re-sent into it\)\n$/);
    const bad = fspool(['outbox-resend', '--outbox', s.ob, '--exec', 'cat >/dev/null; test "$FSPOOL_SEQ" != 1']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/1 of 2 packet\(s\) could not be re-sent/);
  });
});

describe('folders others write: what is planted at the names receipts and re-sends are written under', () => {
  it('a symlink or a FIFO at the receipt temp name: never written through, never waited on; the receipt is written', () => {
    const s = side();
    const rdir = join(s.dir, 'receipts');
    mkdirSync(rdir);
    deliver(s, send(s, 'p1'));
    const name = `fspool-receipt-${status(s).stream}.rcpt`;
    const victim = join(s.dir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(rdir, `.${name}.tmp`));
    expect(processQ(s, RECORD, ['--receipt-to-dir', rdir]).code).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(rdir, name)).isFile()).toBe(true);
    expect(decodeReceipt(readFileSync(join(rdir, name))).nextSeq).toBe(2n);

    rmSync(join(rdir, name));
    expect(runSync('mkfifo', [join(rdir, `.${name}.tmp`)]).code).toBe(0);
    deliver(s, send(s, 'p2'));
    const r = fspool(['queue-process', '-q', s.q, '--receipt-to-dir', rdir, 'sh', '--', '-c', RECORD, s.log], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(decodeReceipt(readFileSync(join(rdir, name))).nextSeq).toBe(3n);
    expect(logOf(s)).toBe('1:p1\n2:p2\n');
  });

  it('outbox-resend --to-dir: a symlink at the temp name is not written through; a file at the name that is not the packet is replaced', () => {
    const s = side();
    const p = [send(s, 'p1'), send(s, 'p2')];
    const first = join(s.dir, 'first');
    mkdirSync(first);
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', first]);
    const names = readdirSync(first).sort();
    expect(names).toHaveLength(2);
    const byPayload = (n: string) => p.findIndex((b) => readFileSync(join(first, n)).equals(b));
    const out = join(s.dir, 'out');
    mkdirSync(out);
    const victim = join(s.dir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(out, `.${names[0]}.tmp`));
    writeFileSync(join(out, names[1]!), ''); // an empty file under the packet's name
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', out]);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    for (const n of names) {
      expect(lstatSync(join(out, n)).isFile(), n).toBe(true);
      expect(readFileSync(join(out, n)), n).toEqual(p[byPayload(n)]);
    }
    // A directory under a packet's name cannot be replaced: that one is reported, the other sent.
    const third = join(s.dir, 'third');
    mkdirSync(join(third, names[0]!, 'sub'), { recursive: true });
    const r = fspool(['outbox-resend', '--outbox', s.ob, '--to-dir', third]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(third, names[0]!)} is a directory, which the packet cannot replace; remove it`);
    expect(r.stderr).toMatch(/1 of 2 packet\(s\) could not be re-sent/);
    expect(readdirSync(third).sort()).toEqual(names);
    expect(readFileSync(join(third, names[1]!))).toEqual(p[byPayload(names[1]!)]);
  });
});

describe('queue-receipt on a big queue', () => {
  it('describes 10,000 held jobs in a few KB', () => {
    const s = side();
    const stream = 'c3'.repeat(16);
    // Packets written straight into jobs/ (10,000 prepares would take minutes): seqs 2..10001,
    // seq 1 missing, each a packet of the stream as prepare --outbox makes them.
    const jobs = join(s.q, 'jobs');
    for (let seq = 2; seq <= 10_001; seq++) {
      const h: Header = { seq: BigInt(seq), ctimeSecs: 1_700_000_000n, ctimeNanos: seq, cmd: { kind: 'NOP' }, stream };
      writeFileSync(join(jobs, `fspl-${seq}.fspl`), encodeHeader(h));
    }
    const r = receiptOf(s);
    const d = decodeReceipt(r);
    expect(d.stream).toBe(stream);
    expect(d.nextSeq).toBe(1n);
    expect(d.held.flatMap(seqsOf)).toHaveLength(10_000);
    expect(r.length).toBeLessThan(3000);
    expect(d.heldBeyond).toBe(false);
  });

  it('without --stream describes the stream that runs, not one a dropped file names far ahead', () => {
    const s = side();
    for (let i = 1; i <= 3; i++) deliver(s, send(s, `p${i}`));
    expect(processQ(s).code).toBe(0);
    const mine = status(s).stream as string;
    // Anyone who can write jobs/: a NOP of a made-up stream at a seq far ahead.
    const other = 'e5'.repeat(16);
    deliver(s, encodeHeader({ seq: 999_999n, ctimeSecs: 1_700_000_000n, ctimeNanos: 0, cmd: { kind: 'NOP' }, stream: other }));
    const r = fspool(['queue-receipt', '-q', s.q]);
    expect(r.code).toBe(0);
    expect(decodeReceipt(r.stdout).stream).toBe(mine);
    expect(r.stderr).toContain(`also has packets of stream(s) ${other}`);
    expect(apply(s, r.stdout).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });

  it('a queue that knows no stream gives a receipt that says so', () => {
    const s = side();
    const r = fspool(['queue-receipt', '-q', s.q]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('knows no stream');
    expect(decodeReceipt(r.stdout).stream).toBe(NO_STREAM);
    expect(fspool(['queue-receipt', '-q', s.q, '--stream', 'xyz']).code).toBe(2);
  });
});

/** A side whose first packet ran with --receipt-to-dir: the packet, the folder, its one receipt. */
function firstReceipt(): { s: Side; p1: Buffer; rdir: string; file: string } {
  const s = side();
  const rdir = join(s.dir, 'receipts');
  mkdirSync(rdir);
  const p1 = send(s, 'p1');
  deliver(s, p1);
  expect(processQ(s, RECORD, ['--receipt-to-dir', rdir]).code).toBe(0);
  const [file] = readdirSync(rdir);
  return { s, p1, rdir, file: file! };
}

describe('receipts after processing passes', () => {
  it('are written only when something changed: a run, or a packet landing (even a stale copy); a failing --receipt-exec is a WARN and is tried again', () => {
    const { s, p1, rdir, file } = firstReceipt();
    const path = join(rdir, file);
    const first = readFileSync(path);
    // Nothing changed: no new receipt (the file is the same one).
    rmSync(path);
    expect(processQ(s, RECORD, ['--receipt-to-dir', rdir]).code).toBe(0);
    expect(readdirSync(rdir)).toEqual([]);
    // A copy of seq 1 lands again (a re-send after a lost receipt): a receipt goes out.
    deliver(s, p1);
    expect(processQ(s, RECORD, ['--receipt-to-dir', rdir]).code).toBe(0);
    expect(readdirSync(rdir)).toEqual([file]);
    expect(decodeReceipt(readFileSync(path)).processed).toEqual(decodeReceipt(first).processed);
    // --receipt-every 0: after every pass.
    rmSync(path);
    expect(processQ(s, RECORD, ['--receipt-to-dir', rdir, '--receipt-every', '0']).code).toBe(0);
    expect(readdirSync(rdir)).toEqual([file]);

    // A command that fails: one WARN, processing unaffected, the receipt tried after the next pass.
    deliver(s, send(s, 'p2'));
    const failing = processQ(s, RECORD, ['--receipt-exec', 'cat >/dev/null; exit 3']);
    expect(failing.code).toBe(0);
    expect(failing.stderr).toMatch(/WARN fspool: receipt command "cat >\/dev\/null; exit 3" exited with status 3; trying again after the next pass/);
    expect(logOf(s)).toBe('1:p1\n2:p2\n');
    const got = join(s.dir, 'got.rcpt');
    expect(processQ(s, RECORD, ['--receipt-exec', `cat > "${got}"`]).code).toBe(0);
    expect(apply(s, readFileSync(got)).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });
});

describe('a receipt command that hangs', () => {
  // The command an ssh to a host that does not answer would be: it never ends by itself. One
  // of its children ignores SIGTERM, which ends the shell.
  const hang = (s: Side) => `echo $$ >> "${join(s.dir, 'pids')}"; (trap '' TERM; exec sleep 1000) & sleep 1000 & wait`;
  const pids = (s: Side) => (existsSync(join(s.dir, 'pids')) ? readFileSync(join(s.dir, 'pids'), 'utf8').trim().split('\n').map(Number) : []);

  it('is killed, process group and all, after --receipt-timeout; a watch goes on running the jobs that land meanwhile', async () => {
    const s = side();
    const p = [1, 2].map((i) => send(s, `p${i}`));
    deliver(s, p[0]!);
    const run = runAsync(FSPOOL, ['queue-process', '-q', s.q, '--watch', '--receipt-exec', hang(s), '--receipt-timeout', '1', '--grace', '1', 'sh', '--', '-c', RECORD, s.log]);
    try {
      await waitFor('the first receipt command', () => pids(s).length >= 1);
      deliver(s, p[1]!);
      await waitFor('job 2', () => logOf(s) === '1:p1\n2:p2\n');
      await waitFor('the timeout WARN', () => /receipt command .* did not finish within 1s \(its process group was killed\); trying again after the next pass/.test(run.stderr()));
      // The first command's whole group is gone: its shell and the sleep it started.
      await waitFor('the first command group to end', () => !groupAlive(pids(s)[0]!), 10_000);
    } finally {
      process.kill(run.pid, 'SIGTERM');
    }
    const r = await within(run.done, 20_000, 'queue-process after SIGTERM');
    expect(r.code).toBe(143);
    for (const pid of pids(s)) expect(groupAlive(pid), `receipt command group ${pid}`).toBe(false);
  });

  it('is killed by a stop: SIGTERM ends a one-shot run at once, with the stop timeout and the receipt timeout far off', async () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    const run = runAsync(FSPOOL, ['queue-process', '-q', s.q, '--receipt-exec', hang(s), 'sh', '--', '-c', RECORD, s.log]);
    await waitFor('the receipt command', () => pids(s).length === 1);
    process.kill(run.pid, 'SIGTERM');
    const r = await within(run.done, 10_000, 'queue-process after SIGTERM');
    expect(r.code).toBe(143);
    expect(r.stderr).toMatch(/INFO fspool: receipt command .* stopped with the run; the next run sends the receipt/);
    expect(groupAlive(pids(s)[0]!)).toBe(false);
    expect(logOf(s)).toBe('1:p1\n');
    // The lock is free: the next run takes the queue and sends the receipt.
    const got = join(s.dir, 'got.rcpt');
    expect(processQ(s, RECORD, ['--receipt-exec', `cat > "${got}"`]).code).toBe(0);
    expect(decodeReceipt(readFileSync(got)).nextSeq).toBe(2n);
  });
});

describe('files that name made-up streams', () => {
  it("another queue's receipt about our stream (a file there names it) stops no re-send: its next seq says nothing of our packets", () => {
    const s = side();
    const p = [1, 2, 3, 4, 5].map((i) => send(s, `p${i}`));
    for (const i of [0, 1, 2, 4]) deliver(s, p[i]!); // 4 lost in transit
    expect(processQ(s).code).toBe(0);
    const stream = status(s).stream as string;
    // Another queue, far ahead, where whoever can write its jobs/ drops a NOP naming our stream.
    const other = side();
    for (let i = 1; i <= 9; i++) deliver(other, send(other, `o${i}`));
    expect(processQ(other).code).toBe(0);
    deliver(other, encodeHeader({ seq: 100_000n, ctimeSecs: 1_700_000_000n, ctimeNanos: 0, cmd: { kind: 'NOP' }, stream }));
    const foreign = ok(['queue-receipt', '-q', other.q, '--stream', stream]).stdout;
    expect(decodeReceipt(foreign).nextSeq).toBe(10n);
    expect(apply(s, foreign).code).toBe(0);
    expect(status(s).passed).toEqual([]);
    const wire = join(s.dir, 'wire');
    mkdirSync(wire);
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', wire]);
    expect(readdirSync(wire)).toHaveLength(5); // nothing is known to have run: all go again
    for (const n of readdirSync(wire)) deliver(s, readFileSync(join(wire, n)));
    expect(processQ(s).code).toBe(0);
    expect(logOf(s)).toBe('1:p1\n2:p2\n3:p3\n4:p4\n5:p5\n');
    // Our own queue's receipt then acknowledges every one.
    expect(apply(s, receiptOf(s)).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });

  it("make receipts for 16 streams at most, the processed one first, with one WARN; a new file is news to its own stream's sender only", () => {
    const { s, p1, rdir, file: real } = firstReceipt();
    expect(real).toBe(`fspool-receipt-${status(s).stream}.rcpt`);
    rmSync(join(rdir, real));
    // 40 files in the window ahead, each of a stream of its own (anyone who can write jobs/).
    const fake = (i: number) => {
      const header = encodeHeader({ seq: BigInt(100 + i), ctimeSecs: 1_700_000_000n, ctimeNanos: 0, cmd: { kind: 'Command', params: [], env: [] }, stream: `f${i.toString(16).padStart(31, '0')}` });
      deliver(s, Buffer.concat([header, Buffer.from('x')]));
    };
    for (let i = 0; i < 40; i++) fake(i);
    // --receipt-every 0: each stream picked gets its receipt, news or not.
    const r = processQ(s, RECORD, ['--receipt-to-dir', rdir, '--receipt-every', '0']);
    expect(r.code).toBe(0);
    expect(r.stderr.match(/WARN fspool: queue .* name 41 streams; receipts go for 16 of them/g)).toHaveLength(1);
    const written = readdirSync(rdir);
    expect(written).toHaveLength(16);
    expect(written).toContain(real);
    // One more file of another stream: the real stream's sender hears nothing new.
    for (const f of written) rmSync(join(rdir, f));
    fake(40);
    expect(processQ(s, RECORD, ['--receipt-to-dir', rdir]).code).toBe(0);
    expect(readdirSync(rdir)).not.toContain(real);
    // A copy of its own packet landing again (a re-send: a stale file, nothing else new) is news to it.
    deliver(s, p1);
    expect(processQ(s, RECORD, ['--receipt-to-dir', rdir]).code).toBe(0);
    expect(readdirSync(rdir)).toContain(real);
    expect(logOf(s)).toBe('1:p1\n');
    // What was sent is remembered for the streams picked only: at most 16, and none that the
    // queue's files no longer name.
    const sentTo = () => Object.keys(JSON.parse(readFileSync(join(s.q, 'fspool', 'receipts.json'), 'utf8')).streams);
    expect(sentTo().length).toBeLessThanOrEqual(16);
    for (const f of readdirSync(join(s.q, 'jobs'))) {
      const header = decodeHeader(readFileSync(join(s.q, 'jobs', f))).header;
      if (/^f0{20}/.test(header.stream ?? '')) rmSync(join(s.q, 'jobs', f));
    }
    expect(processQ(s, RECORD, ['--receipt-to-dir', rdir]).code).toBe(0);
    expect(sentTo()).toEqual([status(s).stream]);
  });
});

describe('the processed window', () => {
  it('a packet below it is re-sent, lands as a stale copy, and the next receipt vouches for it by the journal', () => {
    const s = side();
    const packets = [1, 2, 3].map((i) => send(s, `p${i}`));
    for (const p of packets) deliver(s, p);
    expect(processQ(s).code).toBe(0);
    // The receiver has since run thousands of other packets (as far as its window is concerned).
    ok(['queue-set-next', '-q', s.q, '10000']);
    const r = decodeReceipt(receiptOf(s));
    expect(r.windowStart).toBe(10000n - 4096n - ((10000n - 4096n) % 64n));
    expect(r.processed).toEqual([]);
    expect(apply(s, encodeReceipt(r)).code).toBe(0);
    expect(kept(s)).toEqual([1, 2, 3]);
    expect(status(s)).toMatchObject({ missing: 3, passed: [] });
    const wire = join(s.dir, 'wire');
    mkdirSync(wire);
    ok(['outbox-resend', '--outbox', s.ob, '--to-dir', wire]);
    for (const n of readdirSync(wire)) renameSync(join(wire, n), join(s.q, 'jobs', n));
    const again = processQ(s);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('is below the queue\'s next seq 10000; not run');
    expect(logOf(s)).toBe('1:p1\n2:p2\n3:p3\n');
    expect(apply(s, receiptOf(s)).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });
});

describe('a job released from quarantine, far below the window', () => {
  it('runs out of turn without hiding what the queue processed in the window', () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    expect(processQ(s, 'cat >/dev/null; exit 3', ['--on-error', 'quarantine']).code).toBe(0);
    const [held] = readdirSync(join(s.q, 'fspool', 'quarantine')).filter((n) => n.endsWith('.fspl'));
    ok(['prepare-set-next', '-s', s.seq, '10000']);
    ok(['queue-set-next', '-q', s.q, '10000']);
    deliver(s, send(s, 'p10000'));
    deliver(s, send(s, 'p10001'));
    expect(processQ(s).code).toBe(0);
    const processed = (r: Buffer) => decodeReceipt(r).processed.flatMap((b) => seqsOf(b));
    expect(processed(receiptOf(s))).toEqual([10000n, 10001n]);
    ok(['queue-quarantine', '-q', s.q, '--release', held!]);
    expect(processQ(s).code).toBe(0);
    expect(logOf(s)).toBe('10000:p10000\n10001:p10001\n1:p1\n');
    expect(processed(receiptOf(s))).toEqual([10000n, 10001n]);
  });
});

describe("the README's Syncthing recipe", () => {
  it('runs as written, with the two folders synced by a copy (temp name, then rename) that loses a packet', () => {
    const s = side();
    const sync = { packets: join(s.dir, 'Sync', 'packets'), receipts: join(s.dir, 'Sync', 'receipts') };
    const rdir = join(s.dir, 'receipts');
    for (const d of [...Object.values(sync), rdir]) mkdirSync(d, { recursive: true });
    const shell = (script: string) => {
      const r = runSync('/bin/sh', ['-c', script], { env: { ...process.env, F: FSPOOL, Q: s.q, R: rdir, OB: s.ob, SEQ: s.seq, P: sync.packets, RS: sync.receipts, LOG: s.log } });
      expect(r.code, `${script}: ${r.stderr}`).toBe(0);
      return r;
    };
    // The recipe's lines, with its paths in variables.
    const sendOne = (payload: string) => shell(`printf '${payload}' | "$F" prepare -s "$SEQ" -i - --outbox "$OB" > "$P"/.new.part && mv "$P"/.new.part "$P"/"$("$F" gen-filename)"`);
    const receiver = () => shell(`"$F" queue-process -q "$Q" --receipt-to-dir "$R" sh -- -c 'printf "%s:%s\\n" "$FSPL_SEQ" "$(cat)" >> "$LOG"'`);
    const sender = () =>
      shell(`for r in "$RS"/fspool-receipt-*.rcpt; do
  [ -e "$r" ] && "$F" outbox-apply --outbox "$OB" < "$r"
done
"$F" outbox-resend --outbox "$OB" --to-dir "$P" --older-than 0`);
    // Syncthing's part: whole files only, under a temp name then renamed; one packet is lost.
    let lose = 'p2';
    const syncFolders = () => {
      for (const n of readdirSync(sync.packets).filter((n) => /^fspl-.*\.fspl$/.test(n))) {
        const bytes = readFileSync(join(sync.packets, n));
        rmSync(join(sync.packets, n));
        if (lose && bytes.includes(Buffer.from(lose))) {
          lose = '';
          continue;
        }
        writeFileSync(join(s.q, 'jobs', `.syncthing.${n}.tmp`), bytes);
        renameSync(join(s.q, 'jobs', `.syncthing.${n}.tmp`), join(s.q, 'jobs', n));
      }
      for (const n of readdirSync(rdir).filter((n) => !n.startsWith('.'))) {
        writeFileSync(join(sync.receipts, `.syncthing.${n}.tmp`), readFileSync(join(rdir, n)));
        renameSync(join(sync.receipts, `.syncthing.${n}.tmp`), join(sync.receipts, n));
      }
    };
    for (const p of ['p1', 'p2', 'p3']) sendOne(p);
    for (let round = 0; round < 4 && (status(s).unacked > 0 || logOf(s) === ''); round++) {
      syncFolders();
      receiver();
      syncFolders();
      sender();
    }
    expect(logOf(s)).toBe('1:p1\n2:p2\n3:p3\n');
    expect(status(s).unacked).toBe(0);
  });
});

describe('the journal of a version-1 state database', () => {
  it('gains the stream column when a processor opens it, and receipts then describe the new runs', () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    expect(processQ(s).code).toBe(0);
    const db = new Database(join(s.q, 'fspool', 'state.db'));
    db.exec('DROP INDEX runs_stream; ALTER TABLE runs DROP COLUMN stream; ALTER TABLE runs DROP COLUMN file_size; DROP TABLE meta; PRAGMA user_version = 1;');
    db.close();
    const p2 = send(s, 'p2');
    deliver(s, p2);
    expect(processQ(s).code).toBe(0);
    const after = new Database(join(s.q, 'fspool', 'state.db'), { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(3);
    expect(after.prepare('SELECT seq, stream, file_size FROM runs ORDER BY id').all()).toEqual([
      { seq: '1', stream: null, file_size: null },
      { seq: '2', stream: status(s).stream, file_size: p2.length },
    ]);
    after.close();
    expect(apply(s, receiptOf(s)).code).toBe(0);
    // Seq 1's run predates the column: the receipt cannot vouch for it; seq 2 is acknowledged.
    expect(kept(s)).toEqual([1]);
  });
});

describe('the journal of a version-2 state database', () => {
  it('is migrated once when two processes open it at once: the one that waited for the other finds it done', async () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    expect(processQ(s).code).toBe(0);
    const path = join(s.q, 'fspool', 'state.db');
    const setUp = new Database(path);
    setUp.exec('ALTER TABLE runs DROP COLUMN file_size; DROP TABLE meta; PRAGMA user_version = 2;');
    setUp.close();
    // Another process's migration, under way: it holds the write lock.
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE; ALTER TABLE runs ADD COLUMN file_size INTEGER;');
    deliver(s, send(s, 'p2'));
    const p = runAsync(FSPOOL, ['queue-process', '-q', s.q, 'sh', '--', '-c', RECORD, s.log]);
    await new Promise((r) => setTimeout(r, 500));
    other.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID; INSERT INTO meta VALUES ('journal', '${'ab'.repeat(16)}'), ('position', 0); PRAGMA user_version = 3; COMMIT;`);
    other.close();
    const r = await p.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/WARN|duplicate column/);
    expect(logOf(s)).toBe('1:p1\n2:p2\n');
    const after = new Database(path, { readonly: true });
    expect(after.prepare('SELECT seq FROM runs ORDER BY id').pluck().all()).toEqual(['1', '2']);
    after.close();
  });

  it('gains the file_size column when a processor opens it; read as it is by a reader who cannot write it, its runs are acknowledged as not measured', () => {
    const s = side();
    deliver(s, send(s, 'p1'));
    expect(processQ(s).code).toBe(0);
    const db = new Database(join(s.q, 'fspool', 'state.db'));
    db.exec('ALTER TABLE runs DROP COLUMN file_size; DROP TABLE meta; PRAGMA user_version = 2;');
    db.close();
    // A reader who may not write QUEUE/fspool/ (a monitoring user) reads version 2 as it is.
    for (let d = s.q; d !== dirname(s.dir); d = dirname(d)) chmodSync(d, 0o755);
    const r = asNobody(['queue-receipt', '-q', s.q]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/WARN|ERROR/);
    expect(decodeReceipt(r.stdout).sizes).toEqual(new Map());
    expect(apply(s, r.stdout).code).toBe(0);
    expect(kept(s)).toEqual([]);
    // A processor migrates it: old rows have no size, new ones have theirs.
    const p2 = send(s, 'p2');
    deliver(s, p2);
    expect(processQ(s).code).toBe(0);
    const after = new Database(join(s.q, 'fspool', 'state.db'), { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(3);
    expect(after.prepare('SELECT seq, file_size FROM runs ORDER BY id').all()).toEqual([
      { seq: '1', file_size: null },
      { seq: '2', file_size: p2.length },
    ]);
    const meta = Object.fromEntries((after.prepare('SELECT key, value FROM meta').all() as Array<{ key: string; value: unknown }>).map((m) => [m.key, m.value]));
    expect(meta.journal).toMatch(/^[0-9a-f]{32}$/);
    expect(meta.position).toBeGreaterThan(0);
    after.close();
    expect(decodeReceipt(receiptOf(s))).toMatchObject({ journal: meta.journal });
    expect(decodeReceipt(receiptOf(s)).sizes).toEqual(new Map([[2n, p2.length]]));
    expect(apply(s, receiptOf(s)).code).toBe(0);
    expect(kept(s)).toEqual([]);
  });
});
