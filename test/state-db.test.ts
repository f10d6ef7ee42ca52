// fspool's queue state (QUEUE/fspool/state.db): the header cache, falling back when the
// database is gone, damaged or locked, queue-status and its exit codes, queue-history and its
// filters, the --json documents, queue-clean, and --retries/--backoff. Real processes, the
// real database, real decoders (zstd) counted through a file they append to.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { encodeHeader } from '../src/packet/codec.js';
import type { Header } from '../src/packet/header.js';
import { packetId } from '../src/packet/identity.js';
import { asNobody, FSPOOL, fspl, fspool, preparePacket, type Result, runAsync, runSync } from './helpers/cli.js';
import { sleep, waitFor } from './helpers/queue.js';
import { dbPath, jobs, lines, LOGGER, logOf, nextseq, packet, proc, put, type Q, runs, setup, warns, zstd } from './helpers/state.js';

/** A decoder that counts its runs (one line each in `counter`) and decompresses zstd. */
const countingZstd = (counter: string) => `echo run >> '${counter}'; zstd -dc`;
const decoderRuns = (counter: string) => (existsSync(counter) ? readFileSync(counter, 'utf8').split('\n').filter(Boolean).length : 0);

function ok(args: string[], env?: NodeJS.ProcessEnv): Result {
  const r = fspool(args, env ? { env: { ...process.env, ...env } } : undefined);
  expect(r.code, `fspool ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

const json = (r: Result) => JSON.parse(r.stdout.toString());

describe('header cache', () => {
  it('a second queue-ls -d does not run the decoder again; queue-info and queue-process use the cache too', () => {
    const q = setup('fspool-cache-');
    const counter = join(q.dir, 'decoder-runs');
    for (let i = 1; i <= 5; i++) put(q, zstd(packet(i, `p${i}`)));
    const dec = countingZstd(counter);

    const first = ok(['queue-ls', '-q', q.q, '-d', dec]);
    expect(decoderRuns(counter)).toBe(5);
    const second = ok(['-l', 'debug', 'queue-ls', '-q', q.q, '-d', dec]);
    expect(decoderRuns(counter)).toBe(5);
    expect(second.stdout.toString()).toBe(first.stdout.toString());
    expect(second.stderr).toContain('header cache: 5 hit(s), 0 file(s) to read');
    // Same listing as fspl gives (which runs its decoder for every file, every time).
    expect(fspl(['queue-ls', '-q', q.q, '-d', 'zstd -dc']).stdout.toString()).toBe(first.stdout.toString());

    expect(ok(['queue-info', '-q', q.q, '-d', dec, '-j', '3']).stdout.toString()).toMatch(/^FSPL_SEQ=3\n/);
    expect(decoderRuns(counter)).toBe(5);

    // Processing decodes each payload once to deliver it, and no header again.
    const r = proc(q, ['-d', dec]);
    expect(r.code, r.stderr).toBe(0);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2', '3:p3', '4:p4', '5:p5'));
    expect(decoderRuns(counter)).toBe(10);
  });

  it('a changed file is read again: same name, other content (size, mtime, or only the ctime differs)', () => {
    const q = setup('fspool-cache-inv-');
    const counter = join(q.dir, 'decoder-runs');
    const dec = countingZstd(counter);
    const a = put(q, zstd(packet(1, 'aaaa')));
    const b = put(q, zstd(packet(2, 'bbbb')));
    ok(['queue-ls', '-q', q.q, '-d', dec]);
    expect(decoderRuns(counter)).toBe(2);

    // Another packet under the same name, another size.
    put(q, zstd(packet(7, 'a much longer payload than before')), a);
    let ls = ok(['queue-ls', '-q', q.q, '-d', dec]).stdout.toString();
    expect(decoderRuns(counter)).toBe(3);
    expect(ls).toMatch(new RegExp(`^7 .*${a}$`, 'm'));

    // Rewritten in place with a packet of the same size, and its mtime set back: only the
    // ctime tells (and that is enough).
    const path = join(q.q, 'jobs', b);
    const before = statSync(path);
    const other = zstd(packet(9, 'cccc'));
    expect(other.length).toBe(before.size);
    writeFileSync(path, other);
    utimesSync(path, before.atime, before.mtime);
    ls = ok(['queue-ls', '-q', q.q, '-d', dec]).stdout.toString();
    expect(decoderRuns(counter)).toBe(4);
    expect(ls).toMatch(new RegExp(`^9 .*${b}$`, 'm'));
    expect(ls).not.toMatch(/^2 /m);
  });

  it('a file the decoder could not read is not cached: it is tried again, and read once it is fixed', () => {
    const q = setup('fspool-cache-bad-');
    const counter = join(q.dir, 'decoder-runs');
    const dec = countingZstd(counter);
    const bad = put(q, Buffer.from('not zstd at all'));
    for (const _ of [1, 2]) {
      const r = ok(['queue-ls', '-q', q.q, '-d', dec]);
      expect(r.stderr).toContain(bad);
    }
    expect(decoderRuns(counter)).toBe(2);
    put(q, zstd(packet(4, 'fixed')), bad);
    const r = ok(['queue-ls', '-q', q.q, '-d', dec]);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toMatch(new RegExp(`^4 .*${bad}$`, 'm'));
    expect(decoderRuns(counter)).toBe(3);
  });

  it('raw packets: the second listing reads no file', () => {
    const q = setup('fspool-cache-raw-');
    for (let i = 1; i <= 3; i++) put(q, packet(i, `p${i}`));
    const a = ok(['-l', 'debug', 'queue-ls', '-q', q.q]);
    expect(a.stderr).toContain('header cache: 0 hit(s), 3 file(s) to read');
    const b = ok(['-l', 'debug', 'queue-ls', '-q', q.q]);
    expect(b.stderr).toContain('header cache: 3 hit(s), 0 file(s) to read');
    expect(b.stdout.toString()).toBe(a.stdout.toString());
  });

  it('a job file not everyone may read stays out of it: its params and variables would be read there by users the file keeps out', () => {
    const q = setup('fspool-cache-private-');
    const seq = join(q.dir, 'seq');
    writeFileSync(seq, '1\n');
    put(q, preparePacket(['-s', seq, '-i', '-', '--', 'open-param'], 'a', { FSPL_SET_TOKEN: 'open-value' }));
    const hidden = put(q, preparePacket(['-s', seq, '-i', '-', '--', 'hidden-param'], 'b', { FSPL_SET_TOKEN: 'hidden-value' }));
    chmodSync(join(q.q, 'jobs', hidden), 0o600);
    ok(['queue-ls', '-q', q.q]);
    const again = ok(['-l', 'debug', 'queue-ls', '-q', q.q]);
    expect(again.stderr).toContain('header cache: 1 hit(s), 1 file(s) to read');
    expect(ok(['queue-info', '-q', q.q, '-j', '2']).stdout.toString()).toMatch(/^FSPL_SET_TOKEN=hidden-value$/m);
    const db = readFileSync(dbPath(q));
    expect(db.includes('open-value') && db.includes('open-param'), 'the readable one is cached').toBe(true);
    expect(db.includes('hidden-value') || db.includes('hidden-param')).toBe(false);
  });

  it('a processor reads the database with pread, not through a mapping that a failing disk would turn into SIGBUS', () => {
    const q = setup('fspool-cache-map-');
    put(q, packet(1, 'p1'));
    ok(['queue-ls', '-q', q.q]);
    const maps = join(q.dir, 'maps');
    // The receiver looks at fspool's mappings: its parent's, or its grandparent's where the
    // spawner is its parent.
    const look = `p=$PPID; case "$(cat /proc/$p/comm)" in fspool-spawn*) p=$(cut -d' ' -f4 /proc/$p/stat);; esac; cat /proc/$p/maps > '${maps}'; cat >/dev/null`;
    const r = proc(q, [], look);
    expect(r.code, r.stderr).toBe(0);
    const mapped = readFileSync(maps, 'utf8').split('\n');
    // WAL mode's shared index is always mapped: the look sees fspool's own mappings.
    expect(mapped.some((l) => l.endsWith('/fspool/state.db-shm'))).toBe(true);
    expect(mapped.filter((l) => l.endsWith('/fspool/state.db'))).toEqual([]);
  });
});

describe("a packet's id from the header cache", () => {
  it('is the one reading its file gives, for a header small and one of 600 KB, wherever the cache holds it', () => {
    const q = setup('fspool-cache-id-');
    const ids = new Map<number, string>();
    // By name, the big header comes first: the due job's stored header is not at the start.
    for (const [seq, n, name] of [[1, 3, 'fspl-b.fspl'], [2, 40_000, 'fspl-a.fspl']] as const) {
      const h: Header = { seq: BigInt(seq), ctimeSecs: 1_700_000_000n, ctimeNanos: seq, cmd: { kind: 'Command', params: Array.from({ length: n }, (_, i) => Buffer.from(`param-${i}-\u00ff`, 'latin1')), env: [[Buffer.from('K'), Buffer.from('v')]] } };
      put(q, Buffer.concat([encodeHeader(h), Buffer.from('payload')]), name);
      ids.set(seq, packetId(h));
    }
    const status = (q: Q, extra: string[] = []) => fspool(['queue-status', '-q', q.q, ...extra]);
    const dueId = (r: Result) => json(r).due[0].packet as string;
    // Cold (no cache yet), then warm: queue-ls fills the cache, the status reads from it.
    expect(dueId(status(q, ['--json']))).toBe(ids.get(1));
    ok(['queue-ls', '-q', q.q]);
    expect(ok(['-l', 'debug', 'queue-status', '-q', q.q]).stderr).toContain('header cache: 2 hit(s), 0 file(s) to read');
    expect(dueId(status(q, ['--json']))).toBe(ids.get(1));
    // And the large one, due in its turn; the journal records its run by the same id.
    expect(proc(q, ['-n', '1'], 'cat >/dev/null').code).toBe(0);
    expect(dueId(status(q, ['--json']))).toBe(ids.get(2));
    const last = proc(q, [], 'cat >/dev/null');
    expect(last.code, last.stderr).toBe(0);
    expect(runs(q).map((r) => r.packet)).toEqual([ids.get(1), ids.get(2)]);
  });
});

describe('durability', () => {
  it("a job's outcome reaches the disk (the WAL fsynced) after its receiver ran and before nextseq moves on", () => {
    const q = setup('fspool-durable-');
    put(q, packet(1, 'p1'));
    const trace = join(q.dir, 'trace');
    const r = runSync('strace', ['-f', '-qq', '-e', 'trace=openat,execve,fsync,fdatasync,rename,renameat,renameat2', '-o', trace, FSPOOL, 'queue-process', '-q', q.q, 'true']);
    expect(r.code, r.stderr).toBe(0);
    expect(nextseq(q)).toBe('2');
    // Each line: TID CALL(ARGS) = RESULT, or a call split around another thread's line
    // (CALL(ARGS <unfinished ...>, then <... CALL resumed>) = RESULT). fds are kept per thread
    // id: the database's files are opened and synced on fspool's main thread, whose id is the
    // process's.
    const fds = new Map<string, string>();
    const split = new Map<string, string>();
    const events: string[] = [];
    for (const line of readFileSync(trace, 'utf8').split('\n')) {
      const l = /^(\d+) +(.*)$/.exec(line);
      if (!l) continue;
      const pid = l[1]!;
      let rest = l[2]!;
      const unfinished = /^(.*) <unfinished \.\.\.>$/.exec(rest);
      if (unfinished) {
        split.set(pid, unfinished[1]!);
        continue;
      }
      const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(rest);
      if (resumed) rest = `${split.get(pid) ?? ''}${resumed[1]}`;
      const m = /^(\w+)\((.*)\) += (-?\d+)/.exec(rest);
      if (!m) continue;
      const [, call, args, result] = m;
      if (call === 'openat' && Number(result) >= 0) fds.set(`${pid}:${result}`, /"([^"]*)"/.exec(args!)![1]!);
      else if (call === 'execve' && result === '0' && /^"[^"]*\/true"/.test(args!)) events.push('receiver');
      else if ((call === 'fsync' || call === 'fdatasync') && fds.get(`${pid}:${/^\d+/.exec(args!)![0]}`)?.endsWith('/fspool/state.db-wal')) events.push('wal-sync');
      else if (call!.startsWith('rename') && /nextseq\.temp".*"[^"]*\/nextseq"/.test(args!)) events.push('nextseq');
    }
    const ran = events.indexOf('receiver');
    const moved = events.indexOf('nextseq');
    expect(ran, events.join(' ')).toBeGreaterThanOrEqual(0);
    expect(moved, events.join(' ')).toBeGreaterThan(ran);
    expect(events.slice(ran, moved), events.join(' ')).toContain('wal-sync');
  });
});

describe('without the database', () => {
  it('a deleted database only loses history: it is made again, nothing is reported', () => {
    const q = setup('fspool-nodb-');
    put(q, packet(1, 'p1'));
    expect(proc(q, []).code).toBe(0);
    rmSync(join(q.q, 'fspool'), { recursive: true });
    put(q, packet(2, 'p2'));
    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(warns(r)).toEqual([]);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(runs(q).map((x) => x.seq)).toEqual(['2']);
  });

  it('a damaged database: one WARN line, and ls, status and processing still work', () => {
    const q = setup('fspool-baddb-');
    for (let i = 1; i <= 3; i++) put(q, packet(i, `p${i}`));
    ok(['queue-ls', '-q', q.q]);
    writeFileSync(dbPath(q), Buffer.alloc(8192, 'garbage!'));

    const ls = ok(['queue-ls', '-q', q.q]);
    expect(ls.stdout.toString().trim().split('\n')).toHaveLength(4);
    expect(warns(ls)).toHaveLength(1);
    expect(warns(ls)[0]).toMatch(/state database .*state\.db is damaged .*; going on without it/);

    const st = fspool(['queue-status', '-q', q.q]);
    expect(st.code, st.stderr).toBe(0);
    expect(warns(st)).toHaveLength(1);
    expect(st.stdout.toString()).toMatch(/^journal: +none/m);

    const r = proc(q, []);
    expect(r.code, r.stderr).toBe(0);
    expect(warns(r)).toHaveLength(1);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2', '3:p3'));
    expect(nextseq(q)).toBe('4');
    expect(jobs(q)).toEqual([]);
    // Left for a person to look at: never replaced behind their back.
    expect(readFileSync(dbPath(q)).subarray(0, 8).toString()).toBe('garbage!');
  });

  it('a database locked by another process (an EXCLUSIVE transaction held open) does not block processing', async () => {
    const q = setup('fspool-locked-');
    put(q, packet(1, 'p1'));
    ok(['queue-ls', '-q', q.q]);
    put(q, packet(2, 'p2'));
    const holder = new Database(dbPath(q));
    holder.exec('BEGIN EXCLUSIVE');
    holder.exec('CREATE TABLE held_by_the_test (x)');
    try {
      // Run it in the background: the test's own event loop must stay free.
      const child = spawn(FSPOOL, ['queue-process', '-q', q.q, 'sh', '--', '-c', LOGGER], {
        env: { ...process.env, LOG: q.log },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code, stderr).toBe(0);
      expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
      expect(nextseq(q)).toBe('3');
      const w = stderr.split('\n').filter((l) => l.startsWith(' WARN'));
      expect(w).toHaveLength(1);
      expect(w[0]).toMatch(/state database .* is locked by another process; going on without it in this run/);
      expect(holder.inTransaction).toBe(true);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    // Afterwards the database is used again.
    put(q, packet(3, 'p3'));
    expect(proc(q, []).code).toBe(0);
    expect(runs(q).map((r) => r.seq)).toEqual(['3']);
  });

  it('fspl still processes and lists a queue fspool has used', () => {
    const q = setup('fspool-fspl-');
    for (let i = 1; i <= 3; i++) put(q, packet(i, `p${i}`));
    expect(proc(q, ['-n', '1']).code).toBe(0);
    expect(existsSync(dbPath(q))).toBe(true);
    expect(fspl(['queue-ls', '-q', q.q]).stdout.toString()).toBe(ok(['queue-ls', '-q', q.q]).stdout.toString());
    const f = fspl(['queue-process', '-q', q.q, 'sh', '--', '-c', LOGGER], { env: { ...process.env, LOG: q.log } });
    expect(f.code, f.stderr).toBe(0);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2', '3:p3'));
    expect(nextseq(q)).toBe('4');
  });
});

describe('queue-status', () => {
  const status = (q: Q, extra: string[] = []) => fspool(['queue-status', '-q', q.q, ...extra]);

  it('healthy (0): nothing waiting, or a gap younger than --stalled-after', () => {
    const q = setup('fspool-status-');
    expect(status(q).code).toBe(0);
    put(q, packet(3, 'p3'));
    const r = status(q, ['--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ state: 'healthy', next_seq: 1, pending: 1, gap: { seq: 1, waiting: 1, lowest_waiting_seq: 3 } });
  });

  it("a gap is waited on since the first waiting file arrived (its inode change), not since an mtime a sender's copy kept; read from the files and from the header cache alike", () => {
    const q = setup('fspool-status-since-');
    const before = Date.now() / 1000;
    put(q, packet(2, 'p2'));
    put(q, packet(3, 'p3'));
    const old = new Date('2001-01-01T00:00:00Z');
    for (const name of jobs(q)) utimesSync(join(q.q, 'jobs', name), old, old);
    const arrived = Math.min(...jobs(q).map((name) => statSync(join(q.q, 'jobs', name)).ctimeMs)) / 1000;
    for (const read of ['files', 'cache']) {
      const s = json(status(q, ['--json']));
      expect(s.gap.since_epoch, read).toBeCloseTo(arrived, 3);
      expect(s.gap.since_epoch, read).toBeGreaterThanOrEqual(Math.floor(before));
    }
  });

  it('failing (4): a job released from quarantine that fails again holds up every run, though its seq is below next; queue-clean keeps it', () => {
    const q = setup('fspool-status-released-');
    for (let i = 1; i <= 3; i++) put(q, packet(i, `p${i}`));
    const failsOne = 'cat >/dev/null; [ "$FSPL_SEQ" != 1 ]';
    expect(proc(q, ['-n', '2', '--on-error', 'quarantine'], failsOne).code).toBe(0);
    const [kept] = readdirSync(join(q.q, 'fspool/quarantine')).filter((n) => n.endsWith('.fspl'));
    expect(fspool(['queue-quarantine', '-q', q.q, '--release', kept!]).code).toBe(0);
    let s = json(status(q, ['--json']));
    expect(s.state).toBe('healthy');
    expect(s.released.map((r: { file: string; last_run: unknown }) => [r.file, r.last_run])).toEqual([[kept, null]]);
    expect(s.stale).toEqual([]);
    // Released, it fails again under the default --on-error retry: every run stops at it.
    expect(proc(q, [], failsOne).code).toBe(1);
    const r = status(q, ['--json']);
    expect(r.code).toBe(4);
    s = json(r);
    expect(s.state).toBe('failing');
    expect(s.reasons[0]).toMatch(new RegExp(`^job 1 \\(${kept}\\), released from quarantine, failed again at \\S+ \\(exit-code: command exited with status 1\\); it is kept, and each run tries it again before job 3$`));
    expect(s.released[0].last_run.outcome).toBe('exit-code');
    expect(status(q).stdout.toString()).toMatch(/^released: +1 \(from quarantine: each run tries them before the due job\)\n  \S+ +seq 1 +last ran .* \(exit-code\)$/m);
    expect(fspool(['queue-clean', '-q', q.q, '--stale']).code).toBe(0);
    expect(jobs(q)).toContain(kept);
  });

  it('a released file is run once: another copy of its packet below next (delivered again) is stale, not released', () => {
    const q = setup('fspool-status-released-copy-');
    const bytes = packet(1, 'p1');
    put(q, bytes);
    put(q, packet(2, 'p2'));
    const failsOne = 'cat >/dev/null; echo "ran $FSPL_SEQ" >> "$LOG"; [ "$FSPL_SEQ" != 1 ] || [ -e "$LOG.ok" ]';
    expect(proc(q, ['--on-error', 'quarantine'], failsOne).code).toBe(0);
    const [kept] = readdirSync(join(q.q, 'fspool/quarantine')).filter((n) => n.endsWith('.fspl'));
    put(q, bytes, 'fspl-again.fspl');
    expect(fspool(['queue-quarantine', '-q', q.q, '--release', kept!]).code).toBe(0);
    const s = json(status(q, ['--json']));
    expect(s.released.map((r: { file: string }) => r.file)).toEqual([kept]);
    expect(s.stale.map((f: { file: string }) => f.file)).toEqual(['fspl-again.fspl']);
    writeFileSync(`${q.log}.ok`, '');
    expect(proc(q, [], failsOne).code).toBe(0);
    expect(logOf(q)).toBe('ran 1\nran 2\nran 1\n');
  });

  it("failing (4): a queue folder its processor (nextseq's owner) may not write, for any reader; healthy again once it may", () => {
    const q = setup('fspool-status-shut-');
    put(q, packet(1, 'p1'));
    runSync('chown', ['-R', '65534:65534', q.q]);
    chmodSync(dirname(q.q), 0o755);
    chmodSync(q.q, 0o555);
    for (const r of [status(q, ['--json']), asNobody(['queue-status', '-q', q.q, '--json'])]) {
      expect(r.code, r.stderr).toBe(4);
      expect(json(r).reasons[0]).toBe(`${q.q} (owned by uid 65534, mode 0555) is not writable by uid 65534, the owner of nextseq (the processor's user): no job can be recorded, so none runs; make it writable, or run the processor as a user who may write it`);
    }
    chmodSync(q.q, 0o755);
    expect(status(q).code).toBe(0);
  });

  it("failing (4): a due job the queue's processor may not read, to a reader who can (root's monitoring): the processor is nextseq's owner, or the fspool that last started on the queue when nextseq is the queue owner's", () => {
    const q = setup('fspool-status-unreadable-due-');
    runSync('chown', ['-R', '65534:65534', q.q]);
    chmodSync(dirname(q.q), 0o755);
    // Root's file, only root may read it: as a transport running as root may leave it.
    const shut = (seq: number) => {
      const name = put(q, packet(seq, `p${seq}`));
      chmodSync(join(q.q, 'jobs', name), 0o600);
      return name;
    };
    const reason = (seq: number, name: string) =>
      `job ${seq} (${name}, owned by uid 0, mode 0600) cannot be read by uid 65534, the queue's processor: the queue stops at it; let that user read it, and have whatever writes the queue make files that user may read`;
    const one = shut(1);
    // nextseq is the queue owner's, as a root processor leaves it too, and no fspool has started
    // on the queue: the processor is not known, nothing is judged.
    expect(status(q).code).toBe(0);
    // The processor (nobody) cannot read it: its run stops there, and it is now known.
    expect(asNobody(['queue-process', '-q', q.q, 'true']).code).toBe(1);
    expect(nextseq(q)).toBe('1');
    let r = status(q, ['--json']);
    expect(r.code, r.stderr).toBe(4);
    expect(json(r).reasons).toEqual([reason(1, one)]);
    // Its own status says so too, as a file it cannot read.
    const own = asNobody(['queue-status', '-q', q.q, '--json']);
    expect(own.code, own.stderr).toBe(4);
    expect(json(own).reasons[0]).toMatch(new RegExp(`^1 job file\\(s\\) cannot be read: ${one} \\(`));
    // Readable, it runs.
    chmodSync(join(q.q, 'jobs', one), 0o644);
    expect(status(q).code).toBe(0);
    expect(asNobody(['queue-process', '-q', q.q, 'true']).code).toBe(0);
    const two = shut(2);
    expect(json(status(q, ['--json'])).reasons).toEqual([reason(2, two)]);
    // jobs/ itself shut to that user: nothing runs.
    chmodSync(join(q.q, 'jobs'), 0o700);
    runSync('chown', ['0:0', join(q.q, 'jobs')]);
    expect(json(status(q, ['--json'])).reasons).toEqual([`${q.q}/jobs (owned by uid 0, mode 0700) cannot be read by uid 65534, the queue's processor: no job runs; let that user read it, and have whatever writes the queue make files that user may read`]);
    runSync('chown', ['65534:65534', join(q.q, 'jobs')]);
    chmodSync(join(q.q, 'jobs'), 0o755);
    // A root fspool takes over (nextseq stays the queue owner's): it reads every file, healthy.
    expect(proc(q, []).code).toBe(0);
    expect(logOf(q)).toBe('2:p2\n');
    const three = shut(3);
    expect(status(q).code).toBe(0);
    // Nobody's processor starts again, and stops at it: known again at its start.
    expect(asNobody(['queue-process', '-q', q.q, 'true']).code).toBe(1);
    expect(json(status(q, ['--json'])).reasons).toEqual([reason(3, three)]);
    // fspl as root takes over: nextseq is root's now, so root is the processor, healthy.
    expect(fspl(['queue-process', '-q', q.q, 'true']).code).toBe(0);
    expect(statSync(join(q.q, 'nextseq')).uid).toBe(0);
    shut(4);
    expect(status(q).code).toBe(0);
  });

  it('stalled (3): a gap waited on longer than --stalled-after, while no processor runs', () => {
    const q = setup('fspool-status-stalled-');
    put(q, packet(2, 'p2'));
    const r = status(q, ['--stalled-after', '0']);
    expect(r.code, r.stdout.toString()).toBe(3);
    expect(r.stdout.toString()).toMatch(/^state: +stalled - waiting for seq 1 since /m);
    expect(r.stdout.toString()).toMatch(/^gap: +waiting for seq 1 since .*1 job\(s\) behind it, the lowest is seq 2$/m);
  });

  it('failing (4): the due job failed and waits for a retry; a job in quarantine', () => {
    const q = setup('fspool-status-fail-');
    put(q, packet(1, 'p1'));
    expect(proc(q, [], 'cat >/dev/null; echo oops >&2; exit 5').code).toBe(1);
    let r = status(q, ['--json']);
    expect(r.code).toBe(4);
    const s = json(r);
    expect(s.state).toBe('failing');
    expect(s.reasons[0]).toMatch(/^job 1 failed at .*\(exit-code: command exited with status 5\)/);
    expect(s.last_failure).toMatchObject({ seq: 1, outcome: 'exit-code', exit_code: 5, stderr_tail: 'oops\n', action: 'stop' });
    expect(s.due.map((d: { seq: number }) => d.seq)).toEqual([1]);

    expect(proc(q, ['--on-error', 'quarantine'], 'exit 5').code).toBe(0);
    r = status(q);
    expect(r.code).toBe(4);
    expect(r.stdout.toString()).toMatch(/^state: +failing - 1 job\(s\) in quarantine wait for a person/m);
    // Once the quarantine is dealt with (and job 2 ran), healthy again.
    rmSync(join(q.q, 'fspool/quarantine'), { recursive: true });
    put(q, packet(2, 'p2'));
    expect(proc(q, []).code).toBe(0);
    r = status(q, ['--json']);
    expect(r.code).toBe(0);
    expect(json(r).last_success).toMatchObject({ seq: 2, outcome: 'success', bytes: 2 });
  });

  it('failing (4): two different packets with the due seq', () => {
    const q = setup('fspool-status-amb-');
    put(q, packet(1, 'one'));
    put(q, packet(1, 'another'));
    const r = status(q, ['--json']);
    expect(r.code).toBe(4);
    expect(json(r).reasons[0]).toMatch(/seq 1 is ambiguous/);
    expect(json(r).ambiguous[0].files).toHaveLength(2);
  });

  it('the processor holding the lock, and its pid, from /proc/locks; a gap is stalled, and so is a due job its holder does not run', async () => {
    const q = setup('fspool-status-lock-');
    put(q, packet(2, 'p2'));
    const holder = spawn('flock', [join(q.q, 'nextseq.lock'), 'sleep', '30'], { stdio: 'ignore' });
    try {
      let s: { processor: { running: boolean; pid: number }; state: string; reasons: string[] } | undefined;
      for (let i = 0; i < 200 && !s?.processor.running; i++) {
        s = json(status(q, ['--json', '--stalled-after', '0']));
        if (!s!.processor.running) await sleep(25);
      }
      expect(s!.processor).toMatchObject({ running: true, pid: holder.pid });
      // A watch waiting at a gap does not close it: the missing packet is overdue all the same.
      expect(s!.state).toBe('stalled');
      expect(s!.reasons).toEqual([expect.stringMatching(/^waiting for seq 1 since \S+ \(1 job\(s\) behind the gap\)$/)]);
      put(q, packet(1, 'p1'));
      s = json(status(q, ['--json', '--stalled-after', '60']));
      expect(s!.state).toBe('healthy');
      // Held by something that runs no job (here a script's flock) for longer than --stalled-after.
      s = json(status(q, ['--json', '--stalled-after', '0']));
      expect(s!.state).toBe('stalled');
      expect(s!.reasons).toEqual([
        expect.stringMatching(new RegExp(`^job 1 is due since \\S+, and pid ${holder.pid} holds the queue lock with no run of it in the journal \\(a processor that hangs or waits for a slot of serve's max_parallel, or a script holding nextseq\\.lock\\)$`)),
      ]);
      // A reader who cannot read the journal cannot tell: the holder may be at work on it.
      for (let d = q.q; d !== dirname(q.dir); d = dirname(d)) chmodSync(d, 0o755);
      if (existsSync(dbPath(q))) chmodSync(dbPath(q), 0o600);
      const blind = asNobody(['queue-status', '-q', q.q, '--json', '--stalled-after', '0']);
      expect(blind.stderr).not.toMatch(/ERROR/);
      expect(JSON.parse(blind.stdout.toString())).toMatchObject({ state: 'healthy', processor: { running: true } });
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('while a processor runs a job: ls, status and history answer at once; status names its pid and job', async () => {
    const q = setup('fspool-status-busy-');
    put(q, packet(1, 'p1'));
    put(q, packet(2, 'p2'));
    const mark = join(q.dir, 'started');
    const release = join(q.dir, 'release');
    const script = `if [ "$FSPL_SEQ" = 1 ]; then touch "$MARK"; while [ ! -e "$REL" ]; do sleep 0.05; done; fi; ${LOGGER}`;
    const p = runAsync(FSPOOL, ['queue-process', '-q', q.q, 'sh', '--', '-c', script], { env: { ...process.env, LOG: q.log, MARK: mark, REL: release } });
    try {
      await waitFor('the receiver to start', () => existsSync(mark));
      const ls = ok(['queue-ls', '-q', q.q]);
      expect(ls.stdout.toString().trim().split('\n')).toHaveLength(3);
      // A job running is no stalled queue, however long it runs (--timeout bounds a receiver).
      const st = json(status(q, ['--json', '--stalled-after', '0']));
      expect(st.processor).toMatchObject({ running: true, pid: p.pid, job: { seq: 1, outcome: 'running', attempt: 1 } });
      expect(st.interrupted).toEqual([]);
      expect(st.state).toBe('healthy');
      expect(json(ok(['queue-history', '-q', q.q, '--json'])).runs.map((r: { outcome: string }) => r.outcome)).toEqual(['running']);
    } finally {
      writeFileSync(release, '');
    }
    const r = await p.done;
    expect(r.code, r.stderr).toBe(0);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
  });

  it('stale files, duplicates, unreadable files and interrupted attempts are listed', () => {
    const q = setup('fspool-status-lists-');
    const p1 = packet(1, 'p1');
    put(q, p1);
    expect(proc(q, []).code).toBe(0);
    const again = put(q, p1); // delivered a second time, after it ran
    const p3 = packet(3, 'p3');
    const d1 = put(q, p3);
    const d2 = put(q, p3);
    const bad = put(q, Buffer.from('junk'));
    put(q, packet(2, 'p2'));
    expect(proc(q, ['-n', '1'], LOGGER, { FSPOOL_CRASH_AT: 'receiver-exited' }).signal).toBe('SIGKILL');
    const s = json(status(q, ['--json']));
    expect(s.stale).toEqual([expect.objectContaining({ seq: 1, file: again, processed: true })]);
    expect(s.duplicates).toEqual([{ seq: 3, files: [d1, d2].sort().map((file) => expect.objectContaining({ file })) }]);
    expect(s.unreadable).toEqual([expect.objectContaining({ file: bad, error: 'not a filespooler packet (bad magic; not zstd or OpenPGP either)' })]);
    expect(s.interrupted).toEqual([expect.objectContaining({ seq: 2, outcome: 'running', attempt: 1 })]);
    expect(s.due.map((d: { seq: number }) => d.seq)).toEqual([2]);
  });

  it('usage errors exit 2', () => {
    const q = setup('fspool-status-usage-');
    expect(status(q, ['--stalled-after', 'soon']).code).toBe(2);
    expect(fspool(['queue-history', '-q', q.q, '--outcome', 'meh']).code).toBe(2);
  });
});

describe('queue-history', () => {
  function history(): Q {
    const q = setup('fspool-hist-');
    for (let i = 1; i <= 3; i++) put(q, packet(i, `p${i}`));
    // job 2 fails twice (retried once in the run), then goes through on the next run
    const flaky = `if [ "$FSPL_SEQ" = 2 ] && [ ! -e "$LOG.ok" ]; then cat >/dev/null; exit 3; fi; ${LOGGER}`;
    expect(proc(q, ['--retries', '1'], flaky).code).toBe(1);
    writeFileSync(`${q.log}.ok`, '');
    expect(proc(q, [], flaky).code).toBe(0);
    return q;
  }

  it('newest first, filtered by seq, outcome and limit, as text and JSON', () => {
    const q = history();
    const all = json(ok(['queue-history', '-q', q.q, '--json']));
    expect(all).toMatchObject({ version: 1, kind: 'queue-history', queue: q.q });
    expect(all.runs.map((r: { seq: number; attempt: number; outcome: string }) => [r.seq, r.attempt, r.outcome])).toEqual([
      [3, 1, 'success'],
      [2, 3, 'success'],
      [2, 2, 'exit-code'],
      [2, 1, 'exit-code'],
      [1, 1, 'success'],
    ]);
    const two = json(ok(['queue-history', '-q', q.q, '--json', '-j', '2']));
    expect(two.runs.map((r: { attempt: number }) => r.attempt)).toEqual([3, 2, 1]);
    const failed = json(ok(['queue-history', '-q', q.q, '--json', '--outcome', 'failure']));
    expect(failed.runs.map((r: { action: string }) => r.action)).toEqual(['stop', 'retry']);
    const some = json(ok(['queue-history', '-q', q.q, '--json', '--outcome', 'success,exit-code', '-n', '2']));
    expect(some.runs.map((r: { seq: number }) => r.seq)).toEqual([3, 2]);
    const text = ok(['queue-history', '-q', q.q, '-j', '2', '--outcome', 'exit-code']).stdout.toString().split('\n');
    expect(text[0]).toMatch(/^started +seq +try +outcome +seconds +action +file {2}detail$/);
    expect(text[1]).toMatch(/^\S+ +2 +2 +exit-code +\d+\.\d +stop +fspl-\S+\.fspl {2}status 3; command exited with status 3/);
    expect(text[2]).toMatch(/ +2 +1 +exit-code .* retry /);
    expect(text).toHaveLength(4);
  });

  it('a queue without a journal: empty, exit 0, and no database made', () => {
    const q = setup('fspool-hist-none-');
    const r = ok(['queue-history', '-q', q.q, '--json']);
    expect(json(r).runs).toEqual([]);
    expect(existsSync(join(q.q, 'fspool'))).toBe(false);
  });
});

describe('--json schema', () => {
  const JOB_KEYS = ['ctime', 'ctime_epoch', 'file', 'packet', 'path', 'seq', 'size', 'type'];
  const RUN_KEYS = [
    'action', 'attempt', 'bytes', 'commit', 'ctime', 'ctime_epoch', 'detail', 'duration_ms', 'ended_at', 'ended_at_epoch', 'exit_code', 'file', 'id',
    'moved_to', 'order_by', 'outcome', 'packet', 'pid', 'seq', 'signal', 'started_at', 'started_at_epoch', 'stderr_tail',
  ];

  it('queue-ls, queue-info, queue-status and queue-history: the documented keys, exact u64 seqs, bytes that are not UTF-8', () => {
    const q = setup('fspool-json-');
    // The largest seq a packet can carry and still have a successor (2^64-1 cannot be prepared).
    const big = '18446744073709551614';
    writeFileSync(join(q.dir, 'bigseq'), `${big}\n`);
    const env = { ...process.env, FSPL_SET_X: 'plain' };
    const r = fspool(['prepare', '-s', join(q.dir, 'bigseq'), '--', 'a b', 'c'], { env });
    expect(r.code, r.stderr).toBe(0);
    const name = put(q, r.stdout);
    put(q, Buffer.from('junk'));

    const ls = ok(['queue-ls', '-q', q.q, '--json']);
    expect(ls.stdout.toString()).toContain(`"seq":${big}`);
    const l = json(ls);
    expect(Object.keys(l).sort()).toEqual(['jobs', 'kind', 'next_seq', 'queue', 'unreadable', 'version']);
    expect(l).toMatchObject({ version: 1, kind: 'queue-ls', next_seq: 1 });
    expect(Object.keys(l.jobs[0]).sort()).toEqual(JOB_KEYS);
    expect(l.jobs[0]).toMatchObject({ file: name, type: 'command', path: `${q.q}/jobs/${name}`, size: r.stdout.length });
    expect(Object.keys(l.jobs[0].ctime).sort()).toEqual(['local', 'nanos', 'secs', 'utc']);
    expect(l.jobs[0].ctime_epoch).toBe(l.jobs[0].ctime.secs);
    expect(Math.abs(l.jobs[0].ctime_epoch - Date.now() / 1000)).toBeLessThan(600);
    expect(l.unreadable).toEqual([expect.objectContaining({ error: 'not a filespooler packet (bad magic; not zstd or OpenPGP either)' })]);

    const info = ok(['queue-info', '-q', q.q, '-j', big, '--json']);
    const i = json(info);
    expect(Object.keys(i).sort()).toEqual(['job', 'kind', 'queue', 'vars', 'version']);
    expect(i.job).toMatchObject({ params: ['a b', 'c'], set: [{ name: 'X', value: 'plain' }] });
    expect(i.vars[0]).toEqual({ name: 'FSPL_SEQ', value: big });
    expect(i.vars.map((v: { name: string }) => v.name)).toContain('FSPL_JOB_FULLPATH');

    const st = json(fspool(['queue-status', '-q', q.q, '--json']));
    expect(Object.keys(st).sort()).toEqual(
      [
        'ambiguous', 'due', 'duplicates', 'exit_code', 'gap', 'interrupted', 'journal', 'kind', 'last_failure', 'last_success', 'next_seq', 'pending',
        'processor', 'quarantine', 'queue', 'reasons', 'released', 'stale', 'state', 'unreadable', 'version',
      ].sort(),
    );

    put(q, packet(1, 'p1'));
    expect(proc(q, ['-n', '1']).code).toBe(0);
    const h = json(ok(['queue-history', '-q', q.q, '--json']));
    expect(Object.keys(h.runs[0]).sort()).toEqual(RUN_KEYS.sort());
    // the *_epoch fields are the same instants as the RFC 3339 strings, in seconds
    expect(h.runs[0].started_at_epoch).toBe(Date.parse(h.runs[0].started_at) / 1000);
    expect(h.runs[0].ended_at_epoch).toBe(Date.parse(h.runs[0].ended_at) / 1000);
    expect(h.runs[0].ended_at_epoch - h.runs[0].started_at_epoch).toBeCloseTo(h.runs[0].duration_ms / 1000, 3);
  });

  it('bytes that are not UTF-8 come as {"base64": ...}', () => {
    const q = setup('fspool-json-bin-');
    const r = runSync('sh', ['-c', `FSPL_SET_B=$(printf 'a\\377') exec "$0" prepare -s -`, FSPOOL]);
    expect(r.code, r.stderr).toBe(0);
    put(q, r.stdout);
    const i = json(ok(['queue-info', '-q', q.q, '-j', '1', '--json']));
    expect(i.job.set).toEqual([{ name: 'B', value: { base64: Buffer.from([0x61, 0xff]).toString('base64') } }]);
    expect(i.vars.at(-1)).toEqual({ name: 'FSPL_SET_B', value: { base64: 'Yf8=' } });
  });
});

describe('queue-clean', () => {
  it('removes copies of processed packets; --stale those that ran and failed; --stale --force those that never ran; --dry-run removes nothing', () => {
    const q = setup('fspool-clean-');
    const p1 = packet(1, 'p1');
    put(q, p1);
    expect(proc(q, []).code).toBe(0);
    const copy = put(q, p1); // a late second delivery of a packet that ran
    put(q, packet(2, 'p2'));
    expect(proc(q, ['--on-error', 'leave'], 'cat > /dev/null; exit 3').code).toBe(0); // 2 fails, kept
    const failed = jobs(q).find((n) => n !== copy)!;
    const never = put(q, packet(5, 'p5'));
    ok(['queue-set-next', '-q', q.q, '7']); // 5 will never run now

    // Processing never runs them, and says which is which.
    const r = proc(q, []);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`INFO fspool: stale job file .*${copy}: seq 1 .*not run \\(it succeeded at .*; queue-clean removes it\\)`));
    expect(r.stderr).toMatch(new RegExp(`INFO fspool: stale job file .*${failed}: seq 2 .*not run \\(it ran at .*, exit-code, and the queue moved past it; queue-clean --stale removes it\\)`));
    expect(r.stderr).toMatch(new RegExp(`WARN fspool: stale job file .*${never}: seq 5 .*not run: it never ran here; if its sender restarted its numbering, queue-set-next 5 runs it`));
    expect(logOf(q)).toBe(lines('1:p1'));

    const dry = ok(['queue-clean', '-q', q.q, '--dry-run']);
    expect(dry.stdout.toString()).toMatch(new RegExp(`^would remove .*${copy} \\(seq 1: copy of a packet processed `));
    expect(jobs(q)).toHaveLength(3);

    const clean = ok(['queue-clean', '-q', q.q]);
    expect(clean.stdout.toString()).toMatch(new RegExp(`^removed .*${copy} \\(seq 1: copy of a packet processed .*\\)\\n$`));
    expect(clean.stderr).toMatch(new RegExp(`kept .*${failed} \\(seq 2: its packet ran .* \\(exit-code\\) and the queue moved past it\\); --stale removes it`));
    expect(clean.stderr).toMatch(new RegExp(`kept .*${never} \\(seq 5: its packet never ran here\\): .*--stale --force removes it`));
    expect(jobs(q).sort()).toEqual([failed, never].sort());

    const stale = ok(['queue-clean', '-q', q.q, '--stale']);
    expect(stale.stdout.toString()).toMatch(new RegExp(`^removed .*${failed} \\(seq 2: `));
    expect(jobs(q)).toEqual([never]);

    expect(fspool(['queue-clean', '-q', q.q, '--force']).code).toBe(2);
    const all = ok(['queue-clean', '-q', q.q, '--stale', '--force']);
    expect(all.stdout.toString()).toMatch(new RegExp(`^removed .*${never} \\(seq 5: its packet never ran here\\)\\n$`));
    expect(jobs(q)).toEqual([]);
  });

  it('takes the queue lock: fails while a processor holds it', async () => {
    const q = setup('fspool-clean-lock-');
    const holder = spawn('flock', [join(q.q, 'nextseq.lock'), 'sleep', '30'], { stdio: 'ignore' });
    try {
      let r: Result | undefined;
      for (let i = 0; i < 200; i++) {
        r = fspool(['queue-clean', '-q', q.q]);
        if (r.code === 1) break;
        await sleep(25);
      }
      expect(r!.code).toBe(1);
      expect(r!.stderr).toMatch(/^Error: queue .* is locked by another process/m);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('--retries and --backoff', () => {
  const FLAKY = `n=$(cat "$LOG.n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$LOG.n"; if [ $n -lt 3 ]; then cat >/dev/null; exit 1; fi; ${LOGGER}`;

  it('a job that fails twice then succeeds, within one run, pausing backoff × 2^(k-1) between tries', () => {
    const q = setup('fspool-retry-');
    put(q, packet(1, 'p1'));
    put(q, packet(2, 'p2'));
    const t0 = Date.now();
    const r = proc(q, ['--retries', '2', '--backoff', '0.2'], FLAKY);
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600); // 0.2 + 0.4 s at least
    expect(r.stderr).toMatch(/retry 1 in 0\.2s \(1 failure\(s\) of 3 allowed\)/);
    expect(r.stderr).toMatch(/retry 2 in 0\.4s \(2 failure\(s\) of 3 allowed\)/);
    expect(logOf(q)).toBe(lines('1:p1', '2:p2'));
    expect(runs(q).map((x) => [x.seq, x.attempt, x.outcome, x.action])).toEqual([
      ['1', 1, 'exit-code', 'retry'],
      ['1', 2, 'exit-code', 'retry'],
      ['1', 3, 'success', 'delete'],
      ['2', 1, 'success', 'delete'],
    ]);
  });

  it('retries used up under --on-error retry: exit 1, job kept; the next run tries again (once: the count is kept)', () => {
    const q = setup('fspool-retry-out-');
    put(q, packet(1, 'p1'));
    const r = proc(q, ['--retries', '1'], 'cat >/dev/null; exit 1');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: stopping at job 1 .*it failed and --on-error is retry/m);
    expect(jobs(q)).toHaveLength(1);
    const again = proc(q, ['--retries', '1'], 'cat >/dev/null; exit 1');
    expect(again.code).toBe(1);
    expect(runs(q).map((x) => [x.attempt, x.action])).toEqual([
      [1, 'retry'],
      [2, 'stop'],
      [3, 'stop'],
    ]);
  });

  it('a SIGTERM during the pause ends the run at once; the job stays queued', async () => {
    const q = setup('fspool-retry-sig-');
    put(q, packet(1, 'p1'));
    const child = spawn(FSPOOL, ['queue-process', '-q', q.q, '--retries', '1', '--backoff', '60', 'sh', '--', '-c', 'cat >/dev/null; exit 1'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (!sent && stderr.includes('retry 1 in 60s')) sent = child.kill('SIGTERM');
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(143);
    expect(jobs(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
  });
});
