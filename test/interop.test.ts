// Interoperability between fspool (bin/fspool, a real process) and the real fspl 1.2.2
// (/usr/bin/fspl): packets, seqfiles, queues, locks and exit codes, in both directions.
// No mocks: every check runs both programs on real files in a temp directory.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FIXTURES, FSPOOL, type Result, runAsync, runSync, type RunOpts, tempDir } from './helpers/cli.js';
import { jobFiles, nextseqText, sleep, waitFor } from './helpers/queue.js';
import { aroundMetadata } from './helpers/bytes.js';

type Tool = 'fspl' | 'fspool';
const TOOLS: Tool[] = ['fspl', 'fspool'];
const BIN: Record<Tool, string> = { fspl: 'fspl', fspool: FSPOOL };
const other = (t: Tool): Tool => (t === 'fspl' ? 'fspool' : 'fspl');

// A small, fixed environment: a local zone with a non-zero, non-whole-hour offset makes the
// RFC 3339 local times worth comparing; $SHELL runs decoders in both programs.
const ENV: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: process.env.HOME ?? '/tmp',
  TZ: 'Asia/Kolkata',
  SHELL: '/bin/sh',
  LC_ALL: 'C',
};

const NL = Buffer.from('\n');

function run(tool: Tool, args: string[], opts: RunOpts = {}): Result {
  return runSync(BIN[tool], args, { env: ENV, timeoutMs: 20_000, ...opts });
}

/** Run and insist on exit 0; returns stdout. */
function ok(tool: Tool, args: string[], opts: RunOpts = {}): Buffer {
  const r = run(tool, args, opts);
  expect(r.code, `${tool} ${args.join(' ')} failed: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** A shell script, with positional arguments, in `cwd`. */
function sh(script: string, args: string[], cwd: string): Result {
  const r = runSync('/bin/sh', ['-c', script, 'sh', ...args], { env: ENV, cwd, timeoutMs: 20_000 });
  expect(r.code, `sh script failed: ${r.stderr}`).toBe(0);
  return r;
}

function start(tool: Tool, args: string[], cwd: string) {
  return runAsync(BIN[tool], args, { env: ENV, cwd });
}

function splitLines(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, at)) {
    out.push(b.subarray(at, i));
    at = i + 1;
  }
  if (at < b.length) out.push(b.subarray(at));
  return out;
}

const fixture = (name: string) => readFileSync(join(FIXTURES, name));

/** Every byte value once: NUL, newlines, bytes >= 0x80. */
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/**
 * Prepares p1..p5 with one tool on a fresh seqfile in `dir` (seq 1..5):
 *   p1 params [x, "two words"], env A=1 then X=\xff\xfe (not UTF-8), payload "hello\n"
 *   p2 no params, payload: all 256 byte values (from the file `bin`)
 *   p3 NOP
 *   p4 params [é, ""], env ZZ=z then the empty key (not sorted), no payload
 *   p5 Fail
 * Built with sh and env because Node's spawn env cannot carry non-UTF-8 values.
 */
const PREPARE_SCRIPT = `
set -e
P="$1"
printf 'hello\\n' | env FSPL_SET_A=1 FSPL_SET_X="$(printf '\\377\\376')" "$P" prepare -s seq -i - -- x 'two words' > p1
"$P" prepare -s seq -i bin > p2
"$P" prepare-nop -s seq > p3
env FSPL_SET_ZZ=z FSPL_SET_=empty "$P" prepare -s seq -- é '' > p4
"$P" prepare-fail -s seq > p5
`;

function preparePackets(tool: Tool, dir: string): Record<'p1' | 'p2' | 'p3' | 'p4' | 'p5', Buffer> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bin'), BINARY);
  sh(PREPARE_SCRIPT, [BIN[tool]], dir);
  const read = (n: string) => readFileSync(join(dir, n));
  return { p1: read('p1'), p2: read('p2'), p3: read('p3'), p4: read('p4'), p5: read('p5') };
}

/** What each command job of preparePackets should deliver. */
const SENT: Record<number, { params: string[]; payload: Buffer; env: Buffer[] }> = {
  1: {
    params: ['x', 'two words'],
    payload: Buffer.from('hello\n'),
    env: [
      Buffer.from('FSPL_PARAM_1=x'),
      Buffer.from('FSPL_PARAM_2=two words'),
      Buffer.from('FSPL_SET_A=1'),
      Buffer.concat([Buffer.from('FSPL_SET_X='), Buffer.from([0xff, 0xfe])]),
    ],
  },
  2: { params: [], payload: BINARY, env: [] },
  4: {
    params: ['é', ''],
    payload: Buffer.alloc(0),
    env: [Buffer.from('FSPL_PARAM_1=é'), Buffer.from('FSPL_PARAM_2='), Buffer.from('FSPL_SET_ZZ=z'), Buffer.from('FSPL_SET_=empty')],
  },
};

/** The receiver: its argv, its FSPL_* environment (sorted bytewise) and its stdin. */
const RECV = `
printf 'job %s argc=%s\\n' "$FSPL_SEQ" "$#"
for a in "$@"; do printf 'arg=[%s]\\n' "$a"; done
env | grep -a '^FSPL_' | LC_ALL=C sort
printf 'payload=['; cat; printf ']\\n'
`;
const recvArgs = (q: string, tool: Tool) => ['queue-process', '-q', q, '--allow-job-params', 'sh', '--', '-c', RECV, 'arg0', `fixed-${tool}`];

/** The receiver's expected output for one job, given the env the job should have. */
function expectedRun(seq: number, processor: Tool, envLines: Buffer[]): Buffer {
  const sent = SENT[seq]!;
  const args = [`fixed-${processor}`, ...sent.params];
  return Buffer.concat([
    Buffer.from(`job ${seq} argc=${args.length}\n`),
    ...args.map((a) => Buffer.from(`arg=[${a}]\n`)),
    ...[...envLines].sort(Buffer.compare).flatMap((l) => [l, NL]),
    Buffer.from('payload=['),
    sent.payload,
    Buffer.from(']\n'),
  ]);
}

/**
 * Packet with its ctime replaced by [0, 0] and the length and CRCs fixed up, so that two
 * packets made at different instants can be compared byte for byte. Parses the msgpack by
 * hand (not with fspool's codec) so the test does not trust the code under test.
 */
function withoutCtime(p: Buffer): Buffer {
  expect(p.subarray(0, 14).toString('latin1')).toBe('*FILESPOOLER\x00\x01');
  const len = Number(p.readBigUInt64BE(14));
  const meta = p.subarray(30, 30 + len);
  const key = Buffer.from([0xa5, ...Buffer.from('ctime'), 0x92]);
  const at = meta.indexOf(key);
  expect(at).toBeGreaterThan(0);
  const intLen = (b: number) => (b < 0x80 || b >= 0xe0 ? 1 : ({ 0xcc: 2, 0xcd: 3, 0xce: 5, 0xcf: 9, 0xd0: 2, 0xd1: 3, 0xd2: 5, 0xd3: 9 } as Record<number, number>)[b]!);
  const secsAt = at + key.length;
  const nanosAt = secsAt + intLen(meta[secsAt]!);
  const end = nanosAt + intLen(meta[nanosAt]!);
  expect(meta.subarray(end, end + 9)).toEqual(Buffer.from([0xa8, ...Buffer.from('cmd_type')]));
  const newMeta = Buffer.concat([meta.subarray(0, secsAt), Buffer.from([0, 0]), meta.subarray(end)]);
  const prefix = Buffer.from(p.subarray(0, 30));
  prefix.writeBigUInt64BE(BigInt(newMeta.length), 14);
  prefix.writeUInt32BE(crc32(newMeta), 22);
  prefix.writeUInt32BE(crc32(prefix.subarray(0, 26)), 26);
  return Buffer.concat([prefix, newMeta, p.subarray(30 + len)]);
}

// ---------------------------------------------------------------------------------------------

describe('1, 2: packets prepared by one program are written and processed by the other', () => {
  const combos: Array<[Tool, Tool, Tool]> = [
    ['fspl', 'fspool', 'fspool'],
    ['fspool', 'fspl', 'fspl'],
    ['fspool', 'fspool', 'fspl'],
    ['fspl', 'fspl', 'fspool'],
  ];
  it.each(combos)('%s prepare -> %s queue-write -> %s queue-process, written out of order', (preparer, writer, processor) => {
    const dir = tempDir();
    const p = preparePackets(preparer, join(dir, 'packets'));
    const work = join(dir, 'a');
    mkdirSync(work);
    ok(processor, ['queue-init', '-q', 'q'], { cwd: work });

    // 4, 2 and the NOP 3 arrive first: seq 1 is missing, so nothing may run yet.
    for (const k of ['p4', 'p2', 'p3'] as const) ok(writer, ['queue-write', '-q', 'q'], { cwd: work, input: p[k] });
    const early = run(processor, recvArgs('q', processor), { cwd: work });
    expect(early.code, early.stderr).toBe(0);
    expect(early.stdout.length).toBe(0);
    expect(nextseqText(join(work, 'q'))).toBe('1\n');
    expect(jobFiles(join(work, 'q'))).toHaveLength(3);

    ok(writer, ['queue-write', '-q', 'q'], { cwd: work, input: p.p1 });
    expect(jobFiles(join(work, 'q'))).toHaveLength(4);

    // What the job's environment must be, by fspl's own reading of the queued packet
    // (this includes FSPL_JOB_FILENAME/QUEUEDIR/FULLPATH), and by what was sent.
    const envOf = (seq: number) => splitLines(ok('fspl', ['queue-info', '-q', 'q', '-j', String(seq)], { cwd: work }));
    const envs = { 1: envOf(1), 2: envOf(2), 4: envOf(4) } as Record<number, Buffer[]>;
    for (const seq of [1, 2, 4]) {
      const got = envs[seq]!.map((l) => l.toString('latin1'));
      expect(got[0]).toBe(`FSPL_SEQ=${seq}`);
      expect(got).toContain('FSPL_JOB_QUEUEDIR=q');
      // the packet's params and FSPL_SET_ vars come last, in the order they were sent
      const tail = envs[seq]!.slice(envs[seq]!.length - SENT[seq]!.env.length);
      expect(tail).toEqual(SENT[seq]!.env);
    }

    // A copy of the queue, to be processed by the other program for comparison.
    const work2 = join(dir, 'b');
    mkdirSync(work2);
    cpSync(join(work, 'q'), join(work2, 'q'), { recursive: true });

    const r = run(processor, recvArgs('q', processor), { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    const expected = Buffer.concat([1, 2, 4].map((s) => expectedRun(s, processor, envs[s]!)));
    expect(r.stdout.toString('latin1')).toBe(expected.toString('latin1'));
    expect(r.stdout.equals(expected)).toBe(true);
    expect(nextseqText(join(work, 'q'))).toBe('5\n');
    expect(jobFiles(join(work, 'q'))).toEqual([]);

    // The other program on the same queue gives the same receiver output, byte for byte.
    const o = run(other(processor), recvArgs('q', processor), { cwd: work2 });
    expect(o.code, o.stderr).toBe(0);
    expect(o.stdout.equals(expected)).toBe(true);
    expect(nextseqText(join(work2, 'q'))).toBe('5\n');
  });

  it.each(TOOLS)('NOP and Fail packets prepared by %s: a NOP succeeds and a Fail fails for both processors', (preparer) => {
    const dir = tempDir();
    const nop = ok(preparer, ['prepare-nop', '-s', 'S'], { cwd: dir });
    const fail = ok(preparer, ['prepare-fail', '-s', 'S'], { cwd: dir });
    const cmd = ok(preparer, ['prepare', '-s', 'S', '-i', '-'], { cwd: dir, input: 'three' });
    for (const t of TOOLS) {
      const q = `q-${t}`;
      ok(t, ['queue-init', '-q', q], { cwd: dir });
      for (const p of [cmd, fail, nop]) ok(other(t), ['queue-write', '-q', q], { cwd: dir, input: p });
      const recv = ['queue-process', '-q', q, 'sh', '--', '-c', 'echo "ran $FSPL_SEQ $(cat)"'];
      // retry: the NOP 1 is a success, the Fail 2 stops the run with exit 1 and stays
      const r = run(t, recv, { cwd: dir });
      expect(r.code, `${t}: ${r.stderr}`).toBe(1);
      expect(r.stdout.length).toBe(0);
      expect(nextseqText(join(dir, q))).toBe('2\n');
      expect(jobFiles(join(dir, q))).toHaveLength(2);
      // delete: the Fail is dropped and the run goes on to 3
      const d = run(t, [...recv.slice(0, 3), '--on-error', 'delete', ...recv.slice(3)], { cwd: dir });
      expect(d.code, `${t}: ${d.stderr}`).toBe(0);
      expect(d.stdout.toString()).toBe('ran 3 three\n');
      expect(nextseqText(join(dir, q))).toBe('4\n');
      expect(jobFiles(join(dir, q))).toEqual([]);
    }
  });

  it('fspool and fspl prepare the same bytes for the same request (only ctime differs)', () => {
    const dir = tempDir();
    const a = preparePackets('fspl', join(dir, 'fspl'));
    const b = preparePackets('fspool', join(dir, 'fspool'));
    for (const k of ['p1', 'p2', 'p3', 'p4', 'p5'] as const) {
      expect(b[k].length, k).toBe(a[k].length);
      expect(withoutCtime(b[k]).toString('hex'), k).toBe(withoutCtime(a[k]).toString('hex'));
    }
    // header sizes as fspl writes them
    expect(b.p3.length).toBe(66);
    expect(b.p5.length).toBe(67);
  });

  it('fspl stdin-info and stdin-payload read fspool packets exactly as fspool does', () => {
    const dir = tempDir();
    const packets = { ...preparePackets('fspool', join(dir, 'a')) };
    for (const [k, pkt] of Object.entries(packets)) {
      const a = ok('fspl', ['stdin-info'], { input: pkt });
      const b = ok('fspool', ['stdin-info'], { input: pkt });
      expect(b.equals(a), `${k}:\n${a.toString('latin1')}\n${b.toString('latin1')}`).toBe(true);
      expect(ok('fspool', ['stdin-payload'], { input: pkt }).equals(ok('fspl', ['stdin-payload'], { input: pkt }))).toBe(true);
    }
    // env in environment order (not sorted), non-UTF-8 values as raw bytes
    const info1 = splitLines(ok('fspl', ['stdin-info'], { input: packets.p1 }));
    expect(info1.slice(-4)).toEqual(SENT[1]!.env);
    const info4 = splitLines(ok('fspl', ['stdin-info'], { input: packets.p4 }));
    expect(info4.slice(-2).map(String)).toEqual(['FSPL_SET_ZZ=z', 'FSPL_SET_=empty']);
    expect(ok('fspl', ['stdin-payload'], { input: packets.p2 }).equals(BINARY)).toBe(true);
  });

  it('fspl stdin-info reads an fspool packet with a non-UTF-8 env value like fixture 07', () => {
    const dir = tempDir();
    sh(`env -i FSPL_SET_X="$(printf '\\377\\376')" "$1" prepare -s - > p`, [FSPOOL], dir);
    const pkt = readFileSync(join(dir, 'p'));
    const fixed = fixture('07-nonutf8-env-value.fspl');
    expect(withoutCtime(pkt).equals(withoutCtime(fixed))).toBe(true);
    const info = ok('fspl', ['stdin-info'], { input: pkt });
    expect(info.includes(Buffer.from([...Buffer.from('FSPL_SET_X='), 0xff, 0xfe, 0x0a]))).toBe(true);
    expect(ok('fspool', ['stdin-info'], { input: pkt }).equals(info)).toBe(true);
  });

  it('stdin-process: each runs the other\'s packets the same way', () => {
    const dir = tempDir();
    for (const preparer of TOOLS) {
      const p = preparePackets(preparer, join(dir, preparer));
      const script = `printf '%s|' "$FSPL_SEQ" "$@"; env | grep -a '^FSPL_SET_' | LC_ALL=C sort; cat`;
      const args = ['stdin-process', '--allow-job-params', 'sh', '--', '-c', script, 'arg0'];
      for (const k of ['p1', 'p2', 'p4'] as const) {
        const a = ok('fspl', args, { input: p[k] });
        const b = ok('fspool', args, { input: p[k] });
        expect(b.equals(a), `${preparer} ${k}`).toBe(true);
      }
      expect(ok('fspool', args, { input: p.p1 }).toString('latin1')).toBe('1|x|two words|FSPL_SET_A=1\nFSPL_SET_X=\xff\xfe\nhello\n');
      // a Fail packet is a failure for both
      expect(run('fspl', args, { input: p.p5 }).code).toBe(1);
      expect(run('fspool', args, { input: p.p5 }).code).toBe(1);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('3: both read the same queue and packets identically', () => {
  it('queue-ls, queue-info, queue-payload, queue-get-next agree on a mixed queue', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    // seqs 1..6 from one seqfile, alternating preparer and writer
    for (let i = 1; i <= 6; i++) {
      const prep: Tool = i % 2 ? 'fspl' : 'fspool';
      const writer: Tool = i % 3 ? 'fspool' : 'fspl';
      const pkt = i === 5 ? ok(prep, ['prepare-nop', '-s', 'S'], { cwd: dir }) : ok(prep, ['prepare', '-s', 'S', '-i', '-', '--', `p${i}`], { cwd: dir, input: `payload ${i}\n` });
      ok(writer, ['queue-write', '-q', 'q'], { cwd: dir, input: pkt });
    }
    // and packets fspl wrote long ago, with big seqs and odd-but-valid encodings
    for (const f of ['08-seq200.fspl', '09-seq70000-nop.fspl', 'odd-17-array-encoded-struct-ACCEPTED.fspl', 'odd-18-negative-secs-ACCEPTED.fspl']) {
      writeFileSync(join(dir, 'q/jobs', `fspl-${f}`), fixture(f));
    }
    // something that is not a job name must be ignored by both
    writeFileSync(join(dir, 'q/jobs', 'tmp-fspl-x.fspl.tmp'), 'garbage');
    writeFileSync(join(dir, 'q/jobs', 'notes.txt'), 'garbage');

    const ls = ok('fspl', ['queue-ls', '-q', 'q'], { cwd: dir });
    expect(ok('fspool', ['queue-ls', '-q', 'q'], { cwd: dir }).toString()).toBe(ls.toString());
    const ids = splitLines(ls).slice(1).map((l) => l.toString().split(/ +/)[0]);
    expect(ids).toEqual(['1', '2', '3', '4', '5', '6', '17', '18', '200', '70000']);
    expect(ls.toString()).toMatch(/^ID {19}creation timestamp {10}filename\n/);
    // odd-18's ctime is -128 s: 1969-12-31T23:57:52Z, shown in the local zone (+05:30)
    expect(ls.toString()).toContain('1970-01-01T05:27:52+05:30');

    for (const id of ids) {
      const a = ok('fspl', ['queue-info', '-q', 'q', '-j', id!], { cwd: dir });
      expect(ok('fspool', ['queue-info', '-q', 'q', '-j', id!], { cwd: dir }).toString(), `queue-info -j ${id}`).toBe(a.toString());
      const pa = ok('fspl', ['queue-payload', '-q', 'q', '-j', id!], { cwd: dir });
      expect(ok('fspool', ['queue-payload', '-q', 'q', '-j', id!], { cwd: dir }).equals(pa), `queue-payload -j ${id}`).toBe(true);
    }
    expect(ok('fspool', ['queue-payload', '-q', 'q', '-j', '3'], { cwd: dir }).toString()).toBe('payload 3\n');
    // the queue dir as given, absolute this time
    const abs = ok('fspl', ['queue-info', '-q', join(dir, 'q'), '-j', '4']);
    expect(ok('fspool', ['queue-info', '-q', join(dir, 'q'), '-j', '4']).toString()).toBe(abs.toString());

    expect(ok('fspool', ['queue-get-next', '-q', 'q'], { cwd: dir }).toString()).toBe(ok('fspl', ['queue-get-next', '-q', 'q'], { cwd: dir }).toString());
    expect(ok('fspool', ['queue-get-next', '-q', 'q'], { cwd: dir }).toString()).toBe('1\n');
  });

  const numbered = readdirSync(FIXTURES).filter((f) => /^\d\d-.*\.fspl$/.test(f) || /^odd-.*\.fspl$/.test(f));
  it('has the fixtures', () => expect(numbered.length).toBe(11));
  it.each(numbered)('stdin-info and stdin-payload agree on %s', (name) => {
    const file = join(FIXTURES, name);
    for (const opts of [{ input: readFileSync(file) }, { stdinFile: file }] as RunOpts[]) {
      const info = ok('fspl', ['stdin-info'], opts);
      expect(ok('fspool', ['stdin-info'], opts).toString('latin1')).toBe(info.toString('latin1'));
      const pay = ok('fspl', ['stdin-payload'], opts);
      expect(ok('fspool', ['stdin-payload'], opts).equals(pay)).toBe(true);
    }
  });

  it('gzip-encoded packets (fixture 10, and gzip of each side\'s packets) via -d in a queue', () => {
    const dir = tempDir();
    ok('fspool', ['queue-init', '-q', 'q'], { cwd: dir });
    writeFileSync(join(dir, 'q/jobs/fspl-10-gzip.fspl'), fixture('10-gzip-encoded.fspl.gz')); // seq 1
    ok('fspool', ['prepare-set-next', '-s', 'S', '2'], { cwd: dir });
    const p2 = ok('fspool', ['prepare', '-s', 'S', '-i', '-', '--', 'second'], { cwd: dir, input: BINARY });
    const p3 = ok('fspl', ['prepare', '-s', 'S', '-i', '-', '--', 'third'], { cwd: dir, input: 'three\n' });
    // As fspl's manual writes them: `prepare | gzip | queue-write`, by either program.
    ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: gzipSync(p2) });
    ok('fspool', ['queue-write', '-q', 'q'], { cwd: dir, input: gzipSync(p3) });
    const d = ['-d', 'gzip -dc'];

    const ls = ok('fspl', ['queue-ls', '-q', 'q', ...d], { cwd: dir });
    expect(ok('fspool', ['queue-ls', '-q', 'q', ...d], { cwd: dir }).toString()).toBe(ls.toString());
    expect(splitLines(ls)).toHaveLength(4);
    for (const id of ['1', '2', '3']) {
      const info = ok('fspl', ['queue-info', '-q', 'q', ...d, '-j', id], { cwd: dir });
      expect(ok('fspool', ['queue-info', '-q', 'q', ...d, '-j', id], { cwd: dir }).toString()).toBe(info.toString());
      const pay = ok('fspl', ['queue-payload', '-q', 'q', ...d, '-j', id], { cwd: dir });
      expect(ok('fspool', ['queue-payload', '-q', 'q', ...d, '-j', id], { cwd: dir }).equals(pay)).toBe(true);
    }
    expect(ok('fspool', ['queue-payload', '-q', 'q', ...d, '-j', '1'], { cwd: dir }).toString()).toBe('zipped payload\n');
    expect(ok('fspool', ['queue-payload', '-q', 'q', ...d, '-j', '2'], { cwd: dir }).equals(BINARY)).toBe(true);

    // Processing through the decoder, by each program on its own copy: the same output.
    cpSync(join(dir, 'q'), join(dir, 'q2'), { recursive: true });
    const recv = ['--allow-job-params', 'sh', '--', '-c', 'printf "<%s %s>" "$FSPL_SEQ" "$*"; cat', 'arg0'];
    const a = ok('fspool', ['queue-process', '-q', 'q', ...d, ...recv], { cwd: dir });
    const b = ok('fspl', ['queue-process', '-q', 'q2', ...d, ...recv], { cwd: dir });
    expect(a.equals(Buffer.concat([Buffer.from('<1 >zipped payload\n<2 second>'), BINARY, Buffer.from('<3 third>three\n')]))).toBe(true);
    expect(a.equals(b)).toBe(true);
    expect(nextseqText(join(dir, 'q'))).toBe('4\n');
    expect(jobFiles(join(dir, 'q'))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('4: seqfiles and queues are interchangeable', () => {
  it('fspl and fspool take turns on one seqfile: 1, 2, 3, ... without gaps or repeats', () => {
    const dir = tempDir();
    const seqs: string[] = [];
    const kinds = ['prepare', 'prepare-nop', 'prepare-fail', 'prepare'];
    for (let i = 0; i < 8; i++) {
      const tool: Tool = i % 2 ? 'fspool' : 'fspl';
      const pkt = ok(tool, [kinds[i % 4]!, '-s', 'S'], { cwd: dir });
      // read back by the *other* program
      seqs.push(splitLines(ok(other(tool), ['stdin-info'], { input: pkt }))[0]!.toString());
      expect(readFileSync(join(dir, 'S'), 'latin1')).toBe(`${i + 2}\n`);
    }
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => `FSPL_SEQ=${n}`));
    expect(existsSync(join(dir, 'S.lock'))).toBe(true);
  });

  it('prepare-set-next / prepare-get-next cross-checked', () => {
    const dir = tempDir();
    // a missing seqfile means 1 to both
    expect(ok('fspl', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('1\n');
    expect(ok('fspool', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('1\n');
    ok('fspool', ['prepare-set-next', '-s', 'S', '500'], { cwd: dir });
    expect(readFileSync(join(dir, 'S'), 'latin1')).toBe('500\n');
    expect(ok('fspl', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('500\n');
    const p = ok('fspl', ['prepare-nop', '-s', 'S'], { cwd: dir });
    expect(splitLines(ok('fspool', ['stdin-info'], { input: p }))[0]!.toString()).toBe('FSPL_SEQ=500');
    expect(ok('fspool', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('501\n');
    ok('fspl', ['prepare-set-next', '-s', 'S', '18446744073709551000'], { cwd: dir });
    expect(ok('fspool', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('18446744073709551000\n');
    const q = ok('fspool', ['prepare-nop', '-s', 'S'], { cwd: dir });
    expect(splitLines(ok('fspl', ['stdin-info'], { input: q }))[0]!.toString()).toBe('FSPL_SEQ=18446744073709551000');
    expect(ok('fspl', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('18446744073709551001\n');
    // a hand-edited seqfile reads the same in both
    writeFileSync(join(dir, 'S'), ' 42\n');
    expect(ok('fspl', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('42\n');
    expect(ok('fspool', ['prepare-get-next', '-s', 'S'], { cwd: dir }).toString()).toBe('42\n');
  });

  it('a seqfile locked by flock(1) stops both prepares at once with exit 1', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'S'), '5\n');
    const holder = runAsync('flock', [join(dir, 'S.lock'), 'sh', '-c', 'touch "$0"; i=0; while [ ! -e "$1" ] && [ $i -lt 600 ]; do sleep 0.025; i=$((i+1)); done', join(dir, 'held'), join(dir, 'release')], { env: ENV });
    try {
      await waitFor('the holder to take the lock', () => existsSync(join(dir, 'held')));
      for (const t of TOOLS) {
        const r = run(t, ['prepare-nop', '-s', 'S'], { cwd: dir, timeoutMs: 10_000 });
        expect(r.code, t).toBe(1);
        expect(r.stdout.length).toBe(0);
      }
      expect(readFileSync(join(dir, 'S'), 'latin1')).toBe('5\n');
    } finally {
      writeFileSync(join(dir, 'release'), '');
    }
    expect((await holder.done).code).toBe(0);
  });

  it.each(TOOLS)('a queue made by %s queue-init is processed by fspl and fspool in turns', (initTool) => {
    const dir = tempDir();
    ok(initTool, ['queue-init', '-q', 'q'], { cwd: dir });
    const q = join(dir, 'q');
    for (let i = 1; i <= 6; i++) {
      const pkt = ok(i % 2 ? 'fspool' : 'fspl', ['prepare', '-s', 'S', '-i', '-'], { cwd: dir, input: `data${i}` });
      ok(i % 3 ? 'fspl' : 'fspool', ['queue-write', '-q', 'q'], { cwd: dir, input: pkt });
    }
    const recv = (t: Tool) => ['queue-process', '-q', 'q', '-n', '2', 'sh', '--', '-c', 'printf "%s %s %s\\n" "$FSPL_SEQ" "$0" "$(cat)"', t];
    // the program that did not make the queue goes first
    const first = other(initTool);
    for (let k = 0; k < 3; k++) {
      const tool = k % 2 ? other(first) : first;
      const out = ok(tool, recv(tool), { cwd: dir }).toString();
      expect(out).toBe(`${2 * k + 1} ${tool} data${2 * k + 1}\n${2 * k + 2} ${tool} data${2 * k + 2}\n`);
      expect(nextseqText(q)).toBe(`${2 * k + 3}\n`);
      for (const t of TOOLS) expect(ok(t, ['queue-get-next', '-q', 'q'], { cwd: dir }).toString()).toBe(`${2 * k + 3}\n`);
      expect(jobFiles(q)).toHaveLength(4 - 2 * k);
    }
    // nothing left: both are happy with an empty queue
    for (const t of TOOLS) expect(ok(t, recv(t), { cwd: dir }).length).toBe(0);
  });

  it.each(TOOLS)('queue-set-next by %s is read and obeyed by the other', (setter) => {
    const reader = other(setter);
    const dir = tempDir();
    ok(setter, ['queue-init', '-q', 'q'], { cwd: dir });
    for (let i = 1; i <= 5; i++) ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspool', ['prepare', '-s', 'S', '-i', '-'], { cwd: dir, input: `d${i}` }) });
    const recv = ['queue-process', '-q', 'q', 'sh', '--', '-c', 'echo "$FSPL_SEQ $(cat)"'];

    ok(setter, ['queue-set-next', '-q', 'q', '3'], { cwd: dir });
    expect(nextseqText(join(dir, 'q'))).toBe('3\n');
    expect(ok(reader, ['queue-get-next', '-q', 'q'], { cwd: dir }).toString()).toBe('3\n');
    expect(ok(reader, recv, { cwd: dir }).toString()).toBe('3 d3\n4 d4\n5 d5\n');
    expect(ok(setter, ['queue-get-next', '-q', 'q'], { cwd: dir }).toString()).toBe('6\n');

    ok(reader, ['queue-set-next', '-q', 'q', '1'], { cwd: dir });
    expect(ok(setter, ['queue-get-next', '-q', 'q'], { cwd: dir }).toString()).toBe('1\n');
    // 1 and 2 are still there; 3 was run and deleted, so the run stops at the gap
    expect(ok(setter, recv, { cwd: dir }).toString()).toBe('1 d1\n2 d2\n');
    expect(ok(reader, ['queue-get-next', '-q', 'q'], { cwd: dir }).toString()).toBe('3\n');
    expect(jobFiles(join(dir, 'q'))).toEqual([]);
  });

  it.each(TOOLS)('an --append-only queue made by %s can be written and listed but neither processes it', (initTool) => {
    const dir = tempDir();
    ok(initTool, ['queue-init', '--append-only', '-q', 'q'], { cwd: dir });
    expect(readdirSync(join(dir, 'q'))).toEqual(['jobs']);
    ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspool', ['prepare', '-s', 'S'], { cwd: dir }) });
    ok('fspool', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspl', ['prepare', '-s', 'S'], { cwd: dir }) });
    const ls = ok('fspl', ['queue-ls', '-q', 'q'], { cwd: dir });
    expect(ok('fspool', ['queue-ls', '-q', 'q'], { cwd: dir }).toString()).toBe(ls.toString());
    expect(splitLines(ls)).toHaveLength(3);
    for (const t of TOOLS) {
      const r = run(t, ['queue-process', '-q', 'q', 'sh', '--', '-c', 'echo ran'], { cwd: dir });
      expect(r.code, `${t} processed an append-only queue`).not.toBe(0);
      expect(r.stdout.length).toBe(0);
      expect(run(t, ['queue-get-next', '-q', 'q'], { cwd: dir }).code).toBe(1);
    }
    expect(jobFiles(join(dir, 'q'))).toHaveLength(2);
    expect(readdirSync(join(dir, 'q'))).toEqual(['jobs']);
    // Made one that can be processed by queue-set-next: fspool creates nextseq.lock and nextseq;
    // fspl needs nextseq.lock there first, then does the same.
    cpSync(join(dir, 'q'), join(dir, 'q2'), { recursive: true });
    expect(run('fspl', ['queue-set-next', '-q', 'q2', '1'], { cwd: dir }).code).toBe(1);
    writeFileSync(join(dir, 'q2/nextseq.lock'), '');
    ok('fspl', ['queue-set-next', '-q', 'q2', '1'], { cwd: dir });
    ok('fspool', ['queue-set-next', '-q', 'q', '1'], { cwd: dir });
    expect(readdirSync(join(dir, 'q')).sort()).toEqual(['jobs', 'nextseq', 'nextseq.lock']);
    for (const [t, q] of [['fspool', 'q'], ['fspl', 'q2']] as const) {
      expect(nextseqText(join(dir, q))).toBe('1\n');
      expect(ok(other(t), ['queue-process', '-q', q, 'sh', '--', '-c', 'echo "$FSPL_SEQ"'], { cwd: dir }).toString()).toBe('1\n2\n');
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('5: fspl and fspool exclude each other with flock(2) on nextseq.lock', () => {
  /** A receiver that logs, touches `held`, then blocks until `release` exists (max ~15 s). */
  const SLOW = 'echo "$FSPL_SEQ $0" >> "$1"; touch "$2"; i=0; while [ ! -e "$3" ] && [ $i -lt 600 ]; do sleep 0.025; i=$((i+1)); done';
  function setup() {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    for (let i = 1; i <= 2; i++) ok('fspool', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspl', ['prepare', '-s', 'S'], { cwd: dir }) });
    const slow = (holder: Tool) => ['queue-process', '-q', 'q', '-n', '1', 'sh', '--', '-c', SLOW, holder, join(dir, 'log'), join(dir, 'held'), join(dir, 'release')];
    return { dir, q: join(dir, 'q'), slow };
  }

  it.each(TOOLS)('while %s processes, the other fails at once with exit 1', async (holder) => {
    const { dir, q, slow } = setup();
    const h = start(holder, slow(holder), dir);
    try {
      await waitFor('the holder to take the lock', () => existsSync(join(dir, 'held')));
      const t0 = Date.now();
      const r = run(other(holder), ['queue-process', '-q', 'q', 'sh', '--', '-c', 'echo "$FSPL_SEQ intruder" >> "$0"', join(dir, 'log')], { cwd: dir, timeoutMs: 10_000 });
      expect(r.code, r.stderr).toBe(1);
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      if (other(holder) === 'fspool') expect(r.stderr).toMatch(/^Error: .*lock/);
      else expect(r.stderr).toMatch(/Resource temporarily unavailable/);
      // flock(1) cannot take it either: it is a flock(2) lock
      const f = runSync('flock', ['-n', join(q, 'nextseq.lock'), 'true'], { env: ENV });
      expect(f.code).toBe(1);
      // queue-set-next needs the lock too
      expect(run(other(holder), ['queue-set-next', '-q', 'q', '7'], { cwd: dir, timeoutMs: 10_000 }).code).toBe(1);
      expect(nextseqText(q)).toBe('1\n');
    } finally {
      writeFileSync(join(dir, 'release'), '');
    }
    const hr = await h.done;
    expect(hr.code, hr.stderr).toBe(0);
    expect(readFileSync(join(dir, 'log'), 'latin1')).toBe(`1 ${holder}\n`);
    expect(nextseqText(q)).toBe('2\n');
    expect(runSync('flock', ['-n', join(q, 'nextseq.lock'), 'true'], { env: ENV }).code).toBe(0);
  });

  it('fspool queue-process --wait-lock 10 runs after the fspl holder finishes', async () => {
    const { dir, q, slow } = setup();
    const h = start('fspl', slow('fspl'), dir);
    let waiterDone = false;
    let w: ReturnType<typeof start> | undefined;
    try {
      await waitFor('the holder to take the lock', () => existsSync(join(dir, 'held')));
      w = start('fspool', ['queue-process', '-q', 'q', '--wait-lock', '10', 'sh', '--', '-c', 'echo "$FSPL_SEQ $0" >> "$1"', 'fspool', join(dir, 'log')], dir);
      void w.done.then(() => (waiterDone = true));
      await sleep(400);
      expect(waiterDone).toBe(false);
    } finally {
      writeFileSync(join(dir, 'release'), '');
    }
    const hr = await h.done;
    expect(hr.code, hr.stderr).toBe(0);
    const wr = await w!.done;
    expect(wr.code, wr.stderr).toBe(0);
    expect(readFileSync(join(dir, 'log'), 'latin1')).toBe('1 fspl\n2 fspool\n');
    expect(nextseqText(q)).toBe('3\n');
    expect(jobFiles(q)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('6: broken packets', () => {
  const bad = readdirSync(FIXTURES).filter((f) => f.startsWith('bad-')).sort();
  it('has six bad fixtures', () => expect(bad).toHaveLength(6));

  it.each(bad)('fspool stdin-info %s: exit 1, one line "Error: ..."', (name) => {
    const r = run('fspool', ['stdin-info'], { stdinFile: join(FIXTURES, name) });
    expect(r.code).toBe(1);
    expect(r.stdout.length).toBe(0);
    const lines = r.stderr.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^Error: \S/);
    expect(lines[1]).toBe('');
    expect(run('fspool', ['stdin-payload'], { stdinFile: join(FIXTURES, name) }).code).toBe(1);
  });

  it('what fspl does with them (why fspool differs on 15 and 16)', () => {
    for (const name of bad.slice(0, 4)) expect(run('fspl', ['stdin-info'], { stdinFile: join(FIXTURES, name) }).code, name).toBe(1);
    const huge = run('fspl', ['stdin-info'], { stdinFile: join(FIXTURES, 'bad-15-huge-length-ABORTS-fspl.fspl') });
    expect(huge.signal).toBe('SIGABRT');
    const nanos = run('fspl', ['stdin-info'], { stdinFile: join(FIXTURES, 'bad-16-nanos-overflow-PANICS-fspl.fspl') });
    expect(nanos.code).toBe(101);
  });

  it('a field given twice: refused by both (the decoder alone would keep the last); keys fspl does not know may repeat', () => {
    const str = (t: string) => Buffer.concat([Buffer.from([0xa0 | t.length]), Buffer.from(t, 'latin1')]);
    const map = (n: number, ...parts: Buffer[]) => Buffer.concat([Buffer.from([0x80 | n]), ...parts]);
    const int = (n: number) => Buffer.from([n]);
    const seq1 = [str('seq'), int(1)];
    const ctime = [str('ctime'), Buffer.from([0x92, 0, 0])];
    const nop = [str('cmd_type'), str('NOP')];
    const body = (params: number) => map(2, str('params'), Buffer.from([0x90 | params]), ...Array<Buffer>(params).fill(Buffer.from([0x91, 0x41])), str('env'), Buffer.from([0x90]));
    const cases: Array<[string, Buffer, RegExp | undefined]> = [
      ['seq twice', map(4, ...seq1, ...ctime, ...nop, str('seq'), int(2)), /field "seq" twice/],
      ['ctime twice', map(4, ...seq1, ...ctime, ...nop, ...ctime), /field "ctime" twice/],
      ['params twice', map(3, ...seq1, ...ctime, str('cmd_type'), map(1, str('Command'), map(3, str('params'), Buffer.from([0x90]), str('env'), Buffer.from([0x90]), str('params'), Buffer.from([0x91, 0x91, 0x41])))), /field "params" twice/],
      ['Command twice', map(3, ...seq1, ...ctime, str('cmd_type'), map(2, str('Command'), body(0), str('Command'), body(1))), /cmd_type is not a known command type/],
      ['seq by name, then by number', map(4, ...seq1, ...ctime, ...nop, int(0), int(5)), /field "seq" twice/],
      ['cmd_type by name, then by number', map(4, ...seq1, ...ctime, ...nop, int(2), str('NOP')), /field "cmd_type" twice/],
      ['params by name, then by number', map(3, ...seq1, ...ctime, str('cmd_type'), map(1, str('Command'), map(3, str('params'), Buffer.from([0x90]), str('env'), Buffer.from([0x90]), int(0), Buffer.from([0x90])))), /field "params" twice/],
      ['a field named by a negative number', map(4, ...seq1, ...ctime, ...nop, Buffer.from([0xff]), int(1)), /names a field by a signed number/],
      ['a Command field named by a negative number', map(3, ...seq1, ...ctime, str('cmd_type'), map(1, str('Command'), map(3, str('params'), Buffer.from([0x90]), str('env'), Buffer.from([0x90]), Buffer.from([0xd0, 0xff]), int(1)))), /names a field by a signed number/],
      ['the metadata as an array of four', Buffer.from([0x94, 1, 0x92, 0, 0, 0xa3, 0x4e, 0x4f, 0x50, 0xc0]), /has 4 fields, expected 3/],
      ['an unknown key twice', map(5, ...seq1, ...ctime, ...nop, str('x'), int(1), str('x'), int(2)), undefined],
      ['a key twice in an unknown value', map(4, ...seq1, ...ctime, ...nop, str('x'), map(2, str('a'), int(1), str('a'), int(2))), undefined],
      ['fields twice in an unknown value under the empty key', map(4, ...seq1, ...ctime, ...nop, str(''), map(2, str('seq'), int(1), str('seq'), int(2))), undefined],
      ['fields twice in an unknown value named like a path', map(4, ...seq1, ...ctime, ...nop, str('cmd_type.Command'), map(2, str('params'), int(1), str('params'), int(2))), undefined],
      ['arrays in an unknown value, the inner one shaped like the metadata', map(4, ...seq1, ...ctime, ...nop, str('x'), Buffer.from([0x91, 0x93, 1, 2, 0x80])), undefined],
      ['an empty map under the empty key', map(4, ...seq1, ...ctime, ...nop, str(''), map(0)), undefined],
      ["fspool's stream key twice (fspl knows no such key)", map(5, ...seq1, ...ctime, ...nop, str('fspool_stream'), int(1), str('fspool_stream'), int(2)), undefined],
    ];
    const dir = tempDir();
    for (const [what, meta, refused] of cases) {
      const file = join(dir, 'packet');
      writeFileSync(file, aroundMetadata(meta, Buffer.from('payload')));
      const fspl = run('fspl', ['stdin-info'], { stdinFile: file });
      const ours = run('fspool', ['stdin-info'], { stdinFile: file });
      expect(ours.code, `${what}: ${ours.stderr}`).toBe(fspl.code);
      if (refused) {
        expect(fspl.code, what).toBe(1);
        expect(ours.stderr, what).toMatch(refused);
      } else {
        expect(ours.stdout.toString(), what).toBe(fspl.stdout.toString());
      }
    }
  });

  it('fields and command types named as serde reads them (by number, as bin, a command type by its index): the same header as fspl, or refused by both', () => {
    const str = (t: string) => Buffer.concat([Buffer.from([0xa0 | t.length]), Buffer.from(t, 'latin1')]);
    const bin = (t: string) => Buffer.concat([Buffer.from([0xc4, t.length]), Buffer.from(t, 'latin1')]);
    const map = (n: number, ...parts: Buffer[]) => Buffer.concat([Buffer.from([0x80 | n]), ...parts]);
    const b = (...bytes: number[]) => Buffer.from(bytes);
    const ctime = b(0x92, 0xce, 0x65, 0, 0, 0, 5);
    const param = b(0x91, 0x93, 0x61, 0x62, 0x63); // one param: "abc"
    const env = b(0x91, 0x92, 0x91, 0x58, 0x91, 0x59); // X=Y
    const head = (cmd: Buffer) => map(3, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), cmd);
    const cases: Array<[string, Buffer, boolean]> = [
      ['every field by number', map(3, b(0), b(7), b(1), ctime, b(2), str('NOP')), true],
      ['fields by number and by name', map(3, b(0), b(7), str('ctime'), ctime, b(2), str('NOP')), true],
      ['fields numbered in 2, 4 and 8 bytes', map(3, b(0xcd, 0, 0), b(7), b(0xce, 0, 0, 0, 1), ctime, b(0xcf, 0, 0, 0, 0, 0, 0, 0, 2), str('NOP')), true],
      ['a number no field has (ignored)', map(4, b(0), b(7), b(1), ctime, b(2), str('NOP'), b(0xcc, 200), b(1)), true],
      ['every key a bin', map(3, bin('seq'), b(7), bin('ctime'), ctime, bin('cmd_type'), map(1, bin('Command'), map(2, bin('params'), param, bin('env'), env))), true],
      ['Command numbered 0, its fields numbered', head(map(1, b(0), map(2, b(0), param, b(1), env))), true],
      ['NOP by its index', head(b(1)), true],
      ['Fail by its index', head(b(2)), true],
      ['Fail by its index in 8 bytes', head(b(0xcf, 0, 0, 0, 0, 0, 0, 0, 2)), true],
      ['NOP numbered in a map', head(map(1, b(1), b(0xc0))), true],
      ['Fail numbered in a map', head(map(1, b(2), b(0xc0))), true],
      ['NOP as a bin', head(bin('NOP')), true],
      ['seq by number, then as a bin name', map(4, b(0), b(7), bin('seq'), b(8), b(1), ctime, b(2), str('NOP')), false],
      ['a command type index past Fail', head(b(3)), false],
      ['Command by its index, without its data', head(b(0)), false],
      ['Fail numbered in a map, carrying data', head(map(1, b(2), map(0))), false],
      ['nil as a field name', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), b(0xc0), b(1)), false],
      ['an array as a field name', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), b(0x90), b(1)), false],
      ['param bytes in the 64-bit forms, unsigned and signed', head(map(1, str('Command'), map(2, str('params'), b(0x91, 0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x61, 0xd3, 0, 0, 0, 0, 0, 0, 0, 0x62), str('env'), env))), true],
      ['a param byte of 256', head(map(1, str('Command'), map(2, str('params'), b(0x91, 0x91, 0xcd, 1, 0), str('env'), env))), false],
      ['a field numbered by a signed integer that is not negative', map(3, b(0xd0, 0), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP')), false],
      ['NOP by its index as a signed integer', head(b(0xd0, 1)), false],
      ['NOP numbered in a map by a signed integer', head(map(1, b(0xd3, 0, 0, 0, 0, 0, 0, 0, 1), b(0xc0))), false],
      ['the metadata as an array, NOP by its index as a signed integer', b(0x93, 7, 0x92, 1, 2, 0xd0, 1), false],
      ['the metadata as an array, Fail by its index', b(0x93, 7, 0x92, 1, 2, 2), true],
      ['an ext as a field name', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), b(0xd4, 1, 0), b(1)), false],
      // Names are bytes to serde: one not valid UTF-8 names no field, whatever a lenient UTF-8
      // reader would make of it ("s" in two bytes, c1 b3, or in four, f0 80 81 b3).
      ['a second seq whose name spells "s" in two bytes (not UTF-8)', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), b(0xa4, 0xc1, 0xb3, 0x65, 0x71), b(8)), true],
      ['the only seq spelled with "s" in four bytes', map(3, b(0xa6, 0xf0, 0x80, 0x81, 0xb3, 0x65, 0x71), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP')), false],
      ['a second cmd_type spelled with "c" in two bytes', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), b(0xa9, 0xc1, 0xa3, ...Buffer.from('md_type')), str('Fail')), true],
      ['NOP spelled with "N" in two bytes', head(b(0xa4, 0xc1, 0x8e, 0x4f, 0x50)), false],
      ['Command spelled with "C" in two bytes, as a map key', head(map(1, b(0xa8, 0xc1, 0x83, ...Buffer.from('ommand')), map(2, str('params'), param, str('env'), env))), false],
      ['a second params spelled with "p" in two bytes', head(map(1, str('Command'), map(3, str('params'), param, str('env'), env, b(0xa7, 0xc1, 0xb0, ...Buffer.from('arams')), b(0x90)))), true],
      // A name JavaScript objects treat apart is just an unknown key, to fspl and here.
      ['__proto__ as an unknown key', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), str('__proto__'), map(1, str('seq'), b(8))), true],
      ['__proto__ as a bin, in the Command body', head(map(1, str('Command'), map(3, str('params'), param, str('env'), env, bin('__proto__'), b(1)))), true],
      ['__proto__ inside an unknown value', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), str('x'), map(1, str('__proto__'), b(1))), true],
      // What fspl skips unread may be what the MessagePack library cannot read: a timestamp extension (type -1) of 3 bytes.
      ['a timestamp extension of a size no timestamp has, under an unknown key', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), str('x'), b(0xc7, 3, 0xff, 1, 2, 3)), true],
      ['the same in the Command body', head(map(1, str('Command'), map(3, str('params'), param, b(9), b(0xc7, 3, 0xff, 1, 2, 3), str('env'), env))), true],
      ['the same as a seq', map(3, str('seq'), b(0xc7, 3, 0xff, 1, 2, 3), str('ctime'), ctime, str('cmd_type'), str('NOP')), false],
      ["the same under fspool's stream key (fspl knows no such key)", map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), str('fspool_stream'), b(0xd4, 0xff, 0)), true],
      // fspl's reader counts containers as they nest (the metadata, the Command body, all in them; not cmd_type's map) and refuses more than 1023.
      ['arrays nested in an unknown value, 1023 deep with the metadata', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), str('x'), Buffer.alloc(1022, 0x91), b(0xc0)), true],
      ['one deeper', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), str('x'), Buffer.alloc(1023, 0x91), b(0xc0)), false],
      ['maps nested so, one deeper', map(4, str('seq'), b(7), str('ctime'), ctime, str('cmd_type'), str('NOP'), str('x'), Buffer.concat(Array<Buffer>(1023).fill(b(0x81, 0))), b(0xc0)), false],
      ['arrays nested in the Command body, 1023 deep with it and the metadata', head(map(1, str('Command'), map(3, str('params'), param, str('env'), env, str('x'), Buffer.concat([Buffer.alloc(1021, 0x91), b(0xc0)])))), true],
      ['one deeper', head(map(1, str('Command'), map(3, str('params'), param, str('env'), env, str('x'), Buffer.concat([Buffer.alloc(1022, 0x91), b(0xc0)])))), false],
    ];
    const dir = tempDir();
    const file = join(dir, 'packet');
    const receiver = ['sh', '--', '-c', 'echo "ran: $FSPL_PARAM_1 $FSPL_SET_X"'];
    for (const [what, meta, accepted] of cases) {
      writeFileSync(file, aroundMetadata(meta, Buffer.from('payload')));
      const fspl = run('fspl', ['stdin-info'], { stdinFile: file });
      const ours = run('fspool', ['stdin-info'], { stdinFile: file });
      expect(fspl.code, what).toBe(accepted ? 0 : 1);
      expect(ours.code, `${what}: ${ours.stderr}`).toBe(fspl.code);
      expect(ours.stdout.toString(), what).toBe(fspl.stdout.toString());
      if (!accepted) expect(ours.stderr, what).toMatch(/^Error: \S.*\n$/);
      // The command type as each runs it: Command runs the receiver, NOP does nothing, Fail fails.
      const fsplRun = run('fspl', ['stdin-process', '--allow-job-params', ...receiver], { stdinFile: file });
      const ourRun = run('fspool', ['stdin-process', '--allow-job-params', ...receiver], { stdinFile: file });
      expect([ourRun.code, ourRun.stdout.toString()], what).toEqual([fsplRun.code, fsplRun.stdout.toString()]);
    }
  });

  it('times from the year -262143 to 262142 (all fspl can show): the same FSPL_CTIME_* and listing as fspl', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    const years = [-262143, -10000, -9999, -1, 0, 1, 999, 9999, 10000, 99999, 100000, 262142];
    for (const [i, year] of years.entries()) {
      const day = new Date(0);
      day.setUTCFullYear(year, 0, 1); // not Date.UTC, which takes years 0 to 99 as 1900 to 1999
      const secs = BigInt(day.getTime() / 1000);
      const ctime = Buffer.alloc(9);
      ctime[0] = 0xd3;
      ctime.writeBigInt64BE(secs, 1);
      const meta = Buffer.concat([Buffer.from([0x93, i + 1, 0x92]), ctime, Buffer.from([0, 0xa3]), Buffer.from('NOP')]);
      const file = join(dir, 'q/jobs', `fspl-${i + 1}.fspl`);
      writeFileSync(file, aroundMetadata(meta));
      const fspl = ok('fspl', ['stdin-info'], { stdinFile: file });
      expect(ok('fspool', ['stdin-info'], { stdinFile: file }).toString(), `year ${year}`).toBe(fspl.toString());
    }
    expect(ok('fspool', ['queue-ls', '-q', 'q'], { cwd: dir }).toString()).toBe(ok('fspl', ['queue-ls', '-q', 'q'], { cwd: dir }).toString());
  });

  it('fspool lists and processes the good jobs of a queue with bad files in it; fspl cannot', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    for (let i = 1; i <= 3; i++) ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspl', ['prepare', '-s', 'S', '-i', '-'], { cwd: dir, input: `good${i}` }) });
    const cleanLs = ok('fspl', ['queue-ls', '-q', 'q'], { cwd: dir });
    for (const b of bad) writeFileSync(join(dir, 'q/jobs', `fspl-${b}`), fixture(b));

    const ls = run('fspool', ['queue-ls', '-q', 'q'], { cwd: dir });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.toString()).toBe(cleanLs.toString());
    for (const b of bad) expect(ls.stderr, b).toContain(`fspl-${b}`);
    expect(ls.stderr.trimEnd().split('\n')).toHaveLength(bad.length);

    // fspl's queue-ls dies on bad-15
    expect(run('fspl', ['queue-ls', '-q', 'q'], { cwd: dir }).code).not.toBe(0);

    expect(ok('fspool', ['queue-info', '-q', 'q', '-j', '2'], { cwd: dir }).toString()).toMatch(/^FSPL_SEQ=2\n/);
    const p = run('fspool', ['queue-process', '-q', 'q', 'sh', '--', '-c', 'printf "%s:%s\\n" "$FSPL_SEQ" "$(cat)"'], { cwd: dir });
    // The good ones run; then seq 4 could be any of the bad files: exit 1 for a person to look.
    expect(p.code, p.stderr).toBe(1);
    expect(p.stderr).toMatch(/^Error: seq 4 not found, and 6 job file\(s\) that cannot be read could hold it/m);
    expect(p.stdout.toString()).toBe('1:good1\n2:good2\n3:good3\n');
    for (const b of bad) expect(p.stderr, b).toContain(`fspl-${b}`);
    expect(nextseqText(join(dir, 'q'))).toBe('4\n');
    expect(jobFiles(join(dir, 'q'))).toEqual(bad.map((b) => `fspl-${b}`).sort());
  });
});

// ---------------------------------------------------------------------------------------------

describe('7: exit codes and option spelling as in fspl', () => {
  function queue(): string {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    return dir;
  }

  const usage: Array<[string, string[]]> = [
    ['unknown option', ['queue-process', '-q', 'q', '--bogus', 'true']],
    ['missing -q', ['queue-process', 'true']],
    ['missing -q for queue-ls', ['queue-ls']],
    ['missing -s for prepare', ['prepare']],
    ['unknown subcommand', ['queue-frobnicate', '-q', 'q']],
    ['bad --on-error value', ['queue-process', '-q', 'q', '--on-error', 'bogus', 'true']],
    ['bad --order-by value', ['queue-process', '-q', 'q', '--order-by', 'bogus', 'true']],
    ['bad --output-to value', ['queue-process', '-q', 'q', '--output-to', 'bogus', 'true']],
    ['bad -n value', ['queue-process', '-q', 'q', '-n', 'abc', 'true']],
    ['bad -l value', ['-l', 'bogus', 'queue-ls', '-q', 'q']],
    ['bad -j value', ['queue-info', '-q', 'q', '-j', 'x']],
  ];
  it.each(usage)('usage error (%s): exit 2 for both', (_what, args) => {
    const dir = queue();
    for (const t of TOOLS) {
      const r = run(t, args, { cwd: dir });
      expect(r.code, `${t}: ${r.stderr}`).toBe(2);
      expect(r.stdout.length).toBe(0);
    }
    expect(nextseqText(join(dir, 'q'))).toBe('1\n');
  });

  it.each(TOOLS)('%s accepts option values in any case (DELETE, Timestamp, SaveBoth, -l DEBUG)', (t) => {
    const dir = queue();
    ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspl', ['prepare-fail', '-s', 'S'], { cwd: dir }) });
    ok('fspool', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspool', ['prepare', '-s', 'S'], { cwd: dir }) });
    const names = jobFiles(join(dir, 'q'));
    const r = run(t, ['-l', 'DEBUG', 'queue-process', '-q', 'q', '--on-error', 'DELETE', '--order-by', 'Timestamp', '--output-to', 'SaveBoth', 'sh', '--', '-c', 'echo out$FSPL_SEQ; echo err >&2'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.length).toBe(0); // SaveBoth: nothing passed through
    // DELETE: the failed (Fail) job is gone as well as the good one; Timestamp: nextseq untouched
    expect(jobFiles(join(dir, 'q'))).toEqual([]);
    expect(nextseqText(join(dir, 'q'))).toBe('1\n');
    const outs = readdirSync(join(dir, 'q/jobs')).filter((n) => n.endsWith('.out'));
    const withOutput = outs.filter((n) => readFileSync(join(dir, 'q/jobs', n), 'latin1') === 'out2\nerr\n');
    expect(withOutput).toHaveLength(1);
    expect(names.map((n) => `${n}.out`)).toContain(withOutput[0]);
    // other case-insensitive spellings parse too
    for (const v of [['--on-error', 'Leave'], ['--on-error', 'rEtRy'], ['--order-by', 'SEQUENCE'], ['--output-to', 'PASSBOTH']]) {
      expect(run(t, ['queue-process', '-q', 'q', ...v, 'true'], { cwd: dir }).code, v.join(' ')).toBe(0);
    }
    for (const l of ['trace', 'Warn', 'ERROR', 'info']) expect(run(t, ['-l', l, 'queue-ls', '-q', 'q'], { cwd: dir }).code, l).toBe(0);
    // and take effect: DEBUG shows debug lines (an empty queue is worth one), ERROR hides the rest
    const dbg = run(t, ['-l', 'DEBUG', 'queue-process', '-q', 'q', 'true'], { cwd: dir });
    expect(dbg.code).toBe(0);
    expect(dbg.stderr).toMatch(/DEBUG/);
    ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspl', ['prepare', '-s', 'S'], { cwd: dir }) });
    const quiet = run(t, ['-l', 'Error', 'queue-process', '-q', 'q', '--order-by', 'timestamp', 'true'], { cwd: dir });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
    expect(jobFiles(join(dir, 'q'))).toEqual([]);
  });

  it.each(TOOLS)('%s reads a short option\'s value written against it (-qDIR, -sFILE, -dCMD, -lwarn, -n1) and -l as a number', (t) => {
    const dir = queue();
    ok(t, ['prepare-set-next', '-sS', '7'], { cwd: dir });
    expect(ok(t, ['prepare-get-next', '-sS'], { cwd: dir }).toString()).toBe('7\n');
    ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: gzipSync(ok(t, ['prepare', '-sS', '-i-'], { cwd: dir, input: 'seven\n' })) });
    ok(t, ['queue-set-next', '-qq', '7'], { cwd: dir });
    // -qq: the queue named q (not -q given twice); the decoder's words stay one value.
    expect(ok(t, ['queue-ls', '-qq', '-dgzip -dc'], { cwd: dir }).toString()).toMatch(/^ID .*\n7 /);
    expect(ok(t, ['-l2', 'queue-payload', '-qq', '-dzcat', '-j7'], { cwd: dir }).toString()).toBe('seven\n');
    // 1 error ... 5 trace: at 5, trace lines; at 1, nothing but errors.
    expect(run(t, ['-l', '5', 'queue-get-next', '-qq'], { cwd: dir }).stderr.toString()).toMatch(/TRACE/);
    const r = run(t, ['-lwarn', 'queue-process', '-qq', '-dzcat', '-n1', 'cat'], { cwd: dir });
    expect(r.code, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toBe('seven\n');
    expect(r.stderr.toString()).toBe('');
    for (const bad of ['0', '6']) expect(run(t, ['-l', bad, 'queue-get-next', '-qq'], { cwd: dir }).code, `-l ${bad}`).toBe(2);
    // A value that starts with `-` is still the value.
    ok(t, ['queue-init', '-q-x'], { cwd: dir });
    expect(ok(t, ['queue-get-next', '-q-x'], { cwd: dir }).toString()).toBe('1\n');
  });

  it.each(['--never-delete', '--allow-job-params', '--ignore-payload'])('%s takes no value: a COMMAND named true or false after it is the command', (flag) => {
    const dir = queue();
    for (let i = 1; i <= 2; i++) ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspl', ['prepare', '-s', 'S'], { cwd: dir }) });
    cpSync(join(dir, 'q'), join(dir, 'q2'), { recursive: true });
    const a = run('fspl', ['queue-process', '-q', 'q', flag, 'true'], { cwd: dir });
    expect(a.code, a.stderr).toBe(0);
    expect(nextseqText(join(dir, 'q'))).toBe('3\n');
    const b = run('fspool', ['queue-process', '-q', 'q2', flag, 'true'], { cwd: dir });
    expect(b.code, `fspool queue-process -q q2 ${flag} true: ${b.stderr}`).toBe(0);
    expect(nextseqText(join(dir, 'q2'))).toBe('3\n');
    // `false` as the command fails the job (exit 1), it does not switch the flag off
    // (stdin-process has no --never-delete: both refuse that as a usage error)
    const pkt = ok('fspl', ['prepare', '-s', '-']);
    const expected = flag === '--never-delete' ? 2 : 1;
    for (const t of TOOLS) expect(run(t, ['stdin-process', flag, 'false'], { input: pkt }).code, `${t} stdin-process ${flag} false`).toBe(expected);
  });

  it('job not found (queue-info, queue-payload): exit 1 for both', () => {
    const dir = queue();
    ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspool', ['prepare', '-s', 'S'], { cwd: dir }) });
    for (const t of TOOLS) {
      for (const sub of ['queue-info', 'queue-payload']) {
        const r = run(t, [sub, '-q', 'q', '-j', '5'], { cwd: dir });
        expect(r.code, `${t} ${sub}: ${r.stderr}`).toBe(1);
        expect(r.stdout.length).toBe(0);
      }
      expect(run(t, ['queue-info', '-q', 'q', '-j', '1'], { cwd: dir }).code).toBe(0);
    }
  });

  it('queue-init on an existing directory: exit 1 for both, nothing changed', () => {
    const dir = queue();
    ok('fspool', ['queue-set-next', '-q', 'q', '9'], { cwd: dir });
    for (const t of TOOLS) {
      const r = run(t, ['queue-init', '-q', 'q'], { cwd: dir });
      expect(r.code, r.stderr).toBe(1);
      expect(nextseqText(join(dir, 'q'))).toBe('9\n');
      mkdirSync(join(dir, `empty-${t}`));
      expect(run(t, ['queue-init', '-q', `empty-${t}`], { cwd: dir }).code).toBe(1);
    }
  });

  it('operations on a missing queue: exit 1 for both', () => {
    const dir = tempDir();
    for (const t of TOOLS) {
      expect(run(t, ['queue-ls', '-q', 'nope'], { cwd: dir }).code, t).toBe(1);
      expect(run(t, ['queue-process', '-q', 'nope', 'true'], { cwd: dir }).code, t).toBe(1);
      expect(run(t, ['queue-write', '-q', 'nope'], { cwd: dir, input: fixture('04-nop.fspl') }).code, t).toBe(1);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('edges where fspool must not part ways with fspl', () => {
  const MAX = '18446744073709551615';

  it('queue-ls orders seqs beyond 2^53 as fspl does, with the header cache cold and warm', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    // Seqs a double cannot tell apart (2^53 and 2^53+1, 2^64-3 and 2^64-2), in files whose
    // names sort the other way.
    const seqs = ['18446744073709551614', '9007199254740993', '9007199254740992', '9007199254740991', '4294967296', '7', '18446744073709551613'];
    seqs.forEach((seq, i) => {
      ok('fspl', ['prepare-set-next', '-s', 'S', seq], { cwd: dir });
      const pkt = ok('fspl', ['prepare', '-s', 'S', '-i', '-'], { cwd: dir, input: `job ${i}` });
      writeFileSync(join(dir, 'q/jobs', `fspl-${String.fromCharCode(0x7a - i)}-${i}.fspl`), pkt);
    });
    const ls = ok('fspl', ['queue-ls', '-q', 'q'], { cwd: dir }).toString();
    expect(splitLines(Buffer.from(ls)).slice(1).map((l) => l.toString().split(/ +/)[0])).toEqual([
      '7', '4294967296', '9007199254740991', '9007199254740992', '9007199254740993', '18446744073709551613', '18446744073709551614',
    ]);
    expect(ok('fspool', ['queue-ls', '-q', 'q'], { cwd: dir }).toString(), 'first listing').toBe(ls);
    expect(existsSync(join(dir, 'q/fspool/state.db'))).toBe(true);
    const warm = run('fspool', ['-l', 'debug', 'queue-ls', '-q', 'q'], { cwd: dir });
    expect(warm.stderr).toContain(`header cache: ${seqs.length} hit(s), 0 file(s) to read`);
    expect(warm.stdout.toString(), 'from the header cache').toBe(ls);
  });

  it('prepare at seq 2^64-1 is refused, and leaves a seqfile both can still read', () => {
    const dir = tempDir();
    ok('fspool', ['prepare-set-next', '-s', 'S', MAX], { cwd: dir });
    // No number can follow 2^64-1: fspool refuses rather than make a packet whose successor
    // cannot be stored (fspl wraps to 0). Writing 2^64 would be worse: neither could read it.
    const r = run('fspool', ['prepare-nop', '-s', 'S'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is at 18446744073709551615, the largest sequence number: no number can follow it; reset it with prepare-set-next/);
    expect(r.stdout.length).toBe(0);
    for (const t of TOOLS) {
      const g = run(t, ['prepare-get-next', '-s', 'S'], { cwd: dir });
      expect(g.code, `${t} prepare-get-next after seq 2^64-1; seqfile holds ${JSON.stringify(readFileSync(join(dir, 'S'), 'latin1'))}: ${g.stderr}`).toBe(0);
    }
  });

  it('processing seq 2^64-1 leaves a nextseq both can still read', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    ok('fspl', ['queue-set-next', '-q', 'q', MAX], { cwd: dir });
    ok('fspl', ['prepare-set-next', '-s', 'S', MAX], { cwd: dir });
    ok('fspl', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspl', ['prepare', '-s', 'S', '-i', '-'], { cwd: dir, input: 'last' }) });
    run('fspool', ['queue-process', '-q', 'q', 'cat'], { cwd: dir });
    for (const t of TOOLS) {
      const g = run(t, ['queue-get-next', '-q', 'q'], { cwd: dir });
      expect(g.code, `${t} queue-get-next; nextseq holds ${JSON.stringify(nextseqText(join(dir, 'q')))}: ${g.stderr}`).toBe(0);
    }
  });

  // fspl handles names as raw bytes; Node's fs names are strings, so fspool does not run such
  // a file. It says so, naming the file, instead of dropping it silently (README: differences).
  it('a job file whose name is not UTF-8: fspl runs it; fspool reports it, leaves it alone, and (it may hold the due seq) exits 1', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    const name = Buffer.concat([Buffer.from(join(dir, 'q/jobs/fspl-')), Buffer.from([0xff]), Buffer.from('.fspl')]);
    writeFileSync(name, ok('fspl', ['prepare', '-s', '-', '-i', '-'], { input: 'odd name' }));
    expect(splitLines(ok('fspl', ['queue-ls', '-q', 'q'], { cwd: dir }))).toHaveLength(2);
    const ls = run('fspool', ['queue-ls', '-q', 'q'], { cwd: dir });
    expect(ls.code).toBe(0);
    expect(splitLines(ls.stdout)).toHaveLength(1);
    expect(ls.stderr).toMatch(/WARN fspool: job file .*fspl-\\xff\.fspl has a name that is not valid UTF-8.*rename it/);
    const r = run('fspool', ['queue-process', '-q', 'q', 'sh', '--', '-c', 'echo "ran $FSPL_SEQ"'], { cwd: dir });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout.toString()).toBe('');
    expect(r.stderr).toMatch(/^Error: seq 1 not found, and 1 job file\(s\) that cannot be read could hold it: .*fspl-\\xff\.fspl \(its name is not valid UTF-8: fspool cannot open it; rename it\); rename those whose names are not UTF-8, or remove them$/m);
    // queue-status calls it failing, not healthy.
    const st = run('fspool', ['queue-status', '-q', 'q'], { cwd: dir });
    expect(st.code).toBe(4);
    expect(st.stdout.toString()).toMatch(/unreadable: +1/);
    expect(existsSync(name)).toBe(true);
    expect(nextseqText(join(dir, 'q'))).toBe('1\n');
    const f = run('fspl', ['queue-process', '-q', 'q', 'sh', '--', '-c', 'echo "ran $FSPL_SEQ $(cat)"'], { cwd: dir });
    expect(f.stdout.toString()).toBe('ran 1 odd name\n');
  });

  it('a name that is not UTF-8 beside a job that runs: reported once per look at jobs/ (once before the job), the job runs, and the run ends at the next seq it may hold', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    writeFileSync(Buffer.concat([Buffer.from(join(dir, 'q/jobs/fspl-')), Buffer.from([0xff]), Buffer.from('.fspl')]), ok('fspl', ['prepare', '-s', '-', '-i', '-'], { input: 'odd name' }));
    writeFileSync(join(dir, 'q/jobs/fspl-good.fspl'), ok('fspl', ['prepare', '-s', '-', '-i', '-'], { input: 'good' }));
    const r = run('fspool', ['queue-process', '-q', 'q', 'cat'], { cwd: dir });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^Error: seq 2 not found, and 1 job file\(s\) that cannot be read could hold it/m);
    expect(r.stdout.toString()).toBe('good');
    const beforeJob = r.stderr.slice(0, r.stderr.indexOf('succeeded'));
    expect(beforeJob.match(/not valid UTF-8/g)).toHaveLength(1);
    expect(nextseqText(join(dir, 'q'))).toBe('2\n');
  });

  it('FSPL_JOB_FULLPATH is the queue dir as given + "/jobs/" + name, even with a trailing slash', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    ok('fspool', ['queue-write', '-q', 'q'], { cwd: dir, input: ok('fspool', ['prepare', '-s', 'S'], { cwd: dir }) });
    for (const q of ['q/', 'q//', './q']) {
      const a = ok('fspl', ['queue-info', '-q', q, '-j', '1'], { cwd: dir }).toString();
      expect(a).toMatch(new RegExp(`^FSPL_JOB_FULLPATH=${q.replace(/\./g, '\\.')}/jobs/fspl-`, 'm'));
      expect(ok('fspool', ['queue-info', '-q', q, '-j', '1'], { cwd: dir }).toString(), `-q ${q}`).toBe(a);
    }
    // and what the receiver gets
    const recv = (t: Tool) => run(t, ['queue-process', '-q', 'q/', '--never-delete', 'sh', '--', '-c', 'echo "$FSPL_JOB_QUEUEDIR $FSPL_JOB_FULLPATH"'], { cwd: dir });
    const a = recv('fspl');
    ok('fspl', ['queue-set-next', '-q', 'q', '1'], { cwd: dir });
    const b = recv('fspool');
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    expect(b.stdout.toString()).toBe(a.stdout.toString());
  });

  // fspl refuses a non-UTF-8 -q but takes -s and -i as raw bytes. Node has already replaced
  // such bytes by U+FFFD, so fspool refuses every non-UTF-8 option value (exit 2) rather than
  // act on a different name.
  it('path arguments that are not UTF-8: refused with exit 2 by fspool, nothing created; fspl takes -s and -i as bytes', () => {
    const dir = tempDir();
    writeFileSync(Buffer.from([...Buffer.from(join(dir, 'in')), 0xfe]), 'raw name');
    const shell = (t: Tool, script: string) => runSync('/bin/sh', ['-c', script, BIN[t]], { env: ENV, cwd: dir });
    for (const t of TOOLS) {
      const r = shell(t, `"$0" queue-init -q "$(printf 'q\\376')"`);
      expect(r.code, `${t} queue-init -q q\\376: ${r.stderr}`).toBe(2);
      expect(readdirSync(dir).filter((n) => n.startsWith('q')), `${t} created a queue under another name`).toEqual([]);
    }
    const p = shell('fspool', `"$0" prepare -s "$(printf 'S\\375')" -i "$(printf 'in\\376')"`);
    expect(p.code, p.stderr).toBe(2);
    expect(p.stderr).toMatch(/not valid UTF-8/);
    expect(p.stdout.length).toBe(0);
    expect(readdirSync(dir, { encoding: 'buffer' }).map((n) => n.toString('latin1'))).toEqual(['in\xfe']);
    const f = shell('fspl', `"$0" prepare -s "$(printf 'S\\375')" -i "$(printf 'in\\376')"`);
    expect(f.code, f.stderr).toBe(0);
    expect(ok('fspl', ['stdin-payload'], { input: f.stdout }).toString()).toBe('raw name');
  });

  it('the ID of prepare-set-next and queue-set-next may follow --, as fspl allows', () => {
    const dir = tempDir();
    ok('fspl', ['queue-init', '-q', 'q'], { cwd: dir });
    for (const [t, n] of [['fspl', '12'], ['fspool', '13']] as const) {
      ok(t, ['prepare-set-next', '-s', 'S', '--', n], { cwd: dir });
      expect(readFileSync(join(dir, 'S'), 'latin1')).toBe(`${n}\n`);
      ok(t, ['queue-set-next', '-q', 'q', '--', n], { cwd: dir });
      expect(nextseqText(join(dir, 'q'))).toBe(`${n}\n`);
    }
  });
});
