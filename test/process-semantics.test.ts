// queue-process and stdin-process semantics: bin/fspool run as real processes on real temp
// queues, with sh scripts as receivers. Every receiver leaves evidence in files under the
// test's own temp directory (a log of "seq:payload" lines, or raw bytes it was given), and the
// tests check that evidence, the exit status, nextseq and what is left in jobs/.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FSPOOL, fspool, makeQueue, preparePacket, type Result, runSync, tempDir } from './helpers/cli.js';
import { allInJobs, nextseq as queueNextseq, put } from './helpers/queue.js';

// ---------------------------------------------------------------------------------------------
// Helpers

interface Env {
  dir: string;
  /** The queue, an absolute path. */
  q: string;
  /** Where receivers append their "seq:payload" lines. */
  log: string;
  /** A directory where receivers drop raw evidence files. */
  out: string;
  /** The seq the sender gives its next packet (as a prepare seqfile would). */
  seq: number;
}

function setup(): Env {
  const dir = tempDir('fspool-sem-');
  const q = makeQueue(dir);
  const out = join(dir, 'out');
  mkdirSync(out);
  return { dir, q, log: join(dir, 'log'), out, seq: 1 };
}

/** The environment every fspool gets here: receivers find $LOG and $OUT in it. */
const envOf = (e: Env, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...process.env, LOG: e.log, OUT: e.out, ...extra });

/** A receiver that consumes its stdin and appends "$FSPL_SEQ:<stdin>" to $LOG. */
const LOGGER = 'printf "%s:%s\\n" "$FSPL_SEQ" "$(cat)" >> "$LOG"';
/** Like LOGGER, but job 2 fails (exit 1) after reading its input. */
const FAIL_ON_2 = `if [ "$FSPL_SEQ" = 2 ]; then cat > /dev/null; exit 1; fi; ${LOGGER}`;

/** fspool queue-process -q Q [opts] sh -- -c SCRIPT [args...] */
function processQ(e: Env, opts: string[], script: string, args: string[] = [], run: { input?: string | Buffer; cwd?: string } = {}): Result {
  return fspool(['queue-process', '-q', e.q, ...opts, 'sh', '--', '-c', script, ...args], { env: envOf(e), ...run });
}

/** fspool stdin-process [opts] sh -- -c SCRIPT with the packet on stdin (a pipe or a file). */
function processStdin(e: Env, opts: string[], script: string, stdin: { input?: Buffer; stdinFile?: string }): Result {
  return fspool(['stdin-process', ...opts, 'sh', '--', '-c', script], { env: envOf(e), ...stdin });
}

// Packets are made by `fspool prepare` with a seqfile holding the wanted seq. They do not
// depend on the queue, so each distinct one is prepared once per file run: the same packet
// reused by several tests is the same bytes, and the file stays fast.
const packetDir = tempDir('fspool-sem-packets-');
const packets = new Map<string, Buffer>();

type Kind = 'prepare' | 'prepare-nop' | 'prepare-fail';

function prepared(kind: Kind, seq: number, payload: string | Buffer = '', params: string[] = [], env: Record<string, string> = {}): Buffer {
  const key = JSON.stringify([kind, seq, Buffer.from(payload).toString('base64'), params, env]);
  const hit = packets.get(key);
  if (hit) return hit;
  const seqfile = join(packetDir, 'seq');
  writeFileSync(seqfile, `${seq}\n`);
  let bytes: Buffer;
  if (kind === 'prepare') {
    bytes = preparePacket(['-s', seqfile, '-i', '-', ...(params.length > 0 ? ['--', ...params] : [])], payload, env);
  } else {
    const r = fspool([kind, '-s', seqfile]);
    if (r.code !== 0) throw new Error(`${kind} failed: ${r.stderr}`);
    bytes = r.stdout;
  }
  packets.set(key, bytes);
  return bytes;
}

/** A Command packet with the sender's next seq. */
function cmd(e: Env, payload: string | Buffer, params: string[] = [], env: Record<string, string> = {}): Buffer {
  return prepared('prepare', e.seq++, payload, params, env);
}

/** A Command packet with this seq (the sender's next seq follows it). */
function cmdSeq(e: Env, seq: number, payload: string | Buffer): Buffer {
  e.seq = seq;
  return cmd(e, payload);
}

/** A NOP or Fail packet with the sender's next seq. */
function bare(e: Env, kind: 'prepare-nop' | 'prepare-fail'): Buffer {
  return prepared(kind, e.seq++);
}

const jobNames = (e: Env) => allInJobs(e.q);
const jobPath = (e: Env, name: string) => join(e.q, 'jobs', name);

/**
 * Put a packet into jobs/ as a syncing tool would (temp name, then rename to fspl-<uuid>.fspl)
 * and return its name. queue-write itself is used where it is what is being tested.
 */
const write = (e: Env, packet: Buffer) => put(e.q, packet);

/** queue-write a packet and return the name of the file it made. */
function queueWriteNamed(e: Env, packet: Buffer): string {
  const before = new Set(jobNames(e));
  put(e.q, packet);
  const made = jobNames(e).filter((n) => !before.has(n));
  if (made.length !== 1) throw new Error(`queue-write made ${made.length} files`);
  return made[0]!;
}

const nextseq = (e: Env) => queueNextseq(e.q);
const logOf = (e: Env) => (existsSync(e.log) ? readFileSync(e.log, 'utf8') : '');
const lines = (...entries: string[]) => entries.map((l) => `${l}\n`).join('');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------

describe('sequence order', () => {
  it('runs packets written in shuffled order strictly by seq', () => {
    const e = setup();
    const ps = [1, 2, 3, 4, 5, 6].map((i) => cmd(e, `p${i}`));
    for (const i of [4, 1, 6, 2, 5, 3]) queueWriteNamed(e, ps[i - 1]!);
    const r = processQ(e, [], LOGGER);
    expect(r.stderr).not.toMatch(/^Error/m);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2', '3:p3', '4:p4', '5:p5', '6:p6'));
    expect(nextseq(e)).toBe('7');
    expect(jobNames(e)).toEqual([]);
  });

  it('stops at a gap with exit 0, says so at the default level, and goes on once the gap is filled', () => {
    const e = setup();
    const ps = [1, 2, 3, 4, 5].map((i) => cmd(e, `p${i}`));
    const later = [5, 1, 4, 2].map((i) => write(e, ps[i - 1]!));
    const first = processQ(e, [], LOGGER);
    expect(first.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(e)).toBe('3');
    expect(jobNames(e)).toEqual([later[0]!, later[2]!].sort()); // seq 5 and 4 wait
    expect(first.stderr).toContain('waiting for seq 3');

    write(e, ps[2]!);
    const second = processQ(e, [], LOGGER);
    expect(second.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2', '3:p3', '4:p4', '5:p5'));
    expect(nextseq(e)).toBe('6');
    expect(jobNames(e)).toEqual([]);
  });

  it('an empty queue is nothing to do: exit 0, nextseq unchanged', () => {
    const e = setup();
    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(0);
    expect(nextseq(e)).toBe('1');
    expect(logOf(e)).toBe('');
  });
});

describe('--on-error with job 2 of 3 failing', () => {
  function threeJobs(e: Env): string[] {
    return [1, 2, 3].map((i) => write(e, cmd(e, `p${i}`)));
  }

  it('retry (the default): exit 1, nextseq stays 2, job 2 kept, job 3 not run', () => {
    const e = setup();
    const names = threeJobs(e);
    const r = processQ(e, [], FAIL_ON_2);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: /m);
    expect(logOf(e)).toBe(lines('1:p1'));
    expect(nextseq(e)).toBe('2');
    expect(jobNames(e)).toEqual([names[1]!, names[2]!].sort());

    // Explicitly, and again: the same job is retried, still nothing past it.
    const again = processQ(e, ['--on-error', 'retry'], FAIL_ON_2);
    expect(again.code).toBe(1);
    expect(logOf(e)).toBe(lines('1:p1'));
    expect(nextseq(e)).toBe('2');
    expect(jobNames(e)).toEqual([names[1]!, names[2]!].sort());

    // Once the receiver succeeds, processing picks up at job 2.
    const ok = processQ(e, [], LOGGER);
    expect(ok.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2', '3:p3'));
    expect(nextseq(e)).toBe('4');
  });

  it('delete: exit 0, job 2 deleted, nextseq advanced, job 3 run', () => {
    const e = setup();
    threeJobs(e);
    const r = processQ(e, ['--on-error', 'delete'], FAIL_ON_2);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '3:p3'));
    expect(nextseq(e)).toBe('4');
    expect(jobNames(e)).toEqual([]);
  });

  it('leave: exit 0, job 2 kept (now stale), nextseq advanced, job 3 run', () => {
    const e = setup();
    const names = threeJobs(e);
    const r = processQ(e, ['--on-error', 'leave'], FAIL_ON_2);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '3:p3'));
    expect(nextseq(e)).toBe('4');
    expect(jobNames(e)).toEqual([names[1]!]);

    // It is below nextseq now: never run again.
    const again = processQ(e, [], LOGGER);
    expect(again.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '3:p3'));
    expect(again.stderr).toContain(names[1]!);
  });

  it('option values are case-insensitive', () => {
    const e = setup();
    threeJobs(e);
    const r = processQ(e, ['--on-error', 'DeLeTe'], FAIL_ON_2);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '3:p3'));
    expect(nextseq(e)).toBe('4');
  });

  it('a Fail packet is a failure: retry stops at it, delete drops it and goes on', () => {
    const e = setup();
    write(e, cmd(e, 'p1'));
    const fail = write(e, bare(e, 'prepare-fail'));
    write(e, cmd(e, 'p3'));

    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(1);
    expect(logOf(e)).toBe(lines('1:p1'));
    expect(nextseq(e)).toBe('2');
    expect(jobNames(e)).toContain(fail);

    const d = processQ(e, ['--on-error', 'delete'], LOGGER);
    expect(d.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '3:p3'));
    expect(nextseq(e)).toBe('4');
    expect(jobNames(e)).toEqual([]);
  });

  it('a NOP packet is a success without running the command', () => {
    const e = setup();
    write(e, cmd(e, 'p1'));
    write(e, bare(e, 'prepare-nop'));
    write(e, cmd(e, 'p3'));
    // Any run of the command for seq 2 would show in the log (and fail under retry).
    const r = processQ(e, [], `${LOGGER}; [ "$FSPL_SEQ" != 2 ]`);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '3:p3'));
    expect(nextseq(e)).toBe('4');
    expect(jobNames(e)).toEqual([]);
  });

  it('--never-delete keeps the files of successful jobs while nextseq advances', () => {
    const e = setup();
    const names = [1, 2, 3].map((i) => write(e, cmd(e, `p${i}`)));
    const r = processQ(e, ['--never-delete'], LOGGER);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2', '3:p3'));
    expect(nextseq(e)).toBe('4');
    expect(jobNames(e)).toEqual([...names].sort());

    // They are stale now, and not run a second time.
    const again = processQ(e, [], LOGGER);
    expect(again.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2', '3:p3'));
  });

  it('-n / --maxjobs runs exactly that many jobs', () => {
    const e = setup();
    for (const i of [1, 2, 3, 4, 5]) write(e, cmd(e, `p${i}`));
    const r = processQ(e, ['-n', '2'], LOGGER);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(e)).toBe('3');
    expect(jobNames(e)).toHaveLength(3);

    const r2 = processQ(e, ['--maxjobs', '2'], LOGGER);
    expect(r2.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2', '3:p3', '4:p4'));
    expect(nextseq(e)).toBe('5');
    expect(jobNames(e)).toHaveLength(1);
  });
});

describe('--order-by timestamp', () => {
  it('runs jobs in ctime order whatever their seq, and leaves nextseq alone', () => {
    const e = setup();
    // Prepared (so ctime ordered) as seq 7, 2, 5: nothing here has the queue's next seq 1.
    write(e, cmdSeq(e, 7, 'first'));
    write(e, cmdSeq(e, 2, 'second'));
    write(e, cmdSeq(e, 5, 'third'));
    const r = processQ(e, ['--order-by', 'timestamp'], LOGGER);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('7:first', '2:second', '5:third'));
    expect(nextseq(e)).toBe('1');
    expect(jobNames(e)).toEqual([]);
  });
});

describe('fspl 1.2.2 defects fspool does not have', () => {
  it('a duplicate seq that is not the next job does not block processing', () => {
    const e = setup();
    write(e, cmd(e, 'p1'));
    write(e, cmd(e, 'p2'));
    const dupA = write(e, cmdSeq(e, 4, 'four-a'));
    const dupB = write(e, cmdSeq(e, 4, 'four-b'));
    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(e)).toBe('3');
    expect(jobNames(e)).toEqual([dupA, dupB].sort());
  });

  it('two different packets with the next seq stop with exit 1 and an error naming both', () => {
    const e = setup();
    const a = write(e, cmdSeq(e, 1, 'one-a'));
    const b = write(e, cmdSeq(e, 1, 'one-b'));
    write(e, cmdSeq(e, 2, 'two'));
    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(1);
    const err = r.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? '';
    expect(err).toContain(a);
    expect(err).toContain(b);
    expect(logOf(e)).toBe('');
    expect(nextseq(e)).toBe('1');
    expect(jobNames(e)).toHaveLength(3);
  });

  it('two byte-identical copies of the next packet run once and both files go', () => {
    const e = setup();
    const p1 = cmd(e, 'p1');
    write(e, p1);
    write(e, p1);
    write(e, cmd(e, 'p2'));
    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(e)).toBe('3');
    expect(jobNames(e)).toEqual([]);
  });

  it('stale jobs (seq below nextseq) are not run and are warned about at the default level', () => {
    const e = setup();
    const stale1 = write(e, cmd(e, 'old1'));
    const stale2 = write(e, cmd(e, 'old2'));
    write(e, cmd(e, 'p3'));
    expect(fspool(['queue-set-next', '-q', e.q, '3']).code).toBe(0);
    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('3:p3'));
    expect(nextseq(e)).toBe('4');
    expect(r.stderr).toMatch(/stale/i);
    expect(r.stderr).toContain(stale1);
    expect(r.stderr).toContain(stale2);
  });

  it('a corrupt file in jobs/ is warned about and does not block the others', () => {
    const e = setup();
    writeFileSync(jobPath(e, 'fspl-garbage.fspl'), 'this is not a packet\n');
    const p1 = cmd(e, 'p1');
    writeFileSync(jobPath(e, 'fspl-truncated.fspl'), p1.subarray(0, 20));
    write(e, p1);
    write(e, cmd(e, 'p2'));
    const r = processQ(e, [], LOGGER);
    expect(logOf(e)).toBe(lines('1:p1', '2:p2'));
    expect(nextseq(e)).toBe('3');
    // Seq 3 is missing, and either unreadable file could be it: that needs a person.
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: seq 3 not found, and 2 job file\(s\) that cannot be read could hold it: .*; give the key or decoder they need \(-d, --decrypt-key\), or remove them$/m);
    expect(r.stderr).toContain('fspl-garbage.fspl');
    expect(r.stderr).toContain('fspl-truncated.fspl');
    expect(jobNames(e)).toEqual(['fspl-garbage.fspl', 'fspl-truncated.fspl']);
  });

  it("--ignore-payload gives the receiver an empty stdin, not fspool's own", () => {
    const e = setup();
    write(e, cmd(e, 'the payload'));
    const r = processQ(e, ['--ignore-payload'], 'printf "%s:%s\\n" "$FSPL_SEQ" "$(wc -c | tr -d " ")" >> "$LOG"', [], {
      input: 'fspool has this on its own stdin\n',
    });
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:0'));
    expect(nextseq(e)).toBe('2');
  });

  it('stdin-process --ignore-payload also gives an empty stdin', () => {
    const e = setup();
    const r = processStdin(e, ['--ignore-payload'], 'wc -c | tr -d " " > "$OUT/count"', { input: cmd(e, 'the payload') });
    expect(r.code).toBe(0);
    expect(readFileSync(join(e.out, 'count'), 'utf8').trim()).toBe('0');
  });

  it('ignores files in jobs/ not named fspl-*.fspl', () => {
    const e = setup();
    const p1 = cmd(e, 'hidden');
    // Valid packets with the next seq, under names a processor must not touch.
    const others = ['tmp-fspl-x.fspl.tmp', 'foo.txt', 'fspl-x.fspl.out', 'xfspl-1.fspl', 'fspl-y.fsplx'];
    for (const n of others) writeFileSync(jobPath(e, n), p1);
    writeFileSync(jobPath(e, 'junk.dat'), 'garbage');
    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe('');
    expect(nextseq(e)).toBe('1');
    expect(jobNames(e)).toEqual([...others, 'junk.dat'].sort());
    expect(r.stderr).not.toContain('junk.dat');

    // A real job alongside them runs; they stay untouched.
    write(e, p1);
    const r2 = processQ(e, [], LOGGER);
    expect(r2.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:hidden'));
    expect(jobNames(e)).toEqual([...others, 'junk.dat'].sort());
  });
});

describe('params', () => {
  const ARGV = 'printf "<%s>" "$@" > "$OUT/argv"; env | grep "^FSPL_PARAM_" | LC_ALL=C sort > "$OUT/params"';

  it("--allow-job-params appends the packet's params after the processor's own", () => {
    const e = setup();
    write(e, cmd(e, '', ['j1', 'j 2', '']));
    const r = processQ(e, ['--allow-job-params'], ARGV, ['arg0', 'own']);
    expect(r.code).toBe(0);
    expect(readFileSync(join(e.out, 'argv'), 'utf8')).toBe('<own><j1><j 2><>');
    expect(readFileSync(join(e.out, 'params'), 'utf8')).toBe('FSPL_PARAM_1=j1\nFSPL_PARAM_2=j 2\nFSPL_PARAM_3=\n');
  });

  it('without --allow-job-params the job params are only in FSPL_PARAM_n', () => {
    const e = setup();
    write(e, cmd(e, '', ['j1', 'j 2']));
    const r = processQ(e, [], ARGV, ['arg0', 'own']);
    expect(r.code).toBe(0);
    expect(readFileSync(join(e.out, 'argv'), 'utf8')).toBe('<own>');
    expect(readFileSync(join(e.out, 'params'), 'utf8')).toBe('FSPL_PARAM_1=j1\nFSPL_PARAM_2=j 2\n');
  });

  // The bytes go from the sender's argv and environment to the receiver's without any
  // re-encoding: \351 is Latin-1 "é", \376\377 and \200 are never valid UTF-8.
  const NON_UTF8_PREPARE = 'FSPL_SET_B=$(printf "\\376\\377") FSPL_SET_PLAIN=ok exec "$FSPOOL" prepare -s - -- "$(printf "a\\351b")" "$(printf "\\200")" plain';
  const RAW = [
    'printf "%s" "$FSPL_SET_B" > "$OUT/set_b"',
    'printf "%s" "$FSPL_SET_PLAIN" > "$OUT/set_plain"',
    'printf "%s" "$FSPL_PARAM_1" > "$OUT/param1"',
    'printf "%s" "$FSPL_PARAM_2" > "$OUT/param2"',
    'printf "%s" "$FSPL_PARAM_3" > "$OUT/param3"',
    'printf "%s\\0" "$@" > "$OUT/argv"',
  ].join('; ');

  function nonUtf8Packet(): Buffer {
    const r = runSync('sh', ['-c', NON_UTF8_PREPARE], { env: { ...process.env, FSPOOL } });
    if (r.code !== 0) throw new Error(`prepare failed: ${r.stderr}`);
    return r.stdout;
  }

  function expectRaw(e: Env, argv: Buffer): void {
    const raw = (n: string) => readFileSync(join(e.out, n));
    expect(raw('set_b')).toEqual(Buffer.from([0xfe, 0xff]));
    expect(raw('set_plain')).toEqual(Buffer.from('ok'));
    expect(raw('param1')).toEqual(Buffer.from([0x61, 0xe9, 0x62]));
    expect(raw('param2')).toEqual(Buffer.from([0x80]));
    expect(raw('param3')).toEqual(Buffer.from('plain'));
    expect(raw('argv')).toEqual(argv);
  }

  const ARGV_BYTES = Buffer.from([...Buffer.from('own\0'), 0x61, 0xe9, 0x62, 0, 0x80, 0, ...Buffer.from('plain\0')]);

  it('non-UTF-8 params and FSPL_SET_ values reach a queue receiver byte-exact', () => {
    const e = setup();
    write(e, nonUtf8Packet());
    const r = processQ(e, ['--allow-job-params'], RAW, ['arg0', 'own']);
    expect(r.stderr).not.toMatch(/^Error/m);
    expect(r.code).toBe(0);
    expectRaw(e, ARGV_BYTES);
  });

  it('non-UTF-8 params and FSPL_SET_ values reach a stdin-process receiver byte-exact', () => {
    const e = setup();
    const r = processStdin(e, ['--allow-job-params'], `${RAW}; cat > /dev/null`, { input: nonUtf8Packet() });
    expect(r.code).toBe(0);
    // stdin-process here has no own params after -c SCRIPT: $0 is the first job param.
    expect(readFileSync(join(e.out, 'argv'))).toEqual(Buffer.from([0x80, 0, ...Buffer.from('plain\0')]));
    const raw = (n: string) => readFileSync(join(e.out, n));
    expect(raw('set_b')).toEqual(Buffer.from([0xfe, 0xff]));
    expect(raw('param1')).toEqual(Buffer.from([0x61, 0xe9, 0x62]));
  });
});

describe('--output-to', () => {
  const TALK = 'cat > /dev/null; echo "out-$FSPL_SEQ"; echo "err-$FSPL_SEQ" >&2';

  it('saveboth writes stdout and stderr to jobs/<jobfile>.out', () => {
    const e = setup();
    const name = write(e, cmd(e, 'x'));
    const r = processQ(e, ['--output-to', 'saveboth'], TALK);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).not.toContain('out-1');
    expect(r.stderr).not.toContain('err-1');
    const saved = readFileSync(jobPath(e, `${name}.out`), 'utf8');
    expect(saved).toContain('out-1\n');
    expect(saved).toContain('err-1\n');
    expect(jobNames(e)).toEqual([`${name}.out`]);
    expect(nextseq(e)).toBe('2');
  });

  it('passboth (the default) passes them through', () => {
    for (const opts of [[], ['--output-to', 'passboth'], ['--output-to', 'PassBoth']]) {
      const e = setup();
      write(e, cmd(e, 'x'));
      const r = processQ(e, opts, TALK);
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toBe('out-1\n');
      expect(r.stderr).toContain('err-1\n');
      expect(jobNames(e)).toEqual([]);
    }
  });
});

describe('the receiver environment', () => {
  it('has the FSPL_* variables, matching queue-info -j N, with the queue dir as given', () => {
    const e = setup();
    const TZ = 'Asia/Kolkata'; // +05:30, so LOCAL and UTC differ
    write(e, cmd(e, 'one'));
    const t0 = Math.floor(Date.now() / 1000);
    const name = write(e, cmd(e, 'two', ['p one', 'p2'], { FSPL_SET_COLOR: 'blue', FSPL_SET_EMPTY: '' }));
    const t1 = Math.ceil(Date.now() / 1000);

    const info = fspool(['queue-info', '-q', 'q', '-j', '2'], { cwd: e.dir, env: { ...process.env, TZ } });
    expect(info.code).toBe(0);

    const r = fspool(['queue-process', '-q', 'q', 'sh', '--', '-c', 'cat > /dev/null; env | grep "^FSPL_" | LC_ALL=C sort > "$OUT/env-$FSPL_SEQ"'], {
      cwd: e.dir,
      env: envOf(e, { TZ }),
    });
    expect(r.code).toBe(0);
    const seen = readFileSync(join(e.out, 'env-2'), 'utf8');
    const sortedInfo = info.stdout.toString().split('\n').filter((l) => l !== '').sort().join('\n') + '\n';
    expect(seen).toBe(sortedInfo);

    const vars = new Map(seen.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(vars.get('FSPL_SEQ')).toBe('2');
    const secs = Number(vars.get('FSPL_CTIME_SECS'));
    expect(secs).toBeGreaterThanOrEqual(t0 - 1);
    expect(secs).toBeLessThanOrEqual(t1 + 1);
    const nanos = Number(vars.get('FSPL_CTIME_NANOS'));
    expect(Number.isInteger(nanos) && nanos >= 0 && nanos < 1e9).toBe(true);
    expect(vars.get('FSPL_CTIME_RFC3339_UTC')).toBe(new Date(secs * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'));
    const local = vars.get('FSPL_CTIME_RFC3339_LOCAL') ?? '';
    expect(local).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30$/);
    expect(Date.parse(local)).toBe(secs * 1000);
    expect(vars.get('FSPL_JOB_FILENAME')).toBe(name);
    expect(vars.get('FSPL_JOB_QUEUEDIR')).toBe('q');
    expect(vars.get('FSPL_JOB_FULLPATH')).toBe(`q/jobs/${name}`);
    expect(vars.get('FSPL_PARAM_1')).toBe('p one');
    expect(vars.get('FSPL_PARAM_2')).toBe('p2');
    expect(vars.has('FSPL_PARAM_3')).toBe(false);
    expect(vars.get('FSPL_SET_COLOR')).toBe('blue');
    expect(vars.get('FSPL_SET_EMPTY')).toBe('');

    // Job 1 had no params and no env: none leak over from job 2 or anywhere else.
    const env1 = readFileSync(join(e.out, 'env-1'), 'utf8');
    expect(env1).toContain('FSPL_SEQ=1\n');
    expect(env1).not.toMatch(/FSPL_PARAM_|FSPL_SET_/);
  });

  it('stdin-process gives the FSPL_CTIME_* and FSPL_SEQ variables but no FSPL_JOB_*', () => {
    const e = setup();
    e.seq = 42;
    const packet = cmd(e, 'x', ['a'], { FSPL_SET_K: 'v' });
    const info = fspool(['stdin-info'], { input: packet });
    expect(info.code).toBe(0);
    const r = processStdin(e, [], 'cat > /dev/null; env | grep "^FSPL_" | LC_ALL=C sort > "$OUT/env"', { input: packet });
    expect(r.code).toBe(0);
    const seen = readFileSync(join(e.out, 'env'), 'utf8');
    expect(seen).toBe(info.stdout.toString().split('\n').filter((l) => l !== '').sort().join('\n') + '\n');
    expect(seen).toContain('FSPL_SEQ=42\n');
    expect(seen).toContain('FSPL_PARAM_1=a\n');
    expect(seen).toContain('FSPL_SET_K=v\n');
    expect(seen).toMatch(/^FSPL_CTIME_RFC3339_UTC=\S+Z$/m);
    expect(seen).not.toContain('FSPL_JOB_');
  });

  it('a receiver reading the job file itself: how far it read is told apart, from its shared offset', () => {
    // The receiver's stdin is the job file's fd (no decoder): whether it read the payload to
    // the end is known only from the offset it shares with fspool.
    const e = setup();
    write(e, cmd(e, 'x'.repeat(100_000)));
    write(e, cmd(e, 'y'.repeat(100_000)));
    // dd makes one read of bs bytes.
    const r = processQ(e, ['-n', '1', '-l', 'info'], 'dd bs=10 count=1 of="$OUT/part" 2>/dev/null');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('command exited 0 leaving 99990 payload bytes unread');
    expect(readFileSync(join(e.out, 'part'), 'utf8')).toBe('x'.repeat(10));
    const whole = processQ(e, ['-l', 'info'], 'cat > "$OUT/whole"');
    expect(whole.code, whole.stderr).toBe(0);
    expect(whole.stderr).not.toContain('unread');
    expect(readFileSync(join(e.out, 'whole'), 'utf8')).toBe('y'.repeat(100_000));
    expect(nextseq(e)).toBe('3');
  });

  it("a child left holding the receiver's stderr: its output still passes through, and fspool does not wait for it", () => {
    // The receiver's stderr is a pipe fspool reads (for the journal's tail). Job 1's receiver
    // exits leaving a child with that pipe, which writes a line once job 2 has started and then
    // sleeps on: the tail is what came before the receiver exited, the later line reaches
    // fspool's stderr, and fspool exits once job 2 is done, not when the child does.
    const e = setup();
    write(e, cmd(e, 'a'));
    write(e, cmd(e, 'b'));
    const pids = join(e.out, 'pids');
    const script =
      'cat >/dev/null; if [ "$FSPL_SEQ" = 1 ]; then (while [ ! -e "$OUT/job2" ]; do sleep 0.05; done; echo late from the child >&2; exec sleep 60 >/dev/null) & echo $! > "$OUT/pids"; echo early >&2; else touch "$OUT/job2"; sleep 1.5; fi';
    const t0 = Date.now();
    const r = processQ(e, ['-l', 'info'], script);
    const seconds = (Date.now() - t0) / 1000;
    try {
      expect(r.code, r.stderr).toBe(0);
      expect(seconds, 'fspool waited for the child').toBeLessThan(30);
      expect(r.stderr).toMatch(/^early\n[^]* job 1 [^\n]* succeeded\n[^]*^late from the child\n[^]* job 2 [^\n]* succeeded\n/m);
      expect(nextseq(e)).toBe('3');
      const runs = JSON.parse(fspool(['queue-history', '-q', e.q, '--json']).stdout.toString()).runs as { seq: number; stderr_tail: string | null }[];
      expect(runs.find((x) => x.seq === 1)?.stderr_tail).toBe('early\n');
    } finally {
      if (existsSync(pids)) runSync('kill', [readFileSync(pids, 'utf8').trim()]);
    }
  });

  it('a receiver flooding its stderr: the flood passes through, and --timeout still ends it', () => {
    // fspool reads the receiver's stderr on its event loop and writes it to its own, here a
    // pipe read slowly, so the receiver's pipe (written a page at a time) is full at every
    // read: each read must give the loop back, or the timeout waits as long as the flood lasts.
    const e = setup();
    write(e, cmd(e, 'a'));
    const rc = join(e.out, 'rc');
    const out = join(e.out, 'stderr');
    const slow = 'import sys, time\nwhile True:\n    d = sys.stdin.buffer.read1(65536)\n    if not d: break\n    sys.stdout.buffer.write(d)\n    time.sleep(0.005)';
    const r = runSync(
      'sh',
      ['-c', '{ "$0" queue-process -q "$1" --timeout 1 sh -- -c "cat >/dev/null; yes flood | dd bs=4096 iflag=fullblock status=none >&2"; echo $? > "$2"; } 2>&1 | python3 -c "$4" > "$3"', FSPOOL, e.q, rc, out, slow],
      { env: envOf(e), timeoutMs: 30_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(rc, 'utf8').trim()).toBe('1');
    const text = readFileSync(out, 'latin1');
    expect(text.startsWith('flood\nflood\n')).toBe(true);
    expect(text.slice(-2000)).toMatch(/job 1 [^\n]* failed: timed out; command killed by SIGTERM\n/);
    expect(jobNames(e)).toHaveLength(1);
    expect(nextseq(e)).toBe('1');
  });
});

describe('stdin-process', () => {
  const SUM = 'sha256sum | cut -d" " -f1 > "$OUT/sum"';

  function bigPacket(e: Env): { packet: Buffer; payloadSum: string } {
    const payload = randomBytes(5 * 1024 * 1024);
    const file = join(e.dir, 'payload.bin');
    writeFileSync(file, payload);
    const packet = preparePacket(['-s', '-', '-i', file]);
    return { packet, payloadSum: sha256(payload) };
  }

  it('a 5 MB payload from a regular file arrives intact', () => {
    const e = setup();
    const { packet, payloadSum } = bigPacket(e);
    const file = join(e.dir, 'packet.fspl');
    writeFileSync(file, packet);
    const r = processStdin(e, [], SUM, { stdinFile: file });
    expect(r.code).toBe(0);
    expect(readFileSync(join(e.out, 'sum'), 'utf8').trim()).toBe(payloadSum);
  });

  it('a 5 MB payload from a pipe arrives intact', () => {
    const e = setup();
    const { packet, payloadSum } = bigPacket(e);
    const r = processStdin(e, [], SUM, { input: packet });
    expect(r.code).toBe(0);
    expect(readFileSync(join(e.out, 'sum'), 'utf8').trim()).toBe(payloadSum);
  });

  it('a Fail packet exits 1 without running the command', () => {
    const e = setup();
    const r = processStdin(e, [], `${LOGGER}`, { input: bare(e, 'prepare-fail') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: /m);
    expect(logOf(e)).toBe('');
  });

  it('a NOP packet exits 0 without running the command', () => {
    const e = setup();
    const r = processStdin(e, [], `${LOGGER}; exit 1`, { input: bare(e, 'prepare-nop') });
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe('');
  });

  it('a command exiting 3 makes exit 1 with a one-line Error: message', () => {
    const e = setup();
    const r = processStdin(e, [], 'cat > /dev/null; exit 3', { input: cmd(e, 'x') });
    expect(r.code).toBe(1);
    const msg = r.stderr.trimEnd().split('\n');
    expect(msg).toHaveLength(1);
    expect(msg[0]).toMatch(/^Error: .*\b3\b/);
  });

  it('a command that does not exist makes exit 1', () => {
    const e = setup();
    const r = fspool(['stdin-process', 'fspool-no-such-command-xyz'], { input: cmd(e, 'x') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: /m);
  });
});

describe('exit codes and usage', () => {
  function expectUsageErrors(e: Env, cases: string[][]): void {
    const got = cases.map((args) => ({ args: args.join(' '), code: fspool(args, { input: '' }).code }));
    expect(got).toEqual(cases.map((args) => ({ args: args.join(' '), code: 2 })));
    // None of them ran the job.
    expect(nextseq(e)).toBe('1');
    expect(jobNames(e)).toHaveLength(1);
  }

  it('unknown subcommand, unknown option, missing -q or COMMAND exit 2', () => {
    const e = setup();
    write(e, cmd(e, 'x'));
    expectUsageErrors(e, [
      ['no-such-subcommand'],
      ['queue-process', '-q', e.q, '--no-such-option', 'true'],
      ['queue-process', 'true'], // no -q
      ['queue-process', '-q', e.q], // no COMMAND
      ['stdin-process'],
    ]);
  });

  it('a bad option value exits 2', () => {
    const e = setup();
    write(e, cmd(e, 'x'));
    expectUsageErrors(e, [
      ['queue-process', '-q', e.q, '--on-error', 'sometimes', 'true'],
      ['queue-process', '-q', e.q, '--order-by', 'size', 'true'],
      ['queue-process', '-q', e.q, '--output-to', 'nowhere', 'true'],
      ['queue-process', '-q', e.q, '-n', 'two', 'true'],
      ['-l', 'loud', 'queue-process', '-q', e.q, 'true'],
    ]);
  });

  it('COMMAND may also come after --', () => {
    const e = setup();
    write(e, cmd(e, 'p1'));
    const r = fspool(['queue-process', '-q', e.q, '--', 'sh', '-c', LOGGER], { env: envOf(e) });
    expect(r.code).toBe(0);
    expect(logOf(e)).toBe(lines('1:p1'));
    expect(nextseq(e)).toBe('2');
  });

  it('queue-process on an append-only queue exits 1 saying append-only', () => {
    const dir = tempDir('fspool-sem-');
    const q = join(dir, 'ao');
    expect(fspool(['queue-init', '--append-only', '-q', q]).code).toBe(0);
    const e: Env = { dir, q, log: join(dir, 'log'), out: dir, seq: 1 };
    queueWriteNamed(e, cmd(e, 'p1'));
    const r = processQ(e, [], LOGGER);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: .*append-only/m);
    expect(logOf(e)).toBe('');
    expect(jobNames(e)).toHaveLength(1);
  });

  it('a command that does not exist: exit 1, job kept, nextseq unchanged, even with --on-error delete', () => {
    for (const mode of ['retry', 'delete', 'leave']) {
      const e = setup();
      const names = [write(e, cmd(e, 'p1')), write(e, cmd(e, 'p2'))];
      const r = fspool(['queue-process', '-q', e.q, '--on-error', mode, 'fspool-no-such-command-xyz'], { env: envOf(e) });
      expect(r.code, mode).toBe(1);
      expect(r.stderr, mode).toMatch(/^Error: /m);
      expect(nextseq(e), mode).toBe('1');
      expect(jobNames(e), mode).toEqual([...names].sort());
    }
  });
});

describe('queue-write', () => {
  it('empty stdin: exit 1 and nothing written to jobs/', () => {
    const e = setup();
    const r = fspool(['queue-write', '-q', e.q], { input: '' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: /m);
    expect(jobNames(e)).toEqual([]);
  });

  it('names the file fspl-<uuid v4>.fspl, copies the bytes, and leaves no tmp file', () => {
    const e = setup();
    const packet = cmd(e, 'payload');
    const r = fspool(['queue-write', '-q', e.q], { input: packet });
    expect(r.code).toBe(0);
    const names = jobNames(e);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/^fspl-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.fspl$/);
    expect(readFileSync(jobPath(e, names[0]!))).toEqual(packet);

    // Two writes of the same packet get two different names.
    const r2 = fspool(['queue-write', '-q', e.q], { input: packet });
    expect(r2.code).toBe(0);
    const after = jobNames(e);
    expect(after).toHaveLength(2);
    expect(after.every((n) => /^fspl-[0-9a-f-]{36}\.fspl$/.test(n))).toBe(true);
  });
});
