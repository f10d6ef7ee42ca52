// fspool in its world: the transports and service recipes of the README, run for real.
//
// - NNCP: two nodes made with nncp-cfgnew in a temp dir, configured as the README says; packets
//   sent with `nncp-exec receiver fspool` (an exec handle running `fspool queue-write`) and with
//   `nncp-file` straight into a queue's jobs/, in a shuffled order, carried by nncp-xfer through
//   a shared directory (the "USB stick"), tossed with nncp-toss, then processed: the receiver
//   saw every payload once, in seq order, byte for byte.
// - Sneakernet / Syncthing-style: an append-only queue copied into a processing queue with
//   rsync (temp name `.NAME.XXXXXX`, then rename) and with the README's cp + mv loop, while a
//   processor runs again and again: a half-copied file under a temp name is never listed or run.
// - contrib/systemd: the units pass `systemd-analyze verify`, and their ExecStart lines work.
//
// Real programs on real files; no mocks. NNCP, rsync and systemd-analyze come from Debian
// (.ci/run installs nncp and rsync).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prng } from './helpers/bytes.js';
import { FSPOOL, ROOT, type Result, runAsync, runSync, type RunOpts, tempDir } from './helpers/cli.js';
import { jobFiles, nextseq, sleep, waitFor, within } from './helpers/queue.js';

const ENV: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: process.env.HOME ?? '/tmp',
  SHELL: '/bin/sh',
  LC_ALL: 'C',
  TZ: 'UTC',
};

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v "$1"`, 'sh', cmd], { stdio: 'ignore' }).status === 0;

function run(file: string, args: string[], opts: RunOpts = {}): Result {
  return runSync(file, args, { env: ENV, timeoutMs: 30_000, ...opts });
}

/** Run and insist on exit 0; returns stdout. */
function ok(file: string, args: string[], opts: RunOpts = {}): Buffer {
  const r = run(file, args, opts);
  expect(r.code, `${file} ${args.join(' ')} exited ${r.code}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** `sh -c SCRIPT sh ARGS...` must succeed: ARGS are $1, $2, ... */
const sh = (script: string, args: string[] = [], opts: RunOpts = {}) => ok('/bin/sh', ['-c', script, 'sh', ...args], opts);

const fspoolOk = (args: string[], opts: RunOpts = {}) => ok(FSPOOL, args, opts);

/** A deterministic shuffle, so a failure can be replayed. */
function shuffled<T>(items: T[], seed: number): T[] {
  const rand = prng(seed);
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// The receiver: appends "SEQ SHA256-OF-STDIN PARAM1" to a log, one line per job it ran.

const RECORD = 'printf "%s %s %s\\n" "$FSPL_SEQ" "$(sha256sum | cut -d" " -f1)" "$FSPL_PARAM_1" >> "$0"';
const recorder = (log: string) => ['sh', '--', '-c', RECORD, log];

interface Seen {
  seq: number;
  sha: string;
  label: string;
}
function seen(log: string): Seen[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [seq, sha, label = ''] = l.split(' ');
      return { seq: Number(seq), sha: sha!, label };
    });
}

interface Sent {
  seq: number;
  payload: Buffer;
  label: string;
  file: string;
}

/** Prepares packets seq 1..sizes.length on one seqfile, payload i of sizes[i] random bytes. */
function preparePackets(dir: string, seqfile: string, sizes: number[], name: (i: number) => string = (i) => `p${i + 1}.pkt`): Sent[] {
  mkdirSync(dir, { recursive: true });
  return sizes.map((size, i) => {
    const payload = randomBytes(size);
    const label = `label-${i + 1}`;
    const file = join(dir, name(i));
    writeFileSync(file, fspoolOk(['prepare', '-s', seqfile, '-i', '-', '--', label], { input: payload }));
    return { seq: i + 1, payload, label, file };
  });
}

const expected = (sent: Sent[]): Seen[] => sent.map((p) => ({ seq: p.seq, sha: sha256(p.payload), label: p.label }));

// ---------------------------------------------------------------------------------------------
// NNCP: two nodes on one machine, set up as the README says.

const NNCP = has('nncp-cfgnew') && has('nncp-exec') && has('nncp-file') && has('nncp-xfer') && has('nncp-toss');

type PubKeys = Record<'id' | 'exchpub' | 'signpub' | 'noisepub', string>;

/** The node's public keys: its `neigh: { self: {...} }` block, what it gives its neighbours. */
function publicKeys(cfg: string): PubKeys {
  const neigh = cfg.slice(cfg.search(/^\s*neigh: \{/m));
  const get = (k: string) => {
    const m = neigh.match(new RegExp(`^\\s*${k}: ([A-Z0-9]+)$`, 'm'));
    if (!m) throw new Error(`nncp-cfgnew output has no neigh.self.${k}`);
    return m[1]!;
  };
  return { id: get('id'), exchpub: get('exchpub'), signpub: get('signpub'), noisepub: get('noisepub') };
}

/**
 * The README's edits to a fresh `nncp-cfgnew` config: spool and log paths, and the neighbour
 * (its four public values, plus whatever it is allowed to do here) under `neigh`.
 */
function editConfig(cfg: string, spool: string, log: string, neighName: string, neigh: PubKeys, extra: string[]): string {
  const q = JSON.stringify;
  const block = [
    `    ${neighName}: {`,
    `      id: ${neigh.id}`,
    `      exchpub: ${neigh.exchpub}`,
    `      signpub: ${neigh.signpub}`,
    `      noisepub: ${neigh.noisepub}`,
    ...extra.map((l) => `      ${l}`),
    `    }`,
  ].join('\n');
  const out = cfg
    .replace(/^(\s*)spool: .*$/m, `$1spool: ${q(spool)}`)
    .replace(/^(\s*)log: .*$/m, `$1log: ${q(log)}`)
    .replace(/^\s*neigh: \{$/m, (m) => `${m}\n${block}`);
  expect(out).toContain(block);
  expect(out).toContain(`spool: ${q(spool)}`);
  return out;
}

interface NncpPair {
  dir: string;
  sender: string; // config files
  receiver: string;
  senderId: string;
  receiverSpool: string;
  senderSpool: string;
  via: string;
  /** Carry everything queued at the sender to the receiver and toss it there. */
  deliver(): Result;
}

/**
 * A sender and a receiver. The receiver lets the sender run the exec handle `fspool`
 * (`fspool queue-write -q QUEUE`) and save files into `incoming` (a queue's jobs/).
 */
function nncpPair(dir: string, queue: string, incoming: string): NncpPair {
  const sGen = ok('nncp-cfgnew', []).toString();
  const rGen = ok('nncp-cfgnew', []).toString();
  const sPub = publicKeys(sGen);
  const rPub = publicKeys(rGen);
  expect(sPub.id).not.toBe(rPub.id);
  const senderSpool = join(dir, 'sender-spool');
  const receiverSpool = join(dir, 'receiver-spool');
  const via = join(dir, 'via');
  for (const d of [senderSpool, receiverSpool, via]) mkdirSync(d, { recursive: true });
  const sender = join(dir, 'sender.hjson');
  const receiver = join(dir, 'receiver.hjson');
  writeFileSync(sender, editConfig(sGen, senderSpool, join(dir, 'sender.log'), 'receiver', rPub, []));
  writeFileSync(
    receiver,
    editConfig(rGen, receiverSpool, join(dir, 'receiver.log'), 'sender', sPub, [
      `exec: {fspool: [${JSON.stringify(FSPOOL)}, "queue-write", "-q", ${JSON.stringify(queue)}]}`,
      `incoming: ${JSON.stringify(incoming)}`,
    ]),
  );
  return {
    dir,
    sender,
    receiver,
    senderId: sPub.id,
    receiverSpool,
    senderSpool,
    via,
    deliver() {
      ok('nncp-xfer', ['-cfg', sender, '-quiet', '-mkdir', '-tx', via]);
      ok('nncp-xfer', ['-cfg', receiver, '-quiet', '-rx', via]);
      return run('nncp-toss', ['-cfg', receiver, '-quiet']);
    },
  };
}

/** Encrypted packets from the sender still waiting in the receiver's spool (not tossed). */
const untossed = (p: NncpPair) => {
  const rx = join(p.receiverSpool, p.senderId, 'rx');
  return existsSync(rx) ? readdirSync(rx).filter((n) => n !== 'hdr' && !n.startsWith('.')) : [];
};

describe.skipIf(!NNCP)('NNCP on one machine (skipped only when the nncp package is not installed)', () => {
  it('nncp-exec to an exec handle running fspool queue-write: shuffled, duplicated, then processed in order, byte-exact', () => {
    const dir = tempDir('fspool-nncp-');
    const queue = join(dir, 'queue');
    fspoolOk(['queue-init', '-q', queue]);
    const pair = nncpPair(dir, queue, join(dir, 'unused'));
    const seqfile = join(dir, 'sender.seq');
    const log = join(dir, 'received.log');

    // Eight packets, prepared in order on one seqfile, sent in a shuffled order: the first
    // batch lacks seq 1, so nothing may run after it arrives.
    const sent = preparePackets(join(dir, 'packets'), seqfile, [0, 1, 255, 4096, 65_543, 1 << 20, 17, 300_001]);
    const order = shuffled(sent, 20240607);
    const first = order.filter((p) => p.seq !== 1).slice(0, 4);
    const second = order.filter((p) => !first.includes(p));
    const exec = (p: Sent) => ok('nncp-exec', ['-cfg', pair.sender, '-quiet', 'receiver', 'fspool'], { stdinFile: p.file });

    for (const p of first) exec(p);
    expect(pair.deliver().code).toBe(0);
    expect(untossed(pair)).toEqual([]);
    expect(jobFiles(queue)).toHaveLength(4);
    const early = run(FSPOOL, ['queue-process', '-q', queue, ...recorder(log)]);
    expect(early.code, early.stderr).toBe(0);
    expect(seen(log)).toEqual([]);
    expect(nextseq(queue)).toBe('1');

    // The rest, and one packet of the first batch a second time (delivered twice).
    for (const p of second) exec(p);
    exec(first[0]!);
    expect(pair.deliver().code).toBe(0);
    expect(untossed(pair)).toEqual([]);
    expect(jobFiles(queue)).toHaveLength(9);
    const r = run(FSPOOL, ['queue-process', '-q', queue, ...recorder(log)]);
    expect(r.code, r.stderr).toBe(0);
    expect(seen(log)).toEqual(expected(sent));
    expect(nextseq(queue)).toBe('9');
    expect(jobFiles(queue)).toEqual([]);

    // The README's one-liner: prepare straight into nncp-exec.
    const last = randomBytes(70_000);
    writeFileSync(join(dir, 'last.bin'), last);
    sh('"$1" prepare -s "$2" -i "$3" -- label-9 | nncp-exec -cfg "$4" -quiet receiver fspool', [FSPOOL, seqfile, join(dir, 'last.bin'), pair.sender]);
    expect(pair.deliver().code).toBe(0);
    fspoolOk(['queue-process', '-q', queue, ...recorder(log)]);
    expect(seen(log)).toEqual(expected([...sent, { seq: 9, payload: last, label: 'label-9', file: '' }]));
  });

  it('a failed queue-write leaves the NNCP packet in the spool; the next nncp-toss delivers it', () => {
    const dir = tempDir('fspool-nncp-');
    const queue = join(dir, 'queue'); // not created yet: queue-write fails
    const pair = nncpPair(dir, queue, join(dir, 'unused'));
    const log = join(dir, 'received.log');
    const sent = preparePackets(join(dir, 'packets'), join(dir, 'sender.seq'), [1000]);
    ok('nncp-exec', ['-cfg', pair.sender, '-quiet', 'receiver', 'fspool'], { stdinFile: sent[0]!.file });

    const failed = pair.deliver();
    expect(failed.code).not.toBe(0);
    expect(untossed(pair)).toHaveLength(1);
    expect(readFileSync(join(dir, 'receiver.log'), 'utf8')).toMatch(/exit status [1-9]/); // NNCP logs the handle's failure

    fspoolOk(['queue-init', '-q', queue]);
    expect(pair.deliver().code).toBe(0);
    expect(untossed(pair)).toEqual([]);
    fspoolOk(['queue-process', '-q', queue, ...recorder(log)]);
    expect(seen(log)).toEqual(expected(sent));
  });

  it('nncp-file into the queue jobs/ (incoming): fspl-<uuid>.fspl names are jobs, other names are not', () => {
    const dir = tempDir('fspool-nncp-');
    const queue = join(dir, 'queue');
    fspoolOk(['queue-init', '-q', queue]);
    // NNCP's `incoming` is the queue's jobs/: nncp-toss writes `nncpfile<hex>` there, then
    // renames it to the name the sender gave (the source's base name when none is given).
    const pair = nncpPair(dir, join(dir, 'unused'), join(queue, 'jobs'));
    const seqfile = join(dir, 'sender.seq');
    const log = join(dir, 'received.log');

    // Files named by gen-filename, sent under their own names, in a shuffled order.
    const sent = preparePackets(join(dir, 'packets'), seqfile, [3, 0, 100_000, 4096, 1 << 19, 9], () => fspoolOk(['gen-filename']).toString().trim());
    for (const p of sent) expect(p.file).toMatch(/\/fspl-[0-9a-f-]{36}\.fspl$/);
    for (const p of shuffled(sent, 7)) ok('nncp-file', ['-cfg', pair.sender, '-quiet', p.file, 'receiver:']);
    expect(pair.deliver().code).toBe(0);
    expect(untossed(pair)).toEqual([]);
    expect(jobFiles(queue)).toEqual(sent.map((p) => p.file.slice(p.file.lastIndexOf('/') + 1)).sort());

    // Straight from prepare, under a fresh name given on the command line.
    const more = randomBytes(50_000);
    writeFileSync(join(dir, 'more.bin'), more);
    sh('"$1" prepare -s "$2" -i "$3" -- label-7 | nncp-file -cfg "$4" -quiet - "receiver:$("$1" gen-filename)"', [FSPOOL, seqfile, join(dir, 'more.bin'), pair.sender]);
    // A packet sent under a name that is not a job name: it lands, and is never listed or run.
    const stray = join(dir, 'backup-8.fspl');
    writeFileSync(stray, fspoolOk(['prepare', '-s', seqfile, '-i', '-', '--', 'label-8'], { input: 'eight' }));
    ok('nncp-file', ['-cfg', pair.sender, '-quiet', stray, 'receiver:']);
    expect(pair.deliver().code).toBe(0);
    expect(existsSync(join(queue, 'jobs', 'backup-8.fspl'))).toBe(true);

    const listed = fspoolOk(['queue-ls', '-q', queue]).toString();
    expect(listed).not.toContain('backup-8');
    expect(listed.trim().split('\n')).toHaveLength(1 + 7);
    const r = run(FSPOOL, ['queue-process', '-q', queue, ...recorder(log)]);
    expect(r.code, r.stderr).toBe(0);
    expect(seen(log)).toEqual(expected([...sent, { seq: 7, payload: more, label: 'label-7', file: '' }]));
    expect(nextseq(queue)).toBe('8'); // waiting for 8, which came under a non-job name
    expect(readdirSync(join(queue, 'jobs'))).toEqual(['backup-8.fspl']);
  });
});

// ---------------------------------------------------------------------------------------------
// Sneakernet and Syncthing-style copies into jobs/.

describe('copying an append-only queue into a processing queue', () => {
  it.skipIf(!has('rsync'))('rsync (temp name, then rename) while a processor runs: the half-copied file is never listed or run; re-syncing runs nothing twice (skipped only without rsync)', async () => {
    const dir = tempDir('fspool-rsync-');
    const outbox = join(dir, 'outbox');
    const queue = join(dir, 'queue');
    fspoolOk(['queue-init', '-q', outbox, '--append-only']);
    fspoolOk(['queue-init', '-q', queue]);
    const log = join(dir, 'received.log');

    // Sender side: seq 1 is big (the slow copy), seq 2 small; plus the temp file of a
    // queue-write still in progress, which the README's filter leaves behind.
    const seqfile = join(dir, 'sender.seq');
    const sent = preparePackets(join(dir, 'packets'), seqfile, [6 << 20, 5000]);
    for (const p of sent) fspoolOk(['queue-write', '-q', outbox], { stdinFile: p.file });
    writeFileSync(join(outbox, 'jobs', 'tmp-fspl-00000000-0000-4000-8000-000000000000.fspl.tmp'), 'half a packet');
    expect(fspoolOk(['queue-ls', '-q', outbox]).toString().trim().split('\n')).toHaveLength(3);
    const big = jobFiles(outbox).find((n) => statSync(join(outbox, 'jobs', n)).size > 6 << 20)!;
    const bigSize = statSync(join(outbox, 'jobs', big)).size;

    // Receiver side: the README's rsync line, slowed down so that the copy takes ~2 s.
    const rsyncArgs = ['-a', '--include=fspl-*.fspl', '--exclude=*', `${outbox}/jobs/`, `${queue}/jobs/`];
    const copy = runAsync('rsync', ['--bwlimit=3000', ...rsyncArgs], { env: ENV });
    let rsyncDone = false;
    const copied = copy.done.then((r) => {
      rsyncDone = true;
      return r;
    });

    const isTemp = (n: string) => n.startsWith(`.${big}.`);
    const temps = () => readdirSync(join(queue, 'jobs')).filter(isTemp);
    let sawPartial = 0;
    const deadline = Date.now() + 30_000;
    while (!rsyncDone && Date.now() < deadline) {
      const before = temps();
      const ls = run(FSPOOL, ['queue-ls', '-q', queue]);
      const after = temps();
      expect(ls.code, ls.stderr).toBe(0);
      const listing = ls.stdout.toString();
      for (const t of [...before, ...after]) {
        expect(listing).not.toContain(t);
        expect(ls.stderr).not.toContain(t);
      }
      // No processor runs during queue-ls, so if the final name is absent now it was absent
      // throughout: seq 1 cannot have been listed.
      if (!existsSync(join(queue, 'jobs', big))) expect(listing).not.toContain(big);
      if (before.length && after.length && before[0] === after[0]) {
        const size = statSync(join(queue, 'jobs', after[0]!), { throwIfNoEntry: false })?.size ?? bigSize;
        if (size < bigSize) sawPartial++;
      }

      const p = run(FSPOOL, ['queue-process', '-q', queue, ...recorder(log)]);
      expect(p.code, p.stderr).toBe(0);
      for (const t of [...before, ...after]) expect(p.stderr).not.toContain(t);
      // Whatever ran, ran whole: a truncated packet would show another digest.
      expect(expected(sent)).toEqual(expect.arrayContaining(seen(log)));
      await sleep(50);
    }
    const r = await copied;
    expect(r.code, r.stderr).toBe(0);
    expect(sawPartial, 'no queue-ls overlapped the half-copied temp file: the copy was too quick to test anything').toBeGreaterThan(0);

    fspoolOk(['queue-process', '-q', queue, ...recorder(log)]);
    expect(seen(log)).toEqual(expected(sent));
    expect(nextseq(queue)).toBe('3');
    expect(readdirSync(join(queue, 'jobs'))).toEqual([]); // nothing left, the tmp- file not copied

    // Copying the same outbox again (the stick plugged in twice): the jobs are stale now,
    // reported and left alone, never run again.
    ok('rsync', rsyncArgs);
    expect(jobFiles(queue)).toHaveLength(2);
    const again = run(FSPOOL, ['queue-process', '-q', queue, ...recorder(log)]);
    expect(again.code, again.stderr).toBe(0);
    expect(seen(log)).toEqual(expected(sent));
  });

  it("the README's cp + mv loop: a file being copied under .NAME.part is not a job until the mv", async () => {
    const dir = tempDir('fspool-cp-');
    const outbox = join(dir, 'outbox');
    const queue = join(dir, 'queue');
    fspoolOk(['queue-init', '-q', outbox, '--append-only']);
    fspoolOk(['queue-init', '-q', queue]);
    const log = join(dir, 'received.log');
    const sent = preparePackets(join(dir, 'packets'), join(dir, 'sender.seq'), [1 << 20, 3000]);

    // seq 1 sits in the outbox as a FIFO that the test feeds by halves, so that cp is caught
    // in the middle of the copy; seq 2 is an ordinary file behind it in glob order.
    const fifoName = 'fspl-00000000-0000-4000-8000-000000000001.fspl';
    const fifo = join(outbox, 'jobs', fifoName);
    ok('mkfifo', [fifo]);
    writeFileSync(join(outbox, 'jobs', 'fspl-ffffffff-0000-4000-8000-000000000002.fspl'), readFileSync(sent[1]!.file));

    // The README's loop, verbatim.
    const LOOP = `
src=$1 dst=$2
for f in "$src"/fspl-*.fspl; do
  [ -e "$f" ] || continue
  n=\${f##*/}
  cp "$f" "$dst/.$n.part" && sync "$dst/.$n.part" &&
    mv "$dst/.$n.part" "$dst/$n" && sync "$dst" && rm "$f" || exit 1
done`;
    const copy = runAsync('sh', ['-c', LOOP, 'sh', join(outbox, 'jobs'), join(queue, 'jobs')], { env: ENV });

    const packet = readFileSync(sent[0]!.file);
    const half = packet.length >> 1;
    const part = join(queue, 'jobs', `.${fifoName}.part`);
    // In the thread pool: resolves once cp has opened the FIFO. Should the loop end first, a
    // reader of our own unblocks that open, and the test fails instead of hanging.
    const fh = await Promise.race([
      open(fifo, 'w'),
      copy.done.then((r): never => {
        closeSync(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
        throw new Error(`the copy loop ended before reading the FIFO: ${r.code} ${r.stderr}`);
      }),
    ]);
    try {
      await fh.write(packet.subarray(0, half));
      const until = Date.now() + 15_000;
      while ((statSync(part, { throwIfNoEntry: false })?.size ?? 0) < half) {
        expect(Date.now(), 'cp did not copy the first half').toBeLessThan(until);
        await sleep(20);
      }
      const ls = run(FSPOOL, ['queue-ls', '-q', queue]);
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout.toString().trim().split('\n')).toHaveLength(1); // the header only
      const p = run(FSPOOL, ['queue-process', '-q', queue, ...recorder(log)]);
      expect(p.code, p.stderr).toBe(0);
      expect(seen(log)).toEqual([]);
      expect(existsSync(part)).toBe(true);
      await fh.write(packet.subarray(half));
    } finally {
      await fh.close();
    }
    const r = await copy.done;
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(join(outbox, 'jobs'))).toEqual([]);

    fspoolOk(['queue-process', '-q', queue, ...recorder(log)]);
    expect(seen(log)).toEqual(expected(sent));
    expect(readdirSync(join(queue, 'jobs'))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// contrib/systemd

const UNITS = join(ROOT, 'contrib/systemd');
const UNIT_FILES = ['fspool-watch.service', 'fspool-process.service', 'fspool-process.timer', 'fspool-process.path'];
const EXAMPLE = { fspool: '/usr/local/bin/fspool', queue: '/var/spool/fspool/site', target: '/srv/site' };

/** A unit's value for KEY (the last assignment, as systemd reads a single-valued key). */
function unitValue(text: string, key: string): string | undefined {
  const all = [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
  return all.at(-1);
}

/** Splits an ExecStart= line as systemd does for what these units use: words and "quoted words". */
function execArgv(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

/** The unit's ExecStart, pointed at a real fspool, a temp queue and a temp target directory. */
function localExecStart(unit: string, queue: string, target: string): string[] {
  const line = unitValue(readFileSync(join(UNITS, unit), 'utf8'), 'ExecStart');
  expect(line, `${unit} has no ExecStart`).toBeDefined();
  return execArgv(line!).map((a) => a.replaceAll(EXAMPLE.fspool, FSPOOL).replaceAll(EXAMPLE.queue, queue).replaceAll(EXAMPLE.target, target));
}

/** A queue holding packets whose payloads are tar streams of one file each. */
function tarQueue(dir: string, files: Record<string, string>): string {
  const queue = join(dir, 'queue');
  fspoolOk(['queue-init', '-q', queue]);
  const src = join(dir, 'src');
  mkdirSync(src);
  for (const [name, body] of Object.entries(files)) {
    writeFileSync(join(src, name), body);
    sh('tar cf - -C "$1" "$2" | "$3" prepare -s "$4" -i - | "$3" queue-write -q "$5"', [src, name, FSPOOL, join(dir, 'seq'), queue]);
  }
  return queue;
}


describe('contrib/systemd', () => {
  it.skipIf(!has('systemd-analyze'))('the units pass systemd-analyze verify (skipped only when systemd-analyze is not installed)', () => {
    // verify checks that ExecStart's program exists, so the copies run this checkout's fspool.
    const dir = tempDir('fspool-units-');
    for (const f of UNIT_FILES) writeFileSync(join(dir, f), readFileSync(join(UNITS, f), 'utf8').replaceAll(EXAMPLE.fspool, FSPOOL));
    const r = run('systemd-analyze', ['verify', '--man=no', ...UNIT_FILES.map((f) => join(dir, f))], { env: { ...ENV, SYSTEMD_LOG_LEVEL: 'notice' } });
    // Warnings (unknown keys, bad values) do not change the exit status: none may name our units.
    const ours = r.stderr.split('\n').filter((l) => l.includes(dir) || /fspool-/.test(l));
    expect(ours, r.stderr).toEqual([]);
    expect(r.code, r.stderr).toBe(0);
  });

  it('the units agree: timer and path start the oneshot service, the path watches its queue, stops are clean', () => {
    const text = Object.fromEntries(UNIT_FILES.map((f) => [f, readFileSync(join(UNITS, f), 'utf8')]));
    expect(unitValue(text['fspool-process.timer']!, 'Unit')).toBe('fspool-process.service');
    expect(unitValue(text['fspool-process.path']!, 'Unit')).toBe('fspool-process.service');
    expect(unitValue(text['fspool-process.path']!, 'PathChanged')).toBe(`${EXAMPLE.queue}/jobs`);
    expect(unitValue(text['fspool-process.path']!, 'DirectoryNotEmpty')).toBeUndefined();
    expect(unitValue(text['fspool-process.service']!, 'Type')).toBe('oneshot');
    const watch = text['fspool-watch.service']!;
    expect(unitValue(watch, 'Type')).toBe('simple');
    expect(unitValue(watch, 'KillSignal')).toBe('SIGTERM');
    expect(unitValue(watch, 'KillMode')).toBe('mixed');
    expect(unitValue(watch, 'Restart')).toBe('on-failure');
    // systemd must let a stop take what fspool's own stop takes: --stop-timeout for the running
    // job to finish, then the receiver's answer to SIGTERM (as long as --grace gives a timeout).
    const argv = execArgv(unitValue(watch, 'ExecStart')!);
    const stopTimeout = Number(argv[argv.indexOf('--stop-timeout') + 1]);
    expect(stopTimeout).toBeGreaterThan(0);
    expect(Number(unitValue(watch, 'TimeoutStopSec'))).toBeGreaterThan(stopTimeout + 5);
    for (const f of ['fspool-watch.service', 'fspool-process.service']) {
      const argv = execArgv(unitValue(text[f]!, 'ExecStart')!);
      expect(argv.slice(0, 4)).toEqual([EXAMPLE.fspool, 'queue-process', '-q', EXAMPLE.queue]);
    }
    expect(execArgv(unitValue(watch, 'ExecStart')!)).toContain('--watch');
  });

  it("fspool-process.service's ExecStart processes a queue of tar packets", () => {
    const dir = tempDir('fspool-units-');
    const queue = tarQueue(dir, { 'a.txt': 'first\n', 'b.txt': 'second\n' });
    const target = join(dir, 'site');
    mkdirSync(target);
    const [file, ...args] = localExecStart('fspool-process.service', queue, target);
    const r = run(file!, args);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(target, 'a.txt'), 'utf8')).toBe('first\n');
    expect(readFileSync(join(target, 'b.txt'), 'utf8')).toBe('second\n');
    expect(nextseq(queue)).toBe('3');
  });

  it("fspool-watch.service's ExecStart runs packets as they land and stops on SIGTERM", async () => {
    const dir = tempDir('fspool-units-');
    const queue = tarQueue(dir, { 'a.txt': 'first\n' });
    const target = join(dir, 'site');
    mkdirSync(target);
    const [file, ...args] = localExecStart('fspool-watch.service', queue, target);
    const watcher = runAsync(file!, args, { env: ENV });
    try {
      await waitFor('the first packet to be applied', () => existsSync(join(target, 'a.txt')));
      // A packet written while it watches.
      writeFileSync(join(dir, 'src', 'b.txt'), 'second\n');
      sh('tar cf - -C "$1" b.txt | "$2" prepare -s "$3" -i - | "$2" queue-write -q "$4"', [join(dir, 'src'), FSPOOL, join(dir, 'seq'), queue]);
      await waitFor('the packet written while watching to be applied', () => existsSync(join(target, 'b.txt')));
      // The job is done when nextseq has moved past it; a SIGTERM before that interrupts it
      // (it would run again at the next start), which is not what this test is about.
      await waitFor('nextseq to move past it', () => nextseq(queue) === '3');
    } finally {
      process.kill(watcher.pid, 'SIGTERM');
    }
    const r = await within(watcher.done, 15_000, 'the watcher after SIGTERM');
    // Exit 0, or 143 which the unit lists in SuccessExitStatus=.
    expect([0, 143], r.stderr).toContain(r.code);
    expect(readFileSync(join(target, 'b.txt'), 'utf8')).toBe('second\n');
    expect(nextseq(queue)).toBe('3');
  });
});
