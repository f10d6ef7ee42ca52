// Hostile packets and hostile queue contents: whoever can drop a file into a queue controls
// every byte of a packet, its name and its type. A packet may make its own job fail; it may
// never set the receiver's environment, take another packet's place, or hang the processor
// (spec/processing.md, "Threat model"). Packets here are built byte by byte with fspool's own
// encoder, which writes whatever bytes it is given, including those a sender could not have.
import { randomBytes } from 'node:crypto';
import { appendFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeHeader } from '../src/packet/codec.js';
import { crc32 } from '../src/packet/crc32.js';
import type { CmdType } from '../src/packet/header.js';
import { copyToNew } from '../src/sys/durable.js';
import { exists, holdsOpen, jobFiles, LONG, nextseq, processesWith, put, sleep, waitFor, within } from './helpers/queue.js';
import { FSPOOL, fspool, makeQueue, runAsync, runSync, tempDir } from './helpers/cli.js';
import { makeKey } from './helpers/keys.js';
import { encodePacket, splitPackets } from './helpers/pgpSurgery.js';

const b = (s: string) => Buffer.from(s, 'latin1');

/** A Command packet with exactly these params and variables (names without FSPL_SET_). */
function packet(seq: number, env: Array<[Buffer, Buffer]>, payload = 'payload', params: Buffer[] = []): Buffer {
  const cmd: CmdType = { kind: 'Command', params, env };
  return Buffer.concat([encodeHeader({ seq: BigInt(seq), ctimeSecs: 1_700_000_000n, ctimeNanos: seq, cmd }), b(payload)]);
}

/** The environment every fspool gets in these tests, so that a receiver's is known exactly. */
const BASE_ENV = { PATH: process.env.PATH!, LANG: 'C', HOME: '/nonexistent' };

describe('packet variables reach the receiver only as FSPL_SET_<NAME>', () => {
  const injections: Array<[string, Buffer]> = [
    ['TAR_OPTIONS through a NUL in the name', b('X\0TAR_OPTIONS=--checkpoint=1 --checkpoint-action=exec=touch PWNED')],
    ['a bash function through a NUL in the name', b('X\0BASH_FUNC_cat%%=() { touch PWNED; }')],
    ['LD_PRELOAD through a NUL in the name', b('X\0LD_PRELOAD=/nonexistent/evil.so')],
    ['another name through "="', b('PATH=/tmp/evil:/usr/bin')],
  ];
  for (const [what, name] of injections) {
    it(`refuses ${what}: the job fails, the receiver never starts, the queue goes on`, () => {
      const dir = tempDir();
      const q = makeQueue(dir);
      put(q, packet(1, [[name, b('value')]]));
      put(q, packet(2, [[b('GOOD'), b('yes')]], 'second'));
      const out = join(dir, 'out');
      const r = fspool(['queue-process', '-q', q, '--on-error', 'delete', 'sh', '--', '-c', 'echo "$FSPL_SEQ $FSPL_SET_GOOD" >> "$0"; tar --version >/dev/null 2>&1; cat >/dev/null', out], {
        env: BASE_ENV,
        cwd: dir,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/job 1 .*failed: the packet's variable name .* (NUL byte|"=").*the command was not started/);
      expect(readFileSync(out, 'utf8')).toBe('2 yes\n');
      expect(exists(join(dir, 'PWNED'))).toBe(false);
      expect(nextseq(q)).toBe('3');
      expect(jobFiles(q)).toEqual([]);
    });
  }

  it('refuses them in stdin-process too (exit 1, nothing run)', () => {
    const dir = tempDir();
    const r = fspool(['stdin-process', 'sh', '--', '-c', 'touch "$0"', join(dir, 'ran')], { input: packet(1, [[b('X\0LD_PRELOAD=/x.so'), b('v')]]), env: BASE_ENV });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NUL byte/);
    expect(exists(join(dir, 'ran'))).toBe(false);
  });

  it('property: the receiver sees exactly its own environment plus the FSPL_* entries, whatever bytes the names and values hold', () => {
    const dir = tempDir();
    const dump = join(dir, 'environ');
    const byte = fc.integer({ min: 0, max: 255 });
    // Mostly printable, sometimes any byte: NUL, '=', newlines, non-UTF-8.
    const bytes = fc.oneof(
      { weight: 3, arbitrary: fc.array(fc.integer({ min: 0x21, max: 0x7e }), { minLength: 1, maxLength: 8 }) },
      { weight: 2, arbitrary: fc.array(byte, { minLength: 0, maxLength: 8 }) },
    );
    const entry = fc.tuple(bytes, bytes).map(([k, v]) => [Buffer.from(k), Buffer.from(v)] as [Buffer, Buffer]);
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 4 }), (env) => {
        const r = fspool(['stdin-process', 'sh', '--', '-c', 'cat /proc/$$/environ > "$0"', dump], { input: packet(7, env), env: BASE_ENV });
        const names = env.map(([k]) => k);
        const refused = names.some((k) => k.includes(0) || k.includes(0x3d)) || env.some(([, v]) => v.includes(0));
        if (refused) {
          expect(r.code).toBe(1);
          return;
        }
        expect(r.code, r.stderr).toBe(0);
        const seen = readFileSync(dump).toString('latin1').split('\0').filter((e) => e !== '');
        // /proc/$$/environ is the shell's environment as exec'd: exactly what fspool gave it.
        const own = Object.entries(BASE_ENV).map(([k, v]) => `${k}=${v}`);
        const fsplVars = ['FSPL_SEQ=7', 'FSPL_CTIME_SECS=1700000000', 'FSPL_CTIME_NANOS=7', 'FSPL_CTIME_RFC3339_UTC=2023-11-14T22:13:20Z'];
        // One entry per name; the last value given wins, as in fspl.
        const set = new Map<string, string>();
        for (const [k, v] of env) set.set(`FSPL_SET_${k.toString('latin1')}`, v.toString('latin1'));
        const expected = [...own, ...fsplVars, ...[...set].map(([k, v]) => `${k}=${v}`)].sort();
        const local = seen.filter((e) => e.startsWith('FSPL_CTIME_RFC3339_LOCAL='));
        expect(local).toHaveLength(1);
        expect(seen.filter((e) => !local.includes(e)).sort()).toEqual(expected);
        rmSync(dump, { force: true });
      }),
      // A process per run: 10 environments by default, 30 in the long mode.
      { numRuns: LONG ? 30 : 10, seed: 1010 },
    );
  }, 120_000);
});

/** A plain packet as a sender makes it (no hostile bytes), with this payload. */
const plain = (seq: number, payload: string) => packet(seq, [], payload);

/** Every reader and the processor, each of which must finish (not hang) on this queue. */
function everyCommand(q: string): Array<[string, string[]]> {
  return [
    ['queue-ls', ['queue-ls', '-q', q]],
    ['queue-status', ['queue-status', '-q', q]],
    ['queue-info', ['queue-info', '-q', q, '-j', '1']],
    ['queue-payload', ['queue-payload', '-q', q, '-j', '1']],
    ['queue-clean', ['queue-clean', '-q', q, '--dry-run']],
    ['queue-process', ['queue-process', '-q', q, 'cat']],
  ];
}

describe('job names that are not regular files', () => {
  const kinds: Array<[string, (jobs: string, dir: string) => void]> = [
    ['a FIFO', (jobs) => runOk('mkfifo', [join(jobs, 'fspl-fifo.fspl')])],
    ['a symlink to a FIFO', (jobs, dir) => (runOk('mkfifo', [join(dir, 'fifo')]), symlinkSync(join(dir, 'fifo'), join(jobs, 'fspl-link.fspl')))],
    ['a symlink to a packet', (jobs, dir) => (writeFileSync(join(dir, 'elsewhere'), plain(2, 'x')), symlinkSync(join(dir, 'elsewhere'), join(jobs, 'fspl-link.fspl')))],
    ['a directory', (jobs) => mkdirSync(join(jobs, 'fspl-dir.fspl'))],
  ];
  for (const [what, make] of kinds) {
    it(`${what} is reported as unreadable by every command, and none of them hangs`, () => {
      const dir = tempDir();
      const q = makeQueue(dir);
      put(q, plain(1, 'one'));
      make(join(q, 'jobs'), dir);
      for (const [name, args] of everyCommand(q)) {
        const r = fspool(args, { timeoutMs: 30_000 });
        expect(r.signal, `${name} hung`).toBe(null);
        expect(r.code, `${name}: ${r.stderr}`).not.toBe(null);
      }
      const ls = fspool(['queue-ls', '-q', q]);
      expect(ls.stderr).toMatch(/job files must be regular files/);
      expect(nextseq(q)).toBe('2');
    });
  }
});

describe('lock files that are not regular files', () => {
  // A FIFO's open() would block the event loop (no timer, no signal handler runs): a command
  // that hangs for ever, holding whatever it took before (a seqfile's lock, say).
  it('a FIFO or a directory at the queue, seqfile or outbox lock is refused at once, with the fix', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    const ob = join(dir, 'ob');
    expect(fspool(['prepare', '-s', seq, '-i', '/dev/null', '--outbox', ob]).code).toBe(0);
    const cases: Array<[string, string, string[]]> = [
      [join(q, 'nextseq.lock'), `queue ${q}`, ['queue-process', '-q', q, 'true']],
      [`${seq}.lock`, `sequence file ${seq}`, ['prepare', '-s', seq, '-i', '/dev/null']],
      [join(ob, 'outbox.lock'), `outbox ${ob}`, ['outbox-resend', '--outbox', ob, '--to-dir', dir]],
    ];
    for (const [lock, what, args] of cases) {
      for (const [kind, make] of [
        ['a FIFO', () => runOk('mkfifo', [lock])],
        ['a directory', () => mkdirSync(lock)],
      ] as const) {
        rmSync(lock, { recursive: true, force: true });
        make();
        const r = fspool(args, { timeoutMs: 20_000 });
        expect(r.signal, `${args[0]} with ${kind} at ${lock} hung`).toBe(null);
        expect(r.code, `${args[0]}: ${r.stderr}`).toBe(1);
        expect(r.stderr).toContain(`Error: ${what}: lock file ${lock} is ${kind}, not a regular file; remove it`);
      }
      rmSync(lock, { recursive: true, force: true });
      writeFileSync(lock, '');
    }
    expect(nextseq(q)).toBe('1');
  });
});

describe('copying a file someone else may have put there (quarantine and its release across file systems)', () => {
  it('copies a regular file byte for byte; a FIFO or a symlink at the source throws before anything is made, and nothing waits', () => {
    const dir = tempDir();
    const data = randomBytes(70_000);
    writeFileSync(join(dir, 'file'), data);
    copyToNew(join(dir, 'file'), join(dir, 'copy'));
    expect(readFileSync(join(dir, 'copy')).equals(data)).toBe(true);
    runOk('mkfifo', [join(dir, 'fifo')]);
    expect(() => copyToNew(join(dir, 'fifo'), join(dir, 'from-fifo'))).toThrow(/fifo is not a regular file/);
    symlinkSync(join(dir, 'file'), join(dir, 'link'));
    expect(() => copyToNew(join(dir, 'link'), join(dir, 'from-link'))).toThrow(/ELOOP/);
    expect(exists(join(dir, 'from-fifo')) || exists(join(dir, 'from-link'))).toBe(false);
  });
});

describe('a job file replaced between the scan and its run', () => {
  it('is forgotten and looked at again: the packet now under the name runs, nothing is destroyed unrun', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    const name2 = put(q, plain(2, 'original'));
    const spare = join(dir, 'replacement');
    writeFileSync(spare, packet(2, [[b('V'), b('2')]], 'replacement'));
    // Job 1's receiver renames another packet with seq 2 over job 2's name, after the scan.
    const script = `if [ "$FSPL_SEQ" = 1 ]; then mv "$1" "$2"; fi; echo "$FSPL_SEQ $(cat)" >> "$0"`;
    const out = join(dir, 'out');
    const r = fspool(['queue-process', '-q', q, '--on-error', 'delete', 'sh', '--', '-c', script, out, spare, join(q, 'jobs', name2)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removed or replaced before it could run; looking again/);
    expect(readFileSync(out, 'utf8')).toBe('1 one\n2 replacement\n');
    expect(nextseq(q)).toBe('3');
  });

  it('a FIFO renamed over the due job hangs nothing: it is reported, and the queue waits for seq 2', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    const name2 = put(q, plain(2, 'two'));
    const script = `if [ "$FSPL_SEQ" = 1 ]; then mkfifo "$0.fifo" && mv "$0.fifo" "$0"; fi; cat > /dev/null`;
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', script, join(q, 'jobs', name2)], { timeoutMs: 30_000 });
    expect(r.signal).toBe(null);
    expect(r.stderr).toMatch(/a FIFO; job files must be regular files/);
    expect(nextseq(q)).toBe('2');
  });

  it('a packet renamed over the running job is not deleted in its place', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const name1 = put(q, plain(1, 'one'));
    const spare = join(dir, 'newcomer');
    writeFileSync(spare, plain(5, 'newcomer'));
    // The receiver renames a new packet over its own job's name while it runs.
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'mv "$0" "$1"; cat > /dev/null', spare, join(q, 'jobs', name1)]);
    expect(r.code, r.stderr).toBe(0);
    expect(nextseq(q)).toBe('2');
    expect(jobFiles(q)).toEqual([name1]);
    expect(readFileSync(join(q, 'jobs', name1))).toEqual(plain(5, 'newcomer'));
  });
});

describe('hostile names', () => {
  it('a newline in a job name does not hide the job: it is listed (escaped) and run', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'), 'fspl-a\nb.fspl');
    put(q, plain(2, 'two'), 'fspl-\x1b[31mred\x1b[0m.fspl');
    const ls = fspool(['queue-ls', '-q', q]);
    expect(ls.code, ls.stderr).toBe(0);
    const text = ls.stdout.toString();
    expect(text).toContain('fspl-a\\x0ab.fspl');
    expect(text).toContain('fspl-\\x1b[31mred\\x1b[0m.fspl');
    expect(text).not.toContain('\x1b');
    expect(text.trim().split('\n')).toHaveLength(3);
    const r = fspool(['queue-process', '-q', q, 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('onetwo');
    expect(r.stderr).not.toContain('\x1b');
  });

  it('a name as long as a file system takes (255 bytes), failing under --on-error quarantine: kept under a shorter name, its note naming the whole, and the queue goes on', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    // Multi-byte characters where the cut falls: never cut inside one.
    const long = `fspl-${'é'.repeat(60)}${'x'.repeat(125)}.fspl`;
    expect(Buffer.byteLength(long)).toBe(255);
    put(q, plain(1, 'one'), long);
    put(q, plain(2, 'two'));
    const r = fspool(['queue-process', '-q', q, '--on-error', 'quarantine', 'sh', '--', '-c', 'cat; [ "$FSPL_SEQ" != 1 ]']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('onetwo');
    expect(nextseq(q)).toBe('3');
    const kept = readdirSync(join(q, 'fspool/quarantine')).filter((n) => n.endsWith('.fspl'));
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatch(/^fspl-(é)+x*~2\.fspl$/);
    expect(Buffer.byteLength(kept[0]!)).toBeLessThanOrEqual(245);
    expect(JSON.parse(readFileSync(join(q, 'fspool/quarantine', `${kept[0]}.json`), 'utf8')).file).toBe(long);
    const listed = fspool(['queue-quarantine', '-q', q]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.toString()).toContain(kept[0]);
  });

  it('a long name that fits, quarantined twice: the second is cut to fit with its ~2', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const name = `fspl-${'y'.repeat(234)}.fspl`;
    expect(Buffer.byteLength(name)).toBe(244);
    const fail = ['--on-error', 'quarantine', 'false'];
    put(q, plain(1, 'one'), name);
    expect(fspool(['queue-process', '-q', q, ...fail]).code).toBe(0);
    put(q, plain(2, 'two'), name);
    const r = fspool(['queue-process', '-q', q, ...fail]);
    expect(r.code, r.stderr).toBe(0);
    expect(nextseq(q)).toBe('3');
    const kept = readdirSync(join(q, 'fspool/quarantine')).filter((n) => n.endsWith('.fspl')).sort();
    expect(kept).toHaveLength(2);
    expect(kept).toContain(name);
    for (const n of kept) expect(Buffer.byteLength(n)).toBeLessThanOrEqual(245);
    expect(kept.find((n) => n !== name)).toMatch(/^fspl-y+~2\.fspl$/);
  });

  it('--output-to saveboth writes a fresh NAME.out, never through a symlink placed there', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const name = put(q, plain(1, 'one'));
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(q, 'jobs', `${name}.out`));
    const r = fspool(['queue-process', '-q', q, '--output-to', 'saveboth', '--never-delete', 'sh', '--', '-c', 'echo out; cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(q, 'jobs', `${name}.out`)).isFile()).toBe(true);
    expect(readFileSync(join(q, 'jobs', `${name}.out`), 'utf8')).toBe('out\none');
  });
});

function runOk(cmd: string, args: string[]): void {
  const r = runSync(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
}

describe('--require-signature: a packet that does not prove the signature is no job', () => {
  const dir = tempDir();
  const sender = makeKey('sender', dir);
  const forger = makeKey('forger', dir);
  const signed = (seq: number, payload: string, key = sender) => {
    const seqfile = join(dir, `seq-${seq}-${Math.random()}`);
    writeFileSync(seqfile, `${seq}\n`);
    const r = fspool(['prepare', '-s', seqfile, '-i', '-', '--sign-with', key.sec], { input: payload });
    if (r.code !== 0) throw new Error(r.stderr);
    return r.stdout;
  };
  const process = (q: string, onError: string) =>
    fspool(['queue-process', '-q', q, '--require-signature', sender.pub, '--on-error', onError, 'sh', '--', '-c', 'echo "$FSPL_SEQ $(cat)" >> "$0"', join(q, '..', 'out')]);

  const unsigned = (seq: number) => plain(seq, 'forged');
  const otherKey = (seq: number) => signed(seq, 'forged', forger);
  for (const [what, forge, onError] of [
    ['an unsigned packet', unsigned, 'delete'],
    ['an unsigned packet', unsigned, 'quarantine'],
    ['a packet signed by another key', otherKey, 'retry'],
  ] as const) {
    {
      it(`${what} with the due seq does not take the signed one's place (--on-error ${onError})`, () => {
        const d = tempDir();
        const q = makeQueue(d);
        put(q, signed(1, 'one'));
        const forged = put(q, forge(2));
        let r = process(q, onError);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toMatch(/claims seq 2 but fails --require-signature/);
        expect(nextseq(q)).toBe('2');
        // The genuine packet arrives late: it runs as seq 2; the forged file is still only reported.
        put(q, signed(2, 'two'));
        r = process(q, onError);
        expect(r.code, r.stderr).toBe(0);
        expect(readFileSync(join(d, 'out'), 'utf8')).toBe('1 one\n2 two\n');
        expect(nextseq(q)).toBe('3');
        expect(jobFiles(q)).toEqual([forged]);
      });
    }
  }

  it('a signed packet changed in place after it was verified (stream mode): no clean end for the receiver, and the job is kept, not failed (--on-error delete)', () => {
    const d = tempDir();
    const q = makeQueue(d);
    // Stored, not compressed: the payload's bytes are there in the file to be changed.
    const payload = Buffer.alloc(4 << 20, 'a').toString('latin1');
    const name = put(q, signed(1, payload));
    const file = join(q, 'jobs', name);
    const at = readFileSync(file).indexOf(Buffer.alloc(64, 'a')) + 1024;
    expect(at).toBeGreaterThan(1024);
    // The receiver plays the writer of the file: once it has started (after the verifying
    // pass), it changes bytes of the payload it has not read yet, then reads it all.
    const changer = `import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"EVIL", int(sys.argv[2]) + 2 * 1024 * 1024)
os.close(fd)`;
    const marker = join(d, 'got-eof');
    const r = fspool(['queue-process', '-q', q, '--require-signature', sender.pub, '--on-error', 'delete', 'sh', '--', '-c', 'python3 -c "$0" "$1" "$2"; cat >/dev/null && touch "$3"', changer, file, String(at), marker]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the file no longer proves the signature it proved before the job started \(changed while the job ran\?\); job kept/);
    expect(exists(marker)).toBe(false); // no clean end of input for what was not verified
    expect(nextseq(q)).toBe('1');
    expect(jobFiles(q)).toEqual([name]);
    // The receiver fails before the end (as one that saw the changed bytes would): kept all the same.
    const fresh = signed(1, payload);
    writeFileSync(file, fresh);
    const early = fspool(['queue-process', '-q', q, '--require-signature', sender.pub, '--on-error', 'delete', 'sh', '--', '-c', 'python3 -c "$0" "$1" "$2"; exit 1', changer, file, String(fresh.indexOf(Buffer.alloc(64, 'a')) + 1024)]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/the job file was written while the job ran, and the command did not take all of it and exit 0: what it read may not have been the packet; job kept$/m);
    expect(nextseq(q)).toBe('1');
    expect(jobFiles(q)).toEqual([name]);
  });

  it('the pass that verifies before the receiver starts is bounded by --timeout: a packet it cannot finish is not run, and nothing waits on it', () => {
    const d = tempDir();
    const q = makeQueue(d);
    const name = put(q, signed(1, 'one'.repeat(1000)));
    // A decoder that gives the start (the header reads) and then never the rest, as gpg waiting
    // for a passphrase would; the header read alone is bounded by --decoder-timeout.
    const stalls = ['-d', 'sh -c "head -c 1500; exec sleep 600"'];
    const out = join(d, 'out');
    for (const delivery of ['stream', 'verified']) {
      const r = fspool(['queue-process', '-q', q, '--require-signature', sender.pub, '--delivery', delivery, '--timeout', '1', '--on-error', 'delete', ...stalls, 'sh', '--', '-c', 'cat > "$0"', out]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`claims seq 1 but fails --require-signature \\(not ${delivery === 'stream' ? 'verified' : 'decoded'} within --timeout \\(1s\\); a larger --timeout lets it finish`));
      expect(exists(out)).toBe(false);
      expect(jobFiles(q)).toEqual([name]);
      expect(nextseq(q)).toBe('1');
    }
    // queue-status, which checks no signature, learns from the journal why the due job does
    // not run: one row per file and verdict, however often it is refused.
    const status = fspool(['queue-status', '-q', q, '--json']);
    expect(status.code).toBe(4);
    const s = JSON.parse(status.stdout.toString());
    expect(s.due).toEqual([]);
    expect(s.unreadable).toEqual([expect.objectContaining({ file: name, error: expect.stringMatching(/^fails --require-signature \(not decoded within --timeout \(1s\)/) })]);
    expect(s.reasons[0]).toMatch(/cannot be read: .*a larger --timeout/);
    const refusals = () => JSON.parse(fspool(['queue-history', '-q', q, '--json']).stdout.toString()).runs.filter((r: { outcome: string }) => r.outcome === 'refused');
    expect(refusals()).toHaveLength(2);
    fspool(['queue-process', '-q', q, '--require-signature', sender.pub, '--delivery', 'verified', '--timeout', '1', ...stalls, 'true']);
    expect(refusals()).toHaveLength(2);
    // Without a signature to prove, the pass of --delivery verified times out as a receiver
    // would: a failure of the job, handled by --on-error.
    const r = fspool(['queue-process', '-q', q, '--delivery', 'verified', '--timeout', '1', '--on-error', 'retry', ...stalls, 'sh', '--', '-c', 'cat > "$0"', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/job 1 \(.*\) failed: not decoded within --timeout \(1s\)/);
    expect(fspool(['queue-history', '-q', q, '--json']).stdout.toString()).toMatch(/"outcome":"timeout"/);
    expect(exists(out)).toBe(false);
    expect(processesWith('sleep 600')).toEqual([]);
  });

  it('interrupted during a pass before the receiver (verifying, or decoding into the temp file): the job stays, neither failed nor refused', async () => {
    const stalls = (mark: string) => ['-d', `sh -c "head -c 1500; exec sleep 600 ${mark}"`];
    for (const [what, args, file] of [
      ['verified delivery', ['--delivery', 'verified', '--on-error', 'delete'], plain(1, 'one')],
      ['the verifying pass', ['--require-signature', sender.pub, '--on-error', 'delete'], signed(1, 'one')],
    ] as const) {
      const d = tempDir();
      const q = makeQueue(d);
      const name = put(q, file);
      const mark = `#${Math.random()}`;
      const run = runAsync(FSPOOL, ['queue-process', '-q', q, ...args, ...stalls(mark), 'sh', '--', '-c', 'cat > "$0"', join(d, 'out')]);
      // The job's own decoder (the scan's, which reads the header only, is gone by then).
      const running = () => fspool(['queue-history', '-q', q, '--outcome', 'running']).stdout.toString().includes(name);
      await waitFor(`${what}: the stalled decoder of the running job`, () => running() && processesWith(mark).length > 0, 20_000);
      globalThis.process.kill(run.pid, 'SIGINT');
      const r = await within(run.done, 10_000, `${what}: fspool after SIGINT`);
      expect(r.code, `${what}: ${r.stderr}`).toBe(130);
      expect(jobFiles(q), what).toEqual([name]);
      expect(nextseq(q), what).toBe('1');
      const outcomes = JSON.parse(fspool(['queue-history', '-q', q, '--json']).stdout.toString()).runs.map((x: { outcome: string }) => x.outcome);
      expect(outcomes, what).toEqual(['interrupted']);
      expect(processesWith(mark), what).toEqual([]);
    }
  });

  it('refusals as queue-status sees them: one row per file and verdict, each file on its own, a file renamed over since is new', () => {
    const d = tempDir();
    const q = makeQueue(d);
    // Two forgeries with one header (a copy of a packet's header, other payloads).
    const forged = plain(1, 'forged');
    const f1 = put(q, Buffer.concat([forged, b('x')]));
    const f2 = put(q, Buffer.concat([forged, b('y')]));
    for (let i = 0; i < 3; i++) expect(process(q, 'delete').code).toBe(0);
    const history = JSON.parse(fspool(['queue-history', '-q', q, '--json']).stdout.toString()).runs;
    expect(history.filter((r: { outcome: string }) => r.outcome === 'refused').map((r: { file: string }) => r.file).sort()).toEqual([f1, f2].sort());
    let s = JSON.parse(fspool(['queue-status', '-q', q, '--json']).stdout.toString());
    expect(s.due).toEqual([]);
    expect(s.unreadable.map((u: { file: string }) => u.file).sort()).toEqual([f1, f2].sort());
    // Touched (its ctime moves): a file that may have changed, until the next run refuses it anew.
    runSync('sleep', ['0.02']);
    expect(runSync('touch', [join(q, 'jobs', f2)]).code).toBe(0);
    expect(JSON.parse(fspool(['queue-status', '-q', q, '--json']).stdout.toString()).due.map((u: { file: string }) => u.file)).toEqual([f2]);
    expect(process(q, 'delete').code).toBe(0);
    s = JSON.parse(fspool(['queue-status', '-q', q, '--json']).stdout.toString());
    expect(s.due).toEqual([]);
    expect(s.unreadable.map((u: { file: string }) => u.file).sort()).toEqual([f1, f2].sort());
    // The genuine packet is renamed over one of them: that file is the due job, not a refusal.
    const tmp = join(q, 'jobs', 'incoming');
    writeFileSync(tmp, signed(1, 'one'));
    renameSync(tmp, join(q, 'jobs', f1));
    s = JSON.parse(fspool(['queue-status', '-q', q, '--json']).stdout.toString());
    expect(s.due.map((u: { file: string }) => u.file)).toEqual([f1]);
    expect(s.unreadable.map((u: { file: string }) => u.file)).toEqual([f2]);
    expect(process(q, 'delete').code).toBe(0);
    expect(readFileSync(join(d, 'out'), 'utf8')).toBe('1 one\n');
  });

  it('a refusal made while the journal is locked is journaled once a watch has it again', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, signed(1, 'one'));
    expect(process(q, 'delete').code).toBe(0); // makes the journal
    const db = join(q, 'fspool', 'state.db');
    const flag = join(d, 'locked');
    // Held well past the watch's refusal of the forged file, and its 2 s wait to journal it.
    const hold = 'import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\nc.execute("BEGIN EXCLUSIVE")\nopen(sys.argv[2], "w").close()\ntime.sleep(8)\nc.execute("ROLLBACK")';
    const holder = runAsync('python3', ['-c', hold, db, flag]);
    await waitFor('the lock', () => exists(flag), 10_000);
    const forged = put(q, plain(2, 'forged'));
    const watch = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '0.5', '--require-signature', sender.pub, 'cat']);
    const refused = () => JSON.parse(fspool(['queue-history', '-q', q, '--json']).stdout.toString()).runs.some((r: { outcome: string; file: string }) => r.outcome === 'refused' && r.file === forged);
    try {
      await waitFor('the watch to refuse the forged file', () => watch.stderr().includes(`${forged} claims seq 2 but fails --require-signature`), 8_000);
      await holder.done;
      await waitFor('the refusal in the journal', refused, 20_000);
    } finally {
      globalThis.process.kill(watch.pid, 'SIGTERM');
    }
    const r = await watch.done;
    expect(r.stderr).toMatch(/can be used again/);
    expect(JSON.parse(fspool(['queue-status', '-q', q, '--json']).stdout.toString()).unreadable.map((u: { file: string }) => u.file)).toEqual([forged]);
  });

  it('--watch verifies again, at its next rescan, a file whose verification --timeout cut short', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, signed(1, 'one'));
    const flag = join(d, 'decoder-is-well');
    // The decoder stalls after the header until the flag appears (a passphrase prompt, answered).
    const decoder = `sh -c 'if [ -e "${flag}" ]; then exec cat; fi; head -c 1500; exec sleep 600'`;
    const out = join(d, 'out');
    const run = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '1', '--require-signature', sender.pub, '--timeout', '1', '-d', decoder, 'sh', '--', '-c', 'cat > "$0"', out]);
    try {
      const refused = () => /not verified within --timeout/.test(fspool(['queue-history', '-q', q, '--outcome', 'refused']).stdout.toString());
      await waitFor('the refusal for want of time', refused, 20_000);
      writeFileSync(flag, '');
      await waitFor('the job to run once verified', () => exists(out) && readFileSync(out, 'utf8') === 'one', 20_000);
    } finally {
      globalThis.process.kill(run.pid, 'SIGTERM');
      await run.done;
    }
    expect(nextseq(q)).toBe('2');
  });

  it('--watch verifying the same file again at each rescan says it once: the repeats go to DEBUG', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    const name = put(q, signed(1, 'one'));
    // The decoder always stalls after the header: every verification runs out of time.
    const decoder = `sh -c 'head -c 1500; exec sleep 600'`;
    const run = runAsync(FSPOOL, ['--log-level', 'debug', 'queue-process', '-q', q, '--watch', '--rescan', '0.5', '--require-signature', sender.pub, '--timeout', '1', '-d', decoder, 'cat']);
    const claims = new RegExp(`(WARN|DEBUG) fspool: job file \\S*${name} claims seq 1 but fails --require-signature \\(not verified within --timeout`, 'g');
    const said = () => [...run.stderr().matchAll(claims)].map((m) => m[1]);
    try {
      await waitFor('three verifications', () => said().length >= 3, 30_000);
      expect(said()[0]).toBe('WARN');
      expect(said().slice(1).every((l) => l === 'DEBUG'), said().join(' ')).toBe(true);
      // Written to since, it is another file for all a reader can tell: news again.
      appendFileSync(join(q, 'jobs', name), 'x');
      await waitFor('a second WARN', () => said().filter((l) => l === 'WARN').length === 2, 30_000);
    } finally {
      globalThis.process.kill(run.pid, 'SIGTERM');
      await run.done;
    }
  });

  it('a forged packet beside the genuine one does not make the seq ambiguous', () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, signed(1, 'one'));
    const forged = put(q, plain(1, 'forged'));
    put(q, plain(2, 'forged too'));
    const r = process(q, 'retry');
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(d, 'out'), 'utf8')).toBe('1 one\n');
    // queue-status knows the refused files from the journal: not jobs, nor ambiguous, but failing.
    const s = JSON.parse(fspool(['queue-status', '-q', q, '--json']).stdout.toString());
    expect(s.state).toBe('failing');
    expect(s.ambiguous).toEqual([]);
    expect(s.due).toEqual([]);
    expect(s.unreadable.map((u: { file: string }) => u.file)).toContain(forged);
  });
});

describe('OpenPGP that openpgp.js reads a byte at a time', () => {
  const dir = tempDir();
  const sender = makeKey('sender', dir);
  /**
   * `packet` in a literal data packet in parts of one byte, in a ZIP compressed packet: a few KiB
   * on disk. The fast path hands compressed data to openpgp.js, which makes objects per part.
   */
  const bytewise = (packet: Buffer) => {
    const parts = splitPackets(packet)!;
    const inner = Buffer.concat(parts.map((p) => (p.tag === 11 ? encodePacket(p, { kind: 'partial', power: 0 }) : p.raw)));
    return encodePacket({ tag: 8, body: Buffer.concat([Buffer.from([1]), deflateRawSync(inner, { level: 9 })]) });
  };
  /**
   * `size` zeros as seq 2, signed (one-pass signature, literal, signature). Up to a few MB,
   * openpgp.js reads all of it before it gives the header; beyond, it streams, a part at a time.
   */
  const signedZeros = (d: string, size = 3_000_000) => {
    const seqfile = join(d, 'seq');
    writeFileSync(seqfile, '2\n');
    const r = fspool(['prepare', '-s', seqfile, '-i', '-', '--sign-with', sender.sec], { input: Buffer.alloc(size) });
    if (r.code !== 0) throw new Error(r.stderr);
    return r.stdout;
  };

  it('its header read is bounded by --decoder-timeout, in the processor and in listings: the file is unreadable, the queue goes on', () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, plain(1, 'one'));
    const hostile = put(q, bytewise(signedZeros(d)));
    expect(readFileSync(join(q, 'jobs', hostile)).length).toBeLessThan(64 << 10);
    const late = new RegExp(`${hostile}.{1,3}no packet header within 2s of decoding \\(--decoder-timeout\\)`);
    const r = fspool(['queue-process', '-q', q, '--decoder-timeout', '2', 'sh', '--', '-c', 'echo "$FSPL_SEQ $(cat)" >> "$0"', join(d, 'out')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(late);
    expect(r.stderr).toMatch(/^Error: seq 2 not found, and 1 job file\(s\) that cannot be read could hold it/m);
    expect(readFileSync(join(d, 'out'), 'utf8')).toBe('1 one\n');
    for (const cmd of [['queue-ls'], ['queue-status']]) {
      const l = fspool([...cmd, '-q', q, '--decoder-timeout', '2']);
      expect(`${l.stdout}${l.stderr}`, cmd[0]).toMatch(late);
    }
  });

  it('signed, it takes more memory than the decode worker has: unreadable, the worker started again for the next', () => {
    const d = tempDir();
    const q = makeQueue(d);
    put(q, plain(1, 'one'));
    const hostile = put(q, bytewise(signedZeros(d)));
    // Seq 3, signed too: read by a decode worker after the first one ran out of memory.
    const seqfile = join(d, 'seq3');
    writeFileSync(seqfile, '3\n');
    put(q, fspool(['prepare', '-s', seqfile, '-i', '-', '--sign-with', sender.sec], { input: 'three' }).stdout);
    const memory = new RegExp(`cannot read job file .*${hostile}: decoding it took more than the decode worker's \\d+ MB of heap .*; gpg decodes it outside`);
    const run = () => fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'echo "$FSPL_SEQ $(cat)" >> "$0"', join(d, 'out')]);
    const r = run();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(memory);
    expect(readFileSync(join(d, 'out'), 'utf8')).toBe('1 one\n');
    // Past the hostile file's seq, the signed seq 3 runs.
    expect(fspool(['queue-set-next', '-q', q, '3']).code).toBe(0);
    const again = run();
    expect(again.stderr).toMatch(memory);
    expect(readFileSync(join(d, 'out'), 'utf8')).toBe('1 one\n3 three\n');
    // Two runs that each decode up to the worker's heap limit: ~40 s on two busy cores.
  }, 240_000);

  it('on stdin, a pipe or a socket (what a Node parent gives), stdin-info and stdin-payload are bounded as a file is: the decode worker runs out of heap, one error line', () => {
    const d = tempDir();
    const file = join(d, 'hostile.pgp');
    writeFileSync(file, bytewise(signedZeros(d)));
    // Each run decodes up to the worker's heap limit (seconds of CPU): stdin-info both ways, and
    // stdin-payload, which read a pipe through the worker already, from a socket.
    for (const [cmd, via] of [['stdin-info', 'socket'], ['stdin-info', 'pipe'], ['stdin-payload', 'socket']]) {
      const r = via === 'socket' ? fspool([cmd!], { input: readFileSync(file) }) : runSync('sh', ['-c', 'cat "$0" | "$1" "$2"', file, FSPOOL, cmd!]);
      expect(r.code, `${cmd} (${via}): ${r.stderr}`).toBe(1);
      expect(r.stdout.length, `${cmd} (${via})`).toBe(0);
      expect(r.stderr.trim().split('\n'), `${cmd} (${via})`).toEqual([expect.stringMatching(/^Error: decoding it took more than the decode worker's \d+ MB of heap/)]);
    }
  }, 240_000);
});

describe('durations of any length', () => {
  it('--timeout of 25 days lets a receiver run (Node timers alone would fire at once)', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    const r = fspool(['queue-process', '-q', q, '--timeout', '2200000', '--on-error', 'delete', 'sh', '--', '-c', 'sleep 1; cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('one');
    expect(r.stderr).not.toMatch(/TimeoutOverflowWarning|timed out/);
  });

  it('--grace of 25 days gives a timed-out receiver its grace instead of an immediate SIGKILL', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    const script = 'trap "sleep 1; echo graceful >&2; exit 3" TERM; sleep 30 & wait';
    const r = fspool(['queue-process', '-q', q, '--timeout', '1', '--grace', '2200000', 'sh', '--', '-c', script]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/graceful/);
    expect(r.stderr).toMatch(/timed out; command exited with status 3/);
  });

  it('--rescan of 25 days under --watch waits quietly instead of spinning', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '2200000', 'cat']);
    await sleep(3000);
    const [utime, stime] = readFileSync(`/proc/${w.pid}/stat`, 'latin1').split(') ')[1]!.split(' ').slice(11, 13).map(Number);
    process.kill(w.pid, 'SIGTERM');
    const r = await w.done;
    expect(r.stderr).not.toMatch(/TimeoutOverflowWarning/);
    // Clock ticks of CPU over three seconds of waiting: start-up only, nowhere near a spin.
    expect(utime! + stime!).toBeLessThan(150);
  });

  it('refuses a --rescan of 0 (a spin), and durations that are not numbers, as usage errors', () => {
    const q = makeQueue(tempDir());
    for (const bad of [['--rescan', '0'], ['--timeout', 'soon'], ['--grace', '-1'], ['--timeout', '1e400']]) {
      const r = fspool(['queue-process', '-q', q, '--watch', ...bad, 'cat']);
      expect(r.code, bad.join(' ')).toBe(2);
    }
  });
});

describe('--decoder-timeout', () => {
  it('a decoder that never gives a header is killed, the file counted unreadable, and nothing hangs', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    for (const cmd of ['queue-ls', 'queue-process']) {
      const args = cmd === 'queue-ls' ? [cmd, '-q', q] : [cmd, '-q', q, 'cat'];
      const r = fspool([...args, '-d', 'sleep 600', '--decoder-timeout', '1'], { timeoutMs: 60_000 });
      expect(r.signal, `${cmd} hung`).toBe(null);
      expect(r.stderr).toMatch(/gave no packet header within 1s \(--decoder-timeout\)/);
    }
    expect(nextseq(q)).toBe('1');
  });
});

describe('a journal taken away during a run', () => {
  it('is not reported as fspool dying: the job is done, and the next run with a job says the outcome went unrecorded', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    expect(fspool(['queue-ls', '-q', q]).code).toBe(0); // creates QUEUE/fspool/state.db
    const db = join(q, 'fspool', 'state.db');
    const flag = join(dir, 'locked');
    // The receiver has another program take the database's exclusive lock and keep it for a
    // while after the receiver exits: the outcome cannot be journaled.
    const hold = `import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
time.sleep(3.5)`;
    const script = 'python3 -c "$0" "$1" "$2" </dev/null >/dev/null 2>&1 & while [ ! -e "$2" ]; do sleep 0.05; done; cat >/dev/null';
    let r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', script, hold, db, flag]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/state database .* is locked by another process/);
    expect(nextseq(q)).toBe('2');
    // Wait for the lock to go.
    for (let i = 0; i < 200 && runSync('python3', ['-c', 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=0.1); c.execute("BEGIN IMMEDIATE")', db]).code !== 0; i++) {
      runSync('sleep', ['0.1']);
    }
    // The next run that has a job reads the journal (a run of an empty jobs/ does not open it).
    put(q, plain(2, 'two'));
    r = fspool(['queue-process', '-q', q, 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/died while it ran/);
    expect(r.stderr).toMatch(/job 1 .*ended while the journal was unavailable; the queue has moved past it/);
    expect(nextseq(q)).toBe('3');
    const h = fspool(['queue-history', '-q', q, '--json']);
    expect(JSON.parse(h.stdout.toString()).runs.map((x: { outcome: string }) => x.outcome)).toEqual(['success', 'unrecorded']); // newest first
  });

  it('a watch takes it up again once it is back; a job that failed meanwhile is not taken for a crash', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    expect(fspool(['queue-ls', '-q', q]).code).toBe(0); // creates QUEUE/fspool/state.db
    const db = join(q, 'fspool', 'state.db');
    const [flag, released] = [join(dir, 'locked'), join(dir, 'released')];
    // The first attempt has another program hold the database's exclusive lock for 3 s, and
    // fails; the attempts after it fail until the lock is gone.
    const hold = `import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
time.sleep(3)
c.execute("ROLLBACK")
c.close()
open(sys.argv[3], "w").close()`;
    const script = 'cat >/dev/null; [ -e "$3" ] && exit 0; [ -e "$2" ] && exit 1; python3 -c "$0" "$1" "$2" "$3" </dev/null >/dev/null 2>&1 & while [ ! -e "$2" ]; do sleep 0.05; done; exit 1';
    const watch = runAsync(FSPOOL, ['queue-process', '-q', q, '--watch', '--rescan', '0.2', '--backoff', '0.5', 'sh', '--', '-c', script, hold, db, flag, released]);
    try {
      await waitFor('job 1 to succeed once the lock is gone', () => nextseq(q) === '2', 30_000);
    } finally {
      process.kill(watch.pid, 'SIGTERM');
    }
    const r = await watch.done;
    expect(r.code, r.stderr).toBe(143);
    expect(r.stderr).toMatch(/WARN fspool: state database .* is locked by another process; going on without it/);
    expect(r.stderr).toMatch(/INFO fspool: job 1 .* ended while the journal was unavailable; the job stays due/);
    expect(r.stderr).toMatch(/INFO fspool: state database .* can be used again: journal and header cache resumed/);
    expect(r.stderr).not.toMatch(/died/);
    const h = fspool(['queue-history', '-q', q, '--json']);
    const runs = (JSON.parse(h.stdout.toString()) as { runs: Array<{ outcome: string; detail: string }> }).runs;
    expect(runs.map((x) => x.outcome)).toEqual(['success', 'unrecorded']); // newest first
    expect(runs[1]!.detail).toMatch(/could not record how this attempt ended \(the journal was unavailable\); the job stays due/);
  });
});

describe('judgements the probe left open', () => {
  it('a receiver told to stop that took the whole payload and exited 0 is done, not run again', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, plain(1, 'one'));
    const out = join(dir, 'out');
    // Python, not sh: dash under -c loses a SIGINT that comes while it starts a command (a
    // `sleep` of its loop), and would loop on.
    const script = [
      'import signal, sys, time',
      'with open(sys.argv[1], "ab") as f: f.write(sys.stdin.buffer.read())',
      'signal.signal(signal.SIGINT, lambda *_: sys.exit(0))',
      'open(sys.argv[1] + ".ready", "w").close()',
      'while True: time.sleep(0.1)',
    ].join('\n');
    const w = runAsync(FSPOOL, ['queue-process', '-q', q, 'python3', '--', '-c', script, out]);
    await waitFor('the receiver to have read its payload', () => exists(`${out}.ready`));
    process.kill(w.pid, 'SIGINT');
    const r = await w.done;
    expect(r.code).toBe(130);
    expect(nextseq(q)).toBe('2');
    expect(fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'cat >> "$0"', out]).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('one');
  });

  it('--order-by timestamp does not run again a copy of a packet the journal knows ran', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const p = plain(1, 'one');
    put(q, p);
    const run = () => fspool(['queue-process', '-q', q, '--order-by', 'timestamp', 'cat']);
    expect(run().stdout.toString()).toBe('one');
    put(q, p); // delivered again
    const r = run();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('');
    expect(r.stderr).toMatch(/is a copy of a packet that ran successfully .* not run again; removed/);
    expect(jobFiles(q)).toEqual([]);
  });

  it('a job file still being written under its job name does not count as done, nor as failed (--on-error delete keeps it)', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const name = put(q, plain(1, 'one'));
    // A writer appends to the job file while its job runs (the receiver plays the writer).
    const r = fspool(['queue-process', '-q', q, '--on-error', 'delete', 'sh', '--', '-c', 'printf more >> "$0"; cat > /dev/null', join(q, 'jobs', name)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/job file changed size while the job ran \(\d+ bytes, now \d+\): .* a writer must use a temp name and rename; job kept/);
    expect(nextseq(q)).toBe('1');
    expect(jobFiles(q)).toEqual([name]);
  });

  it('two identical huge copies of the due packet: a SIGTERM during their comparison stops the run, no job started', async () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const a = join(q, 'jobs', 'fspl-a.fspl');
    writeFileSync(a, plain(1, 'one'));
    // 16 GiB with a byte of data in every MiB (64 MiB of disk): holes both copies have are not
    // read, so data everywhere is what keeps the comparison going.
    const fill = 'import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\nfor k in range(1, 16 * 1024): os.pwrite(fd, b"x", k << 20)\nos.ftruncate(fd, 16 << 30)';
    expect(runSync('python3', ['-c', fill, a]).code).toBe(0);
    runSync('cp', ['--sparse=always', a, join(q, 'jobs', 'fspl-b.fspl')]);
    const ran = join(dir, 'ran');
    const run = runAsync(FSPOOL, ['queue-process', '-q', q, 'sh', '--', '-c', 'touch "$0"', ran]);
    await waitFor('the comparison of the two copies', () => holdsOpen(run.pid, 'fspl-a.fspl') && holdsOpen(run.pid, 'fspl-b.fspl'), 20_000);
    process.kill(run.pid, 'SIGTERM');
    const r = await within(run.done, 10_000, 'fspool after SIGTERM, mid-comparison');
    expect(r.code, r.stderr).toBe(143);
    expect(exists(ran)).toBe(false);
    expect(nextseq(q)).toBe('1');
  });

  it('a job name too long to add .out to (--output-to saveboth) fails its own job: --on-error applies, and the queue goes on', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    // 255 bytes: the longest name most file systems take; NAME.out is four too many.
    const name = put(q, plain(1, 'one'), `fspl-${'x'.repeat(245)}.fspl`);
    put(q, plain(2, 'two'));
    const r = fspool(['queue-process', '-q', q, '--output-to', 'saveboth', '--on-error', 'delete', 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/ERROR fspool: job 1 .* failed: cannot write its output to .*\.out: .*ENAMETOOLONG.*: the job file's name is too long to add \.out to; the command was not started/);
    expect(jobFiles(q)).not.toContain(name);
    expect(nextseq(q)).toBe('3');
    expect(fspool(['queue-history', '-q', q]).stdout.toString()).toMatch(/bad-packet/);
  });

  it('a directory at NAME.out (--output-to saveboth) keeps the job and stops the run, whatever --on-error says', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const name = put(q, plain(1, 'one'));
    put(q, plain(2, 'two'));
    mkdirSync(join(q, 'jobs', `${name}.out`));
    writeFileSync(join(q, 'jobs', `${name}.out`, 'x'), '');
    const r = fspool(['queue-process', '-q', q, '--output-to', 'saveboth', '--on-error', 'delete', 'cat']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: job 1 .*: cannot write its output to .*\.out: .*is a directory \(EISDIR\); job kept$/m);
    expect(nextseq(q)).toBe('1');
    expect(jobFiles(q)).toContain(name);
    rmSync(join(q, 'jobs', `${name}.out`), { recursive: true });
    expect(fspool(['queue-process', '-q', q, '--output-to', 'saveboth', 'cat']).code).toBe(0);
    expect(readFileSync(join(q, 'jobs', `${name}.out`), 'utf8')).toBe('one');
    expect(nextseq(q)).toBe('3');
  });

  it('a job file written while its job ran, the command failing or not taking it all: kept (not a failure: --retries and --on-error do not see it)', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const name = put(q, plain(1, 'x'.repeat(100_000)));
    const file = join(q, 'jobs', name);
    // Appended to, the command failing on what it read: kept, twice.
    for (let i = 0; i < 2; i++) {
      const r = fspool(['queue-process', '-q', q, '--on-error', 'delete', 'sh', '--', '-c', 'printf more >> "$0"; cat > /dev/null; exit 2', file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/changed size while the job ran/);
      writeFileSync(file, plain(1, 'x'.repeat(100_000)));
    }
    // Rewritten at the same size (truncated, copied back) after the command read none of it.
    const copy = join(dir, 'copy');
    writeFileSync(copy, readFileSync(file));
    const same = fspool(['queue-process', '-q', q, '--on-error', 'delete', 'sh', '--', '-c', ': > "$0"; cat; cp "$1" "$0"', file, copy]);
    expect(same.code).toBe(1);
    expect(same.stderr).toMatch(/the job file was written while the job ran, and the command did not take all of it and exit 0/);
    expect(nextseq(q)).toBe('1');
    expect(jobFiles(q)).toEqual([name]);
    const h = JSON.parse(fspool(['queue-history', '-q', q, '--json']).stdout.toString()) as { runs: Array<{ outcome: string; action: string }> };
    expect(h.runs.map((x) => [x.outcome, x.action])).toEqual([
      ['kept', 'stop'],
      ['kept', 'stop'],
      ['kept', 'stop'],
    ]);
    // None of them counted as a failure: --retries 1 gives a failing command its two tries.
    const count = join(dir, 'tries');
    const r = fspool(['queue-process', '-q', q, '--retries', '1', '--backoff', '0', '--on-error', 'delete', 'sh', '--', '-c', 'cat > /dev/null; echo try >> "$0"; exit 1', count]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(count, 'utf8')).toBe('try\ntry\n');
  });

  it('a job file touched while its job ran is the same packet: the job is done, never run again', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const name = put(q, plain(1, 'one'));
    const out = join(dir, 'applied');
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'touch -d "2001-01-01" "$0"; cat >> "$1"', join(q, 'jobs', name), out]);
    expect(r.code, r.stderr).toBe(0);
    expect(nextseq(q)).toBe('2');
    expect(jobFiles(q)).toEqual([]);
    expect(readFileSync(out, 'utf8')).toBe('one');
  });

  it('reads no more of a seqfile than a number needs, and refuses what is not one', () => {
    const dir = tempDir();
    const big = join(dir, 'big');
    writeFileSync(big, Buffer.alloc(20 << 20, '7'));
    for (const [seq, why] of [
      [big, /first line is over 4096 bytes/],
      ['/dev/zero', /is not a regular file/],
    ] as const) {
      const r = fspool(['prepare', '-s', seq, '-i', '-'], { input: 'x' });
      expect(r.code, seq).toBe(1);
      expect(r.stderr).toMatch(why);
      expect(r.stdout.length).toBe(0);
    }
  });

  it('prepare -i DIR fails before it writes anything, and consumes no number', () => {
    const dir = tempDir();
    const seq = join(dir, 'seq');
    writeFileSync(seq, '5\n');
    const r = fspool(['prepare', '-s', seq, '-i', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is a directory; -i takes a file/);
    expect(r.stdout.length).toBe(0);
    expect(readFileSync(seq, 'utf8')).toBe('5\n');
  });
});

describe('an oversized packet fails its own job, whatever --on-error says, and never stops the queue', () => {
  it('a variable over the kernel per-string limit: bad-packet, --on-error delete applies, the next job runs', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    put(q, packet(1, [[b('BIG'), Buffer.alloc(200 * 1024, 'x')]]));
    put(q, plain(2, 'two'));
    const r = fspool(['queue-process', '-q', q, '--on-error', 'delete', 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .* failed: the packet's variable FSPL_SET_BIG is \d+ bytes, more than the 131071 that Linux allows/);
    expect(r.stdout.toString()).toBe('two');
    expect(nextseq(q)).toBe('3');
  });

  it('params that make the argument list too long (E2BIG at exec): the job fails, --on-error quarantine applies', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    // 12 params of 100 KiB, each within the per-string limit: 2.4 MB in all as arguments and
    // FSPL_PARAM_n, more than the 2 MB an 8 MB stack allows.
    const params = Array.from({ length: 12 }, (_, i) => Buffer.alloc(100 * 1024, String.fromCharCode(97 + (i % 26))));
    put(q, packet(1, [], 'payload', params));
    put(q, plain(2, 'two'));
    // The kernel allows a quarter of the stack limit for arguments and environment: 8 MB here.
    const r = runSync('sh', ['-c', 'ulimit -s 8192 && exec "$@"', 'sh', FSPOOL, 'queue-process', '-q', q, '--allow-job-params', '--on-error', 'quarantine', 'sh', '--', '-c', 'cat', 'sh']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job 1 .* failed: cannot run command: the packet's params and variables \(\d+ bytes\) make its argument list too long \(E2BIG\)/);
    expect(r.stderr).toMatch(/moved to quarantine/);
    expect(r.stdout.toString()).toBe('two');
    expect(nextseq(q)).toBe('3');
  });
});

describe('metadata that would take more memory than any header needs', () => {
  /** A packet whose metadata is `meta`, with both CRCs right. */
  function rawPacket(meta: Buffer, payload = 'payload'): Buffer {
    const prefix = Buffer.alloc(30);
    b('*FILESPOOLER').copy(prefix, 0);
    prefix.writeUInt16BE(1, 12); // format version
    prefix.writeBigUInt64BE(BigInt(meta.length), 14);
    prefix.writeUInt32BE(crc32(meta), 22);
    prefix.writeUInt32BE(crc32(prefix.subarray(0, 26)), 26);
    return Buffer.concat([prefix, meta, b(payload)]);
  }
  /** The metadata of seq 1 with `n` empty params (one byte each: an empty array). */
  function emptyParams(n: number): Buffer {
    const str = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), b(s)]);
    const count = Buffer.alloc(5);
    count[0] = 0xdd;
    count.writeUInt32BE(n, 1);
    return Buffer.concat([Buffer.from([0x83]), str('seq'), Buffer.from([0x01]), str('ctime'), Buffer.from([0x92, 0x01, 0x00]), str('cmd_type'), Buffer.from([0x81]), str('Command'), Buffer.from([0x82]), str('params'), count, Buffer.alloc(n, 0x90), str('env'), Buffer.from([0x90])]);
  }

  it('millions of one-byte params are refused as unreadable, not decoded; the queue goes on', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    // 16 million would be gigabytes decoded.
    const huge = rawPacket(emptyParams(16_000_000));
    for (const n of ['a', 'b', 'c']) writeFileSync(join(q, 'jobs', `fspl-huge-${n}.fspl`), huge);
    put(q, plain(2, 'two'));
    writeFileSync(join(q, 'nextseq'), '2\n');
    const ls = fspool(['queue-ls', '-q', q]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stderr).toMatch(/fspl-huge-a\.fspl: metadata holds more than 524288 arrays, maps and strings \(far more than any sender writes\)/);
    expect(ls.stdout.toString().trim().split('\n')).toHaveLength(2);
    // Job 2 runs; seq 3 could be in any of them: that stops the run, as for any unreadable file.
    const r = fspool(['queue-process', '-q', q, 'cat']);
    expect(r.stdout.toString()).toBe('two');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: seq 3 not found, and 3 job file\(s\) that cannot be read could hold it/m);
  });

  it('more params than a call takes arguments, with --allow-job-params: the job fails on the argument list, one clear line', () => {
    const r = fspool(['stdin-process', '--allow-job-params', 'true'], { input: rawPacket(emptyParams(400_000)) });
    expect(r.code).toBe(1);
    // Said before a request of megabytes is built for the exec that must fail.
    expect(r.stderr).toMatch(/^Error: job 1: the packet's params and variables take \d+ bytes, more than the 6291456 that Linux allows a command's arguments and environment together; the command was not started$/m);
  });

  it('one variable given 100,000 times (6 MB of header, 1 variable for exec): the job runs with the last value, as under fspl', () => {
    const env: Array<[Buffer, Buffer]> = Array.from({ length: 100_000 }, (_, i) => [b('A'), b(`${String(i).padStart(6, '0')}${'x'.repeat(54)}`)]);
    const packet = Buffer.concat([encodeHeader({ seq: 1n, ctimeSecs: 1n, ctimeNanos: 0, cmd: { kind: 'Command', params: [], env } }), b('payload')]);
    const r = fspool(['stdin-process', 'sh', '--', '-c', 'printf %s "$FSPL_SET_A"'], { input: packet });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe(`099999${'x'.repeat(54)}`);
  });

  it('params and variables within what Linux could take, too many for this exec: E2BIG from exec, one clear line', () => {
    // ~2.7 MB: under the 6 MiB no exec may pass, over the 2 MiB an 8 MiB stack limit allows.
    const r = runSync('prlimit', ['--stack=8388608', '--', FSPOOL, 'stdin-process', '--allow-job-params', 'true'], { input: rawPacket(emptyParams(75_000)) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: job 1: cannot run command: the packet's params and variables \(\d+ bytes\) make its argument list too long \(E2BIG\)$/m);
  });

  it('a float where fspl reads an integer (seq 1.0) is no header, as in fspl', () => {
    const meta = emptyParams(0);
    const seqAt = meta.indexOf(b('seq')) + 3;
    const float = Buffer.concat([meta.subarray(0, seqAt), Buffer.from([0xcb]), Buffer.from(new Float64Array([1]).buffer).reverse(), meta.subarray(seqAt + 1)]);
    for (const tool of ['fspl', FSPOOL]) {
      const r = runSync(tool, ['stdin-info'], { input: rawPacket(float) });
      expect(r.code, `${tool}: ${r.stderr}`).toBe(1);
    }
    expect(fspool(['stdin-info'], { input: rawPacket(float) }).stderr).toMatch(/metadata holds a floating-point number, which no field of a header is/);
    expect(fspool(['stdin-info'], { input: rawPacket(emptyParams(0)) }).code).toBe(0);
  });
});

describe("OpenPGP messages that would cost more work than any sender's", () => {
  it('more than 8 passphrase packets (each an S2K to derive, at every look): unreadable, at once; 2 are read', () => {
    const dir = tempDir();
    const pw = join(dir, 'pw');
    writeFileSync(pw, 'secret\n');
    const seq = join(dir, 'seq');
    writeFileSync(seq, '1\n');
    const packet = fspool(['prepare', '-s', seq, '-i', '-', '--passphrase-file', pw], { input: 'one' }).stdout;
    // fspool writes the SKESK first, in the new format with a one-octet length.
    expect(packet[0]).toBe(0xc3);
    expect(packet[1]).toBeLessThan(192);
    const skesk = packet.subarray(0, 2 + packet[1]!);
    const rest = packet.subarray(skesk.length);
    const withSkesks = (n: number) => Buffer.concat([...Array.from({ length: n }, () => skesk), rest]);
    const q = makeQueue(dir);
    put(q, withSkesks(9));
    const ls = fspool(['queue-ls', '-q', q, '--passphrase-file', pw]);
    expect(ls.stderr).toMatch(/cannot decrypt OpenPGP packet: it has 9 passphrase \(SKESK\) session key packets, more than the 8 fspool tries/);
    const ok = fspool(['stdin-process', '--passphrase-file', pw, 'cat'], { input: withSkesks(2) });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString()).toBe('one');
  });
});
