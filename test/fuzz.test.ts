// Mutation fuzzing of the packet readers: 10,000 mutations of the
// packets fspl 1.2.2 wrote, through every in-process reader, then a few hundred of them through
// the real CLI (stdin-info, queue-ls, queue-process) with good packets in the same queue.
//
// The mutations come from a seeded generator: FSPOOL_FUZZ_SEED=N replays or explores a run.
// The last line this file prints is the summary quoted in spec/reliability.md.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sniff } from '../src/codec/sniff.js';
import { decodeHeader, HeaderReader, MAGIC, MAX_METADATA_LEN, PacketError, PREFIX_LEN } from '../src/packet/codec.js';
import type { Header } from '../src/packet/header.js';
import { peekPlainHeader, readHeaderFromFd } from '../src/codec/plainHeader.js';
import { fdOffset } from '../src/sys/fd.js';
import { FIXTURES, FSPOOL, fspool, makeQueue, plainPacket, tempDir } from './helpers/cli.js';
import { aroundMetadata, prng } from './helpers/bytes.js';
import { LONG, put } from './helpers/queue.js';

const SEED = Number(process.env.FSPOOL_FUZZ_SEED ?? 20260601);
const MUTATIONS = 10_000;
/** Any single decode taking this long counts as a hang (generous: CI machines are shared). */
const DECODE_BUDGET_MS = 1000;
/** What one decode of a file of at most ~70 KB may allocate: the bound is 16 MiB of metadata. */
const ALLOC_BUDGET = 64 * 1024 * 1024;
/** A CLI run on a mutated file taking longer than this is taken for a hang (a guard, not a speed test). */
const CLI_BUDGET_MS = 30_000;
const RSS_LIMIT_KB = 150 * 1024;

// ---- Deterministic randomness ----

const rand = prng(SEED);
/** A second stream for how the readers are fed, so that the mutations do not depend on it. */
const chunkRand = prng(SEED ^ 0x9e3779b9);
const int = (n: number) => Math.floor(rand() * n); // 0 .. n-1
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const randomByte = () => int(256);
/** Bytes that mean something to MessagePack or to the prefix. */
const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0x90, 0x9f, 0xa0, 0xc0, 0xc1, 0xc2, 0xc4, 0xcb, 0xcc, 0xcf, 0xd3, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff];
const someByte = () => (rand() < 0.5 ? randomByte() : pick(INTERESTING));

// ---- Fixtures ----

interface Fixture {
  name: string;
  bytes: Buffer;
  headerLength: number;
}
const fixtures: Fixture[] = readdirSync(FIXTURES)
  .filter((f) => /^\d\d-.*\.fspl$/.test(f))
  .sort()
  .map((name) => {
    const bytes = readFileSync(join(FIXTURES, name));
    return { name, bytes, headerLength: decodeHeader(bytes).length };
  });

// ---- Mutations ----

type Kind = 'bitflip' | 'overwrite' | 'truncate' | 'insert' | 'delete' | 'length-lie' | 'meta-crc-lie' | 'meta-mutation' | 'container-lie';
const KINDS: Array<[Kind, number]> = [
  ['bitflip', 15],
  ['overwrite', 10],
  ['truncate', 8],
  ['insert', 7],
  ['delete', 7],
  ['length-lie', 15],
  ['meta-crc-lie', 5],
  ['meta-mutation', 25],
  ['container-lie', 8],
];
const KIND_TOTAL = KINDS.reduce((s, [, w]) => s + w, 0);
function pickKind(): Kind {
  let r = int(KIND_TOTAL);
  for (const [k, w] of KINDS) if ((r -= w) < 0) return k;
  return 'bitflip';
}

/** A position, mostly inside the header, where mutations matter most. */
const position = (f: Fixture, len: number) => (rand() < 0.7 ? int(Math.min(f.headerLength, len)) : int(len));

function fixPrefixCrc(b: Buffer): Buffer {
  if (b.length >= PREFIX_LEN) b.writeUInt32BE(crc32(b.subarray(0, 26)), 26);
  return b;
}

/** Metadata of `depth` nested array32 headers, each claiming 2^24 elements, and nothing else. */
const lyingArrays = (depth: number) => aroundMetadata(Buffer.concat(Array.from({ length: depth }, () => Buffer.from('dd01000000', 'hex'))));

function splice(b: Buffer, at: number, remove: number, insert: number[] = []): Buffer {
  return Buffer.concat([b.subarray(0, at), Buffer.from(insert), b.subarray(Math.min(b.length, at + remove))]);
}

/** One raw edit of `b`: flip, overwrite, insert or delete. */
function rawEdit(b: Buffer, at: () => number): Buffer {
  const out = Buffer.from(b);
  switch (int(4)) {
    case 0:
      if (out.length) {
        const i = at();
        out[i] = out[i]! ^ (1 << int(8));
      }
      return out;
    case 1:
      if (out.length) out[at()] = someByte();
      return out;
    case 2:
      return splice(out, out.length ? at() : 0, 0, Array.from({ length: 1 + int(4) }, someByte));
    default:
      return out.length ? splice(out, at(), 1 + int(4)) : out;
  }
}

function containerHeader(): number[] {
  const u16 = () => (rand() < 0.5 ? 0xffff : int(0x10000));
  const u32 = () => pick([0xffffffff, 0x7fffffff, 99_999, 100_000, 1 << 24, int(2 ** 32)]);
  const be = (n: number, bytes: number) => Array.from({ length: bytes }, (_, i) => Math.floor(n / 256 ** (bytes - 1 - i)) & 0xff);
  switch (int(8)) {
    case 0:
      return [0xdc, ...be(u16(), 2)]; // array16
    case 1:
      return [0xdd, ...be(u32(), 4)]; // array32
    case 2:
      return [pick([0xde, 0xdf]), ...(rand() < 0.5 ? be(u16(), 2) : be(u32(), 4))]; // map
    case 3:
      return [pick([0xc4, 0xc5, 0xc6]), ...be(u32(), 4)]; // bin
    case 4:
      return [pick([0xd9, 0xda, 0xdb]), ...be(u32(), 4)]; // str
    case 5:
      return [pick([0xc7, 0xc8, 0xc9]), ...be(u32(), 4), int(256)]; // ext
    case 6:
      return [0x9f]; // fixarray 15
    default:
      return [pick([0xcf, 0xd3, 0xcb]), ...Array.from({ length: 8 }, randomByte)]; // 64-bit numbers
  }
}

function lengthLie(f: Fixture, b: Buffer): bigint {
  const L = BigInt(f.headerLength - PREFIX_LEN);
  return pick<() => bigint>([
    () => 0n,
    () => 1n,
    () => L - 1n - BigInt(int(8)),
    () => L + 1n + BigInt(int(8)),
    () => BigInt(b.length - PREFIX_LEN), // the whole file is metadata
    () => BigInt(int(2 ** 32)),
    () => BigInt(MAX_METADATA_LEN),
    () => BigInt(MAX_METADATA_LEN + 1),
    () => 1n << 32n,
    () => 1n << 40n,
    () => 1n << 63n,
    () => (1n << 64n) - 1n,
    () => (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32)),
  ])();
}

interface Mutation {
  index: number;
  kind: Kind;
  fixture: string;
  bytes: Buffer;
}

function mutate(index: number): Mutation {
  const f = pick(fixtures);
  const kind = pickKind();
  let b: Buffer = Buffer.from(f.bytes);
  const meta = () => b.subarray(PREFIX_LEN, f.headerLength);
  const payload = () => b.subarray(f.headerLength);
  switch (kind) {
    case 'bitflip':
      for (let n = 1 + int(rand() < 0.7 ? 1 : 8); n > 0; n--) {
        const i = position(f, b.length);
        b[i] = b[i]! ^ (1 << int(8));
      }
      break;
    case 'overwrite':
      for (let n = 1 + int(4); n > 0; n--) b[position(f, b.length)] = someByte();
      break;
    case 'truncate':
      b = b.subarray(0, rand() < 0.8 ? int(f.headerLength + 1) : int(b.length));
      break;
    case 'insert':
      b = splice(b, position(f, b.length), 0, Array.from({ length: 1 + int(16) }, someByte));
      break;
    case 'delete':
      b = splice(b, position(f, b.length), 1 + int(16));
      break;
    case 'length-lie': {
      const lie = lengthLie(f, b);
      b.writeBigUInt64BE(lie, 14);
      // Sometimes make the metadata CRC agree with the claimed slice too, so that the lie
      // reaches the MessagePack decoder (a longer L takes payload bytes as spare metadata).
      if (rand() < 0.4 && lie <= BigInt(b.length - PREFIX_LEN)) b.writeUInt32BE(crc32(b.subarray(PREFIX_LEN, PREFIX_LEN + Number(lie))), 22);
      fixPrefixCrc(b);
      break;
    }
    case 'meta-crc-lie':
      b.writeUInt32BE(int(2 ** 32), 22);
      fixPrefixCrc(b);
      break;
    case 'meta-mutation': {
      let m: Buffer = Buffer.from(meta());
      for (let n = 1 + int(3); n > 0; n--) m = rawEdit(m, () => int(m.length));
      b = aroundMetadata(m, payload());
      break;
    }
    case 'container-lie': {
      const m = Buffer.from(meta());
      const at = int(m.length);
      const h = containerHeader();
      b = aroundMetadata(rand() < 0.5 ? splice(m, at, h.length, h) : splice(m, at, 0, h), payload());
      break;
    }
  }
  return { index, kind, fixture: f.name, bytes: b };
}

// ---- Readers ----

/** What a header looks like, for comparing readers. */
function describeHeader(h: Header): string {
  const cmd = h.cmd.kind === 'Command' ? `${h.cmd.params.map((p) => p.toString('hex')).join(',')};${h.cmd.env.map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).join(',')}` : '';
  return `${h.seq} ${h.ctimeSecs}.${h.ctimeNanos} ${h.cmd.kind} ${cmd}`;
}

type Verdict = { ok: true; header: Header; length: number } | { ok: false; message: string };

const verdictOf = (bytes: Buffer): Verdict => {
  try {
    const { header, length } = decodeHeader(bytes);
    return { ok: true, header, length };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
};

/** A file's verdict as fspool's CLI reaches it: plain packets decoded, anything else refused. */
function cliVerdict(bytes: Buffer): Verdict {
  const layer = sniff(bytes.subarray(0, 64));
  if (layer !== 'fspl') return { ok: false, message: `not plain (${layer})` };
  return verdictOf(bytes);
}

const stats = {
  seed: SEED,
  mutations: 0,
  rejected: 0,
  accepted: 0,
  byKind: {} as Record<string, { run: number; rejected: number; ms: number }>,
  messages: new Map<string, number>(),
  maxDecodeMs: 0,
  maxDecodeWhat: '',
  /** The slowest read of a mutation that raised no finding. */
  maxCleanDecodeMs: 0,
  maxAllocMB: 0,
  inProcessMs: 0,
  cli: { stdinInfo: 0, stdinInfoMaxMs: 0, queueBad: 0, queueGood: 0, queueAcceptedMutants: 0, excluded: 0, lsMaxRssMB: 0 },
};

afterAll(() => {
  const kinds = Object.entries(stats.byKind)
    .map(([k, v]) => `${k}:${v.run}/${v.rejected}/${(v.ms / 1000).toFixed(1)}s`)
    .join(' ');
  console.log(
    `fuzz summary: seed=${stats.seed} mutations=${stats.mutations} rejected=${stats.rejected} accepted-as-valid=${stats.accepted} ` +
      `distinct-messages=${stats.messages.size} max-decode-ms=${stats.maxDecodeMs.toFixed(2)} (${stats.maxDecodeWhat}) max-decode-ms-without-finding=${stats.maxCleanDecodeMs.toFixed(2)} max-alloc-MB=${stats.maxAllocMB.toFixed(1)} ` +
      `in-process-s=${(stats.inProcessMs / 1000).toFixed(1)} | cli: stdin-info runs=${stats.cli.stdinInfo} max-ms=${stats.cli.stdinInfoMaxMs.toFixed(0)} ` +
      `queue good=${stats.cli.queueGood} bad=${stats.cli.queueBad} valid-mutants=${stats.cli.queueAcceptedMutants} excluded=${stats.cli.excluded} ` +
      `queue-ls-500-bad peak-RSS-MB=${stats.cli.lsMaxRssMB.toFixed(1)} | by kind (run/rejected/in-process time): ${kinds}`,
  );
});

/** Mutations kept for the CLI part (small ones, and one large one in ten). */
const kept: Array<Mutation & { verdict: Verdict }> = [];
const KEEP = 3000;
const work = tempDir('fspool-fuzz-');

const allocated = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

/** Rewriting a file 10,000 times costs ~2 ms a time on ext4 (truncate), 40 us on tmpfs. */
const shm = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/fspool-fuzz-') : undefined;
afterAll(() => {
  if (shm) rmSync(shm, { recursive: true, force: true });
});

describe('in-process: 10,000 mutations of the fspl 1.2.2 fixtures', () => {
  it('only PacketError (one line), no hang, bounded allocation, and every reader agrees', () => {
    const file = join(shm ?? work, 'mutant.fspl');
    // Findings are collected, not thrown at the first one, so that one run reports them all
    // (a few examples per kind of finding, each with the mutation that shows it).
    const findings = new Map<string, { count: number; examples: string[] }>();
    const finding = (category: string, m: Mutation, detail: string) => {
      const f = findings.get(category) ?? { count: 0, examples: [] };
      f.count++;
      findingCount++;
      if (f.examples.length < 3) f.examples.push(`#${m.index} ${m.kind} of ${m.fixture}: ${detail} (first bytes ${m.bytes.subarray(0, 48).toString('hex')})`);
      findings.set(category, f);
    };
    /** The message of a PacketError; anything else escaping is a finding. */
    const refusal = (e: unknown, where: string, m: Mutation): string => {
      if (!(e instanceof PacketError)) {
        finding(`${where}: non-PacketError escaped`, m, `${(e as Error)?.constructor?.name}: ${String(e).split('\n')[0]}`);
        return 'escaped';
      }
      if (/[\r\n]/.test(e.message) || e.message.length === 0 || /undefined|\[object |NaN/.test(e.message)) {
        finding(`${where}: message not one clear line`, m, JSON.stringify(e.message));
      }
      return e.message;
    };
    let findingCount = 0;
    let slowest = 0; // of this mutation's reads
    const timed = (where: string, m: Mutation, t0: number) => {
      const dt = performance.now() - t0;
      slowest = Math.max(slowest, dt);
      if (dt > stats.maxDecodeMs) [stats.maxDecodeMs, stats.maxDecodeWhat] = [dt, `${where} #${m.index} ${m.kind} of ${m.fixture}`];
      if (dt > DECODE_BUDGET_MS) finding(`${where}: slower than ${DECODE_BUDGET_MS} ms`, m, `${dt.toFixed(0)} ms`);
    };

    const t0 = performance.now();
    for (let i = 0; i < MUTATIONS; i++) {
      const m = mutate(i);
      const findingsBefore = findingCount;
      slowest = 0;
      const k = (stats.byKind[m.kind] ??= { run: 0, rejected: 0, ms: 0 });
      k.run++;
      stats.mutations++;

      // decodeHeader over the whole buffer.
      const a0 = allocated();
      const d0 = performance.now();
      let verdict: Verdict;
      try {
        const { header, length } = decodeHeader(m.bytes);
        verdict = { ok: true, header, length };
      } catch (e) {
        verdict = { ok: false, message: refusal(e, 'decodeHeader', m) };
      }
      timed('decodeHeader', m, d0);
      const grew = allocated() - a0;
      stats.maxAllocMB = Math.max(stats.maxAllocMB, grew / 2 ** 20);
      if (grew > ALLOC_BUDGET) finding(`decodeHeader: allocated more than ${ALLOC_BUDGET / 2 ** 20} MiB`, m, `${(grew / 2 ** 20).toFixed(0)} MiB for ${m.bytes.length} bytes`);
      if (verdict.ok) {
        stats.accepted++;
        if (!(verdict.header.ctimeNanos < 1e9)) finding('decodeHeader: accepted nanos >= 1e9', m, String(verdict.header.ctimeNanos));
      } else {
        stats.rejected++;
        k.rejected++;
        const key = verdict.message.replace(/\d+/g, 'N').replace(/: .*/, ': ...');
        stats.messages.set(key, (stats.messages.get(key) ?? 0) + 1);
      }
      const want = verdict.ok ? describeHeader(verdict.header) : 'error';
      if (kept.length < KEEP && (m.bytes.length < 4096 || i % 10 === 0)) kept.push({ ...m, verdict });
      // A decode that blew its time or memory budget would blow it again in each reader below:
      // it is reported once, and the run moves on.
      if (grew > ALLOC_BUDGET || performance.now() - d0 > DECODE_BUDGET_MS) {
        k.ms += performance.now() - d0;
        continue;
      }

      // HeaderReader, fed the bytes in random pieces.
      const r = new HeaderReader();
      const t1 = performance.now();
      let got: string;
      try {
        let off = 0;
        while (off < m.bytes.length) {
          const n = 1 + Math.floor(chunkRand() * (chunkRand() < 0.5 ? 16 : 4096));
          r.push(m.bytes.subarray(off, off + n));
          off += n;
        }
        if (r.header) {
          got = describeHeader(r.header);
          if (verdict.ok && !Buffer.from(r.rest).equals(m.bytes.subarray(verdict.length))) finding('HeaderReader: wrong rest', m, `${r.rest.length} bytes`);
        } else {
          got = 'error';
          refusal(r.endError(), 'HeaderReader.endError', m);
        }
      } catch (e) {
        refusal(e, 'HeaderReader.push', m);
        got = 'error';
      }
      timed('HeaderReader', m, t1);
      if (got !== want) finding('HeaderReader disagrees with decodeHeader', m, `${got} vs ${want}`);

      // The file readers: the scan's peek and the processor's exact read from an fd.
      writeFileSync(file, m.bytes);
      const plain = m.bytes.length >= MAGIC.length && m.bytes.subarray(0, MAGIC.length).equals(MAGIC);
      let fd = openSync(file, 'r');
      const t2 = performance.now();
      try {
        const h = peekPlainHeader(fd);
        const seen = h === undefined ? 'not plain' : describeHeader(h);
        if (seen !== (plain ? want : 'not plain')) finding('peekPlainHeader disagrees', m, `${seen} vs ${want}`);
      } catch (e) {
        refusal(e, 'peekPlainHeader', m);
        if (!plain || verdict.ok) finding('peekPlainHeader refused what decodeHeader accepts', m, String(e));
      } finally {
        closeSync(fd);
      }
      timed('peekPlainHeader', m, t2);
      fd = openSync(file, 'r');
      const t3 = performance.now();
      try {
        const { header, headerLength } = readHeaderFromFd(fd, m.bytes.length);
        if (describeHeader(header) !== want) finding('readHeaderFromFd disagrees', m, `${describeHeader(header)} vs ${want}`);
        // The fd is left at the first payload byte, as the zero-copy receiver needs.
        if (fdOffset(fd) !== headerLength || !verdict.ok || headerLength !== verdict.length) finding('readHeaderFromFd: fd not at the payload', m, `${fdOffset(fd)} vs ${headerLength}`);
      } catch (e) {
        refusal(e, 'readHeaderFromFd', m);
        if (verdict.ok) finding('readHeaderFromFd refused what decodeHeader accepts', m, String(e));
      } finally {
        closeSync(fd);
      }
      timed('readHeaderFromFd', m, t3);
      k.ms += performance.now() - d0;
      if (findingCount === findingsBefore) stats.maxCleanDecodeMs = Math.max(stats.maxCleanDecodeMs, slowest);
    }
    stats.inProcessMs = performance.now() - t0;
    // Both outcomes happen, and the deep kinds reach past the CRCs into the decoder.
    expect(stats.rejected).toBeGreaterThan(MUTATIONS / 2);
    expect(stats.accepted).toBeGreaterThan(100);
    expect([...stats.messages.keys()].some((k) => k.startsWith('metadata is not valid MessagePack'))).toBe(true);
    expect(Object.fromEntries(findings)).toEqual({});
  });

  it('a length field claiming 2^40 (prefix CRC right) is refused at once by every reader, nothing allocated', () => {
    const good = fixtures[0]!.bytes;
    for (const lie of [1n << 40n, (1n << 64n) - 1n, BigInt(MAX_METADATA_LEN) + 1n, BigInt(MAX_METADATA_LEN)]) {
      const b = Buffer.from(good);
      b.writeBigUInt64BE(lie, 14);
      fixPrefixCrc(b);
      const file = join(work, 'liar.fspl');
      writeFileSync(file, b);
      const a0 = allocated();
      const t0 = performance.now();
      expect(() => decodeHeader(b)).toThrow(PacketError);
      const r = new HeaderReader();
      if (lie > BigInt(MAX_METADATA_LEN)) expect(() => r.push(b)).toThrow(/exceeds the limit of 16777216 bytes/);
      else expect([r.push(b), r.endError()]).toEqual([false, expect.any(PacketError)]);
      for (const read of [(fd: number) => peekPlainHeader(fd), (fd: number) => readHeaderFromFd(fd, b.length)]) {
        const fd = openSync(file, 'r');
        try {
          expect(() => read(fd)).toThrow(lie > BigInt(MAX_METADATA_LEN) ? /exceeds the limit of 16777216 bytes/ : /truncated header: metadata is 16777216 bytes/);
        } finally {
          closeSync(fd);
        }
      }
      expect(performance.now() - t0).toBeLessThan(500);
      expect(allocated() - a0).toBeLessThan(4 * 2 ** 20);
    }
  });

  it('container lengths that lie (a 45-byte packet) cost no more memory or time than the metadata is long', () => {
    // Three nested "array32 of 2^24 elements" headers: 15 bytes of metadata, both CRCs right.
    // Every element still owed needs at least one more byte, so a decoder can tell at once that
    // 2^24 elements cannot follow in 10 bytes; @msgpack/msgpack allocates each array first.
    const bomb = lyingArrays(3);
    const a0 = allocated();
    const t0 = performance.now();
    expect(() => decodeHeader(bomb)).toThrow(PacketError);
    const dt = performance.now() - t0;
    const grewMB = (allocated() - a0) / 2 ** 20;
    expect(grewMB, `decoding 15 bytes of metadata allocated ${grewMB.toFixed(0)} MB (took ${dt.toFixed(0)} ms)`).toBeLessThan(10);
    expect(dt, `decoding 15 bytes of metadata took ${dt.toFixed(0)} ms`).toBeLessThan(1000);
  });
});

// ---- The CLI ----

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/** Run fspool with a time limit; stdin from a file or from a pipe. */
function run(args: string[], opts: { stdinFile?: string; input?: Buffer; prefix?: string[] } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const stdinFd = opts.stdinFile ? openSync(opts.stdinFile, 'r') : undefined;
    const cmd = opts.prefix ? [...opts.prefix, FSPOOL, ...args] : [FSPOOL, ...args];
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: [stdinFd ?? (opts.input ? 'pipe' : 'ignore'), 'pipe', 'pipe'] });
    if (stdinFd !== undefined) closeSync(stdinFd);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, CLI_BUDGET_MS * 2);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.stdin?.on('error', () => {}); // fspool may refuse before reading all of it
    if (opts.input) child.stdin!.end(opts.input);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString(), ms: performance.now() - t0, timedOut });
    });
  });
}

async function pool<T, R>(items: T[], width: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

/** No crash: no stack trace, no abort, no Node internals on stderr. */
function expectNoCrash(r: Run, what: string): void {
  expect(r.timedOut, `${what} hung`).toBe(false);
  expect(r.signal, `${what} died of a signal: ${r.stderr.slice(-500)}`).toBeNull();
  expect(r.stderr, what).not.toMatch(/^\s+at .*\(.*:\d+:\d+\)$|FATAL ERROR|node:internal|Uncaught|TypeError|RangeError|ReferenceError/m);
}

/**
 * Peak RSS in KiB of a run: getrusage(RUSAGE_CHILDREN).ru_maxrss from a python3 parent (python3
 * is in the CI image; GNU time is not). A death by signal comes back as `signal`.
 */
const RUSAGE = [
  'import os, resource, subprocess, sys',
  'r = subprocess.call(sys.argv[1:])',
  'sys.stderr.write("fspool-peak-rss-kb=%d\\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)',
  'sys.stderr.flush()',
  'os.kill(os.getpid(), -r) if r < 0 else sys.exit(r)',
].join('\n');
async function peakRssKB(args: string[], opts: { stdinFile?: string } = {}): Promise<{ kb: number; r: Run }> {
  const r = await run(args, { ...opts, prefix: ['python3', '-c', RUSAGE] });
  const m = /fspool-peak-rss-kb=(\d+)\n?/.exec(r.stderr);
  if (!m) throw new Error(`no RSS figure: ${r.stderr.slice(-300)}`);
  return { kb: Number(m[1]), r: { ...r, stderr: r.stderr.replace(m[0], '') } };
}

describe('the CLI on mutated files', () => {
  beforeAll(() => {
    // The in-process test fills `kept`; run alone (-t), this fills it here.
    if (kept.length === 0) {
      for (let i = 0; i < MUTATIONS; i++) {
        const m = mutate(i);
        if (kept.length < KEEP && (m.bytes.length < 4096 || i % 10 === 0)) kept.push({ ...m, verdict: verdictOf(m.bytes) });
      }
    }
  });

  /** Up to `n` kept mutations, spread over the kinds, about half of them valid where there are any. */
  function sample(n: number, filter: (m: (typeof kept)[number]) => boolean = () => true) {
    const perKind = Math.ceil(n / KINDS.length);
    const out: typeof kept = [];
    for (const [kind] of KINDS) {
      const of = kept.filter((m) => m.kind === kind && filter(m));
      // Container lies get a third of a share: in-process they run by the hundred, and through
      // the CLI each one can cost a second (the decoder allocates what the lie claims).
      const per = kind === 'container-lie' ? Math.ceil(perKind / 3) : perKind;
      const ok = of.filter((m) => m.verdict.ok).slice(0, Math.floor(per / 2));
      out.push(...ok, ...of.filter((m) => !m.verdict.ok).slice(0, per - ok.length));
    }
    // Top up from the rest when some kinds had too few.
    const taken = new Set(out.map((m) => m.index));
    for (const m of kept) if (out.length < n && !taken.has(m.index) && filter(m)) out.push(m);
    return out.slice(0, n);
  }

  // Through the CLI, a sample of the mutants (every kind among them): a process each, so the
  // long mode (FSPOOL_LONG=1) takes more.
  const CLI_SAMPLE = LONG ? 200 : 36;
  it(`stdin-info on ${CLI_SAMPLE} mutated packets (file and pipe): exit 0, or 1 with exactly one Error: line; agrees with the decoder`, async () => {
    const cases = sample(CLI_SAMPLE);
    const results = await pool(cases, 3, async (m) => {
      const file = join(work, `stdin-${m.index}.fspl`);
      writeFileSync(file, m.bytes);
      const viaPipe = m.index % 2 === 1;
      return { m, viaPipe, r: await run(['stdin-info'], viaPipe ? { input: m.bytes } : { stdinFile: file }) };
    });
    for (const { m, viaPipe, r } of results) {
      const what = `stdin-info ${viaPipe ? '(pipe)' : '(file)'} on mutation #${m.index} (${m.kind} of ${m.fixture})`;
      stats.cli.stdinInfo++;
      stats.cli.stdinInfoMaxMs = Math.max(stats.cli.stdinInfoMaxMs, r.ms);
      expectNoCrash(r, what);
      expect(r.ms, what).toBeLessThan(CLI_BUDGET_MS);
      expect([0, 1], `${what}: ${r.stderr}`).toContain(r.code);
      const v = cliVerdict(m.bytes);
      if (r.code === 1) {
        const lines = r.stderr.split('\n').filter((l) => l.length > 0);
        expect(lines, what).toHaveLength(1);
        expect(lines[0], what).toMatch(/^Error: \S/);
        expect(r.stdout, what).toBe('');
      } else {
        expect(r.stdout, what).toMatch(/^FSPL_SEQ=\d+\n/);
      }
      expect(r.code === 0 ? 'valid' : 'refused', `${what}: ${r.stderr}`).toBe(v.ok ? 'valid' : 'refused');
      if (v.ok) expect(r.stdout.split('\n')[0], what).toBe(`FSPL_SEQ=${v.header.seq}`);
    }
  });

  it('a queue with 150 mutated files and 12 good packets: queue-ls lists every readable one and warns once per bad file; queue-process runs the good ones in order', async () => {
    const q = makeQueue(tempDir('fspool-fuzzq-'));
    const START = 5000n;
    const GOOD = 12;
    // Mutants that decode to a seq the good run would reach are left out: another packet with
    // that seq would (rightly) make the run stop as ambiguous.
    const clash = (m: (typeof kept)[number]) => {
      const v = cliVerdict(m.bytes);
      return v.ok && v.header.seq >= START && v.header.seq <= START + BigInt(GOOD);
    };
    stats.cli.excluded = kept.filter(clash).length;
    const mutants = sample(150, (m) => !clash(m));
    const bad = new Set<string>();
    const validMutants = new Map<string, bigint>();
    for (const m of mutants) {
      const name = `fspl-mutant-${String(m.index).padStart(5, '0')}.fspl`;
      writeFileSync(join(q, 'jobs', name), m.bytes);
      const v = cliVerdict(m.bytes);
      if (v.ok) validMutants.set(name, v.header.seq);
      else bad.add(name);
    }
    stats.cli.queueBad = bad.size;
    stats.cli.queueAcceptedMutants = validMutants.size;
    expect(bad.size).toBeGreaterThan(50);

    // Good packets dropped in as a transport would: prepare and queue-write are not what this
    // looks at.
    expect(fspool(['queue-set-next', '-q', q, String(START)]).code).toBe(0);
    const goodNames = new Map<string, bigint>();
    for (let i = 0; i < GOOD; i++) {
      const seq = START + BigInt(i);
      goodNames.set(put(q, plainPacket(Number(seq), Buffer.from(`good ${i}\n`))), seq);
    }
    stats.cli.queueGood = goodNames.size;
    expect([...goodNames.values()].sort((a, b) => (a < b ? -1 : 1))).toEqual(Array.from({ length: GOOD }, (_, i) => START + BigInt(i)));

    // queue-ls: every readable file listed once with its seq, one WARN per bad file, exit 0.
    const ls = await run(['queue-ls', '-q', q]);
    expectNoCrash(ls, 'queue-ls');
    expect(ls.code, ls.stderr).toBe(0);
    const rows = ls.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/));
    const listed = new Map(rows.map((cols) => [cols[cols.length - 1]!, cols[0]!]));
    expect(rows.length).toBe(listed.size);
    const expected = new Map([...goodNames, ...validMutants].map(([n, s]) => [n, String(s)]));
    expect(Object.fromEntries(listed)).toEqual(Object.fromEntries(expected));
    const warnings = ls.stderr.split('\n').filter((l) => l.length > 0);
    for (const name of bad) expect(warnings.filter((l) => l.includes(`/jobs/${name}`)), `warnings naming ${name}`).toHaveLength(1);
    expect(warnings.filter((l) => !/^ WARN fspool: cannot read job file /.test(l)), 'other stderr lines').toEqual([]);
    expect(warnings).toHaveLength(bad.size);

    // queue-process: the 12 good ones, in order, then the next seq is missing while bad files
    // could hold it: exit 1 with one Error line saying so; bad files stay, skipped.
    const log = join(work, 'ran.log');
    const pr = await run(['queue-process', '-q', q, '--', 'sh', '-c', `printf '%s %s\\n' "$FSPL_SEQ" "$(cat)" >> ${log}`]);
    expectNoCrash(pr, 'queue-process');
    expect(pr.code, pr.stderr).toBe(1);
    expect(readFileSync(log, 'utf8')).toBe(Array.from({ length: GOOD }, (_, i) => `${START + BigInt(i)} good ${i}\n`).join(''));
    expect(fspool(['queue-get-next', '-q', q]).stdout.toString().trim()).toBe(String(START + BigInt(GOOD)));
    const left = new Set(readdirSync(join(q, 'jobs')).filter((n) => /^fspl-.*\.fspl$/.test(n)));
    for (const n of goodNames.keys()) expect(left.has(n), `${n} was processed and removed`).toBe(false);
    for (const n of [...bad, ...validMutants.keys()]) expect(left.has(n), `${n} is left alone`).toBe(true);
    const errLines = pr.stderr.split('\n').filter((l) => l.length > 0);
    for (const name of bad) expect(errLines.filter((l) => l.includes(`/jobs/${name}`)).length, `queue-process lines naming ${name}`).toBeGreaterThanOrEqual(1);
    const errors = errLines.filter((l) => /^(Error|ERROR)/.test(l.trim()));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(new RegExp(`^Error: seq ${START + BigInt(GOOD)} not found, and \\d+ job file\\(s\\) that cannot be read could hold it`));
    for (const [name, seq] of validMutants) {
      if (seq < START) expect(errLines.some((l) => l.includes(`stale job file ${q}/jobs/${name}`)), `${name} (seq ${seq}) reported stale`).toBe(true);
    }
  });

  it('queue-ls over 500 bad files: one warning each, peak RSS under 150 MB', async () => {
    const q = makeQueue(tempDir('fspool-fuzzrss-'));
    const bad = kept.filter((m) => !cliVerdict(m.bytes).ok);
    expect(bad.length).toBeGreaterThan(100);
    // The largest first, so that the 70 KB headers are among them.
    bad.sort((a, b) => b.bytes.length - a.bytes.length);
    for (let i = 0; i < 500; i++) writeFileSync(join(q, 'jobs', `fspl-bad-${String(i).padStart(3, '0')}.fspl`), bad[i % bad.length]!.bytes);
    const { kb, r } = await peakRssKB(['queue-ls', '-q', q]);
    stats.cli.lsMaxRssMB = kb / 1024;
    expectNoCrash(r, 'queue-ls of 500 bad files');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((l) => /^ WARN fspool: cannot read job file /.test(l))).toHaveLength(500);
    expect(kb).toBeLessThan(RSS_LIMIT_KB);
  });

  it('a 45-byte packet of lying container lengths: stdin-info and queue-ls refuse it within 150 MB', async () => {
    // 40 levels (230 bytes) instead of 3 make queue-ls die of a V8 heap OOM (SIGABRT, ~4 GB).
    const bomb = lyingArrays(3);
    const file = join(work, 'bomb.fspl');
    writeFileSync(file, bomb);
    const q = makeQueue(tempDir('fspool-fuzzbomb-'));
    writeFileSync(join(q, 'jobs', 'fspl-bomb.fspl'), bomb);
    const info = await peakRssKB(['stdin-info'], { stdinFile: file });
    expectNoCrash(info.r, 'stdin-info on the bomb');
    expect(info.r.code).toBe(1);
    expect(info.r.stderr).toMatch(/^Error: metadata (is not valid MessagePack|declares more elements than it has bytes)/);
    const ls = await peakRssKB(['queue-ls', '-q', q]);
    expectNoCrash(ls.r, 'queue-ls with the bomb');
    expect(ls.r.code).toBe(0);
    expect(ls.r.stderr).toMatch(/cannot read job file .*fspl-bomb\.fspl: metadata (is not valid MessagePack|declares more elements than it has bytes)/);
    expect(info.kb, `stdin-info peak RSS ${Math.round(info.kb / 1024)} MB on a 45-byte packet`).toBeLessThan(RSS_LIMIT_KB);
    expect(ls.kb, `queue-ls peak RSS ${Math.round(ls.kb / 1024)} MB over one 45-byte job file`).toBeLessThan(RSS_LIMIT_KB);
  });
});
