// spec/encoding.md: packets wrapped in zstd and OpenPGP, with the real tools on the
// other side. Keys are made by the real gpg (GnuPG 2.2) in a throwaway GNUPGHOME; packets go
// through `zstd`, `gpg` and the real `fspl` 1.2.2 as well as bin/fspool, all as real processes.
// No mocks: every check looks at bytes a real receiver got, files left in the queue, and what
// was said on stderr.
//
// Receivers here are `sh` scripts that dump what they were given: the payload, their own
// /proc/$$/environ (the exact environment fspool's spawner gave them) and /proc/$$/cmdline (argv,
// so job params appended by --allow-job-params are seen byte for byte).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, cpSync, existsSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FSPOOL, makeQueue, type Result, runAsync, runSync, type RunOpts, tempDir } from './helpers/cli.js';
import { encodePacket, literalBody, sealSeipd } from './helpers/pgpSurgery.js';
import { fileLines, jobFiles, LONG, nextseq, put } from './helpers/queue.js';

// ---------------------------------------------------------------------------------------------
// The world: keys, environment, payloads

const ROOT = tempDir('fspool-enc-');
const GNUPGHOME = join(ROOT, 'gnupg');
/** FSPOOL_KEYS for every run unless a test says otherwise: an empty default key location. */
const NOKEYS = join(ROOT, 'nokeys');
const KEYDIR = join(ROOT, 'keys');

const ENV: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: join(ROOT, 'home'),
  TZ: 'UTC',
  SHELL: '/bin/sh',
  LC_ALL: 'C',
  GNUPGHOME,
  FSPOOL_KEYS: NOKEYS,
};

const kf = (name: string) => join(KEYDIR, name);
/** Key files, made in beforeAll. `*.pub`/`*.sec` armored, `*.gpg` binary. */
const K = {
  recvPub: kf('recv.pub'), // ed25519 primary, cv25519 encryption subkey
  recvSec: kf('recv.sec'),
  recvPubBin: kf('recv.pub.gpg'),
  recvSecBin: kf('recv.sec.gpg'),
  rsaPub: kf('rsa.pub'), // rsa3072 primary (sign), rsa3072 encryption subkey
  rsaSec: kf('rsa.sec'),
  otherPub: kf('other.pub'), // a key nobody processes with
  otherSec: kf('other.sec'),
  protPub: kf('prot.pub'), // secret key protected by a passphrase
  protSec: kf('prot.sec'),
  protPass: kf('prot.pass'),
  bothPub: kf('both.pub'), // recv and rsa public keys in one armored block
  pass: kf('pass'), // symmetric passphrase
  wrongPass: kf('wrong.pass'),
};
const PROT_PASSPHRASE = 'unlock me please';
const SYM_PASSPHRASE = 'correct horse battery staple';

/** 2 MiB random then 1 MiB of text: both zstd paths (raw and compressed blocks) are exercised. */
const PAYLOAD = Buffer.concat([randomBytes(2 << 20), Buffer.alloc(1 << 20, 'fspool encoding test; ')]);
const PAYLOAD_FILE = join(ROOT, 'payload');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const MAGIC = Buffer.from('*FILESPOOLER');
const NONUTF8 = Buffer.from([0xff, 0x78, 0x80]);
/** Params every packet fspool prepares carries (see PREP): ASCII, a space, and bytes that are not UTF-8. */
const PARAMS = [Buffer.from('alpha'), Buffer.from('b c'), NONUTF8];
/** fspl refuses params that are not UTF-8 ("Invalid UTF-8 was detected"): its packets carry these. */
const FSPL_PARAMS = [Buffer.from('alpha'), Buffer.from('b c'), Buffer.from('café')];
/** FSPL_SET_* every prepared packet carries. */
const SETS: Record<string, Buffer> = { FSPL_SET_BIN: NONUTF8, FSPL_SET_TXT: Buffer.from('hello world') };

/**
 * `sh -c PREP TOOL prepare ARGS...`: runs fspool or fspl prepare with non-UTF-8 bytes in a
 * param and in an FSPL_SET_ variable (Node's spawn can pass neither). $P3, if set, is the
 * third param instead.
 */
const PREP = 'p="$(printf "\\377x\\200")"; FSPL_SET_BIN="$p" FSPL_SET_TXT="hello world" exec "$0" "$@" -- alpha "b c" "${P3-$p}"';

// ---------------------------------------------------------------------------------------------
// Running things

/**
 * Run to completion in ENV (plus opts.env). A program that exits without reading all of its
 * stdin (stdin-info reads only the header; a refused packet is not read on) is not an error
 * of ours: EPIPE on our side of its stdin is ignored, its exit status and output are kept.
 */
function run(file: string, args: string[], opts: RunOpts = {}): Result {
  const stdin = opts.stdinFile ? openSync(opts.stdinFile, 'r') : opts.input !== undefined ? 'pipe' : 'ignore';
  const r = spawnSync(file, args, {
    input: opts.input,
    stdio: [stdin, 'pipe', 'pipe'],
    env: { ...ENV, ...opts.env },
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 1 << 30,
  });
  if (typeof stdin === 'number') closeSync(stdin);
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr.toString() };
}
const fsp = (args: string[], opts: RunOpts = {}) => run(FSPOOL, args, opts);

function ok(r: Result, what: string): Buffer {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code ?? r.signal}: ${r.stderr}`);
  return r.stdout;
}

/** gpg in batch mode, in our GNUPGHOME; passphrases through loopback. */
const gpgRun = (args: string[], opts: RunOpts = {}) => run('gpg', ['--batch', '--yes', '--pinentry-mode', 'loopback', ...args], opts);
const gpg = (args: string[], input?: Buffer) => ok(gpgRun(['-q', ...args], { input }), `gpg ${args.join(' ')}`);
const gpgEncrypt = (input: Buffer, ...args: string[]) => gpg(['--compress-algo', 'none', '--trust-model', 'always', ...args], input);
const zstdC = (input: Buffer, ...args: string[]) => ok(run('zstd', ['-q', '-c', ...args], { input }), 'zstd');
const zstdD = (input: Buffer) => ok(run('zstd', ['-q', '-d', '-c'], { input }), 'zstd -d');

/** A packet made by `TOOL prepare ARGS` (PARAMS and SETS included); TOOL is fspool by default. */
function prep(args: string[], tool = FSPOOL, opts: RunOpts = {}): Buffer {
  const env = tool === 'fspl' ? { P3: FSPL_PARAMS[2]!.toString() } : {};
  return ok(run('/bin/sh', ['-c', PREP, tool, 'prepare', ...args], { ...opts, env: { ...env, ...opts.env } }), `${tool} prepare ${args.join(' ')}`);
}
/** seq 1, PAYLOAD, and the given encoding options. */
const prepPayload = (enc: string[], tool = FSPOOL) => prep(['-s', '-', '-i', PAYLOAD_FILE, ...enc], tool);

/**
 * queue-write, the command, the bytes (it checks that they are a packet: an encoded one must
 * pass); returns the file's name in jobs/. Elsewhere put() drops them as a transport would.
 */
function queueWrite(q: string, packet: Buffer): string {
  const before = new Set(jobFiles(q));
  ok(fsp(['queue-write', '-q', q], { input: packet }), 'queue-write');
  const added = jobFiles(q).filter((n) => !before.has(n));
  expect(added).toHaveLength(1);
  return added[0]!;
}
const spoolTmp = (q: string) => (existsSync(join(q, 'fspool', 'tmp')) ? readdirSync(join(q, 'fspool', 'tmp')) : []);

/** Offsets, tags and total lengths of the top-level OpenPGP packets of a binary message (new-format headers). */
function openpgpPackets(b: Buffer): Array<{ offset: number; tag: number; end: number }> {
  const out: Array<{ offset: number; tag: number; end: number }> = [];
  let o = 0;
  while (o < b.length) {
    const offset = o;
    const h = b[o++]!;
    if ((h & 0xc0) !== 0xc0) throw new Error(`not a new-format packet header at ${offset}`);
    for (;;) {
      const c = b[o++]!;
      let len: number;
      let partial = false;
      if (c < 192) len = c;
      else if (c < 224) len = ((c - 192) << 8) + b[o++]! + 192;
      else if (c === 255) {
        len = b.readUInt32BE(o);
        o += 4;
      } else {
        len = 1 << (c & 0x1f);
        partial = true;
      }
      o += len;
      if (!partial) break;
    }
    out.push({ offset, tag: h & 0x3f, end: o });
  }
  return out;
}

function flip(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at] = c[at]! ^ 0x01;
  return c;
}

function splitNul(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0) {
      out.push(b.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < b.length) out.push(b.subarray(start));
  return out;
}

/**
 * The dumping receiver: for each job, BASE.SEQ (payload), BASE.SEQ.env, BASE.SEQ.argv, and the
 * seq appended to BASE.order. Give it with `--allow-job-params` to see the packet's params.
 */
const RECV = 'b="$0.$FSPL_SEQ"; cat > "$b"; cat /proc/$$/environ > "$b.env"; cat /proc/$$/cmdline > "$b.argv"; echo "$FSPL_SEQ" >> "$0.order"';
const recv = (base: string) => ['sh', '--', '-c', RECV, base];

interface Seen {
  payload: Buffer;
  env: Map<string, Buffer>;
  /** argv after the receiver's own $0: the packet's params when --allow-job-params was given. */
  params: Buffer[];
}

function seen(base: string, seq: number | bigint): Seen {
  const b = `${base}.${seq}`;
  const env = new Map<string, Buffer>();
  for (const e of splitNul(readFileSync(`${b}.env`))) {
    const eq = e.indexOf(0x3d);
    env.set(e.subarray(0, eq).toString('latin1'), e.subarray(eq + 1));
  }
  const argv = splitNul(readFileSync(`${b}.argv`));
  const at = argv.findIndex((a) => a.equals(Buffer.from(base)));
  return { payload: readFileSync(b), env, params: argv.slice(at + 1) };
}
const order = (base: string) => fileLines(`${base}.order`);

const hex = (b: Buffer | undefined) => (b === undefined ? 'undefined' : b.toString('hex'));

/** Header fields of a plain packet, as the real fspl reads them. */
function fsplInfo(plain: Buffer): Map<string, string> {
  const out = ok(run('fspl', ['stdin-info'], { input: plain }), 'fspl stdin-info').toString('latin1');
  return new Map(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/**
 * What a receiver saw is the packet: payload byte-exact, FSPL_SEQ, params (in FSPL_PARAM_n and
 * in argv) and FSPL_SET_* byte-exact, and, when the plain packet is known, its ctime.
 */
function expectPacket(s: Seen, o: { seq: number; payload?: Buffer; plain?: Buffer; params?: Buffer[] }): void {
  const payload = o.payload ?? PAYLOAD;
  const want = o.params ?? PARAMS;
  expect(s.payload.length, 'payload length').toBe(payload.length);
  expect(sha256(s.payload), 'payload sha256').toBe(sha256(payload));
  expect(s.env.get('FSPL_SEQ')?.toString()).toBe(String(o.seq));
  const names = [...s.env.keys()].filter((k) => k.startsWith('FSPL_PARAM_')).sort();
  expect(names).toEqual(want.map((_, i) => `FSPL_PARAM_${i + 1}`));
  want.forEach((p, i) => expect(hex(s.env.get(`FSPL_PARAM_${i + 1}`)), `FSPL_PARAM_${i + 1}`).toBe(hex(p)));
  const sets = [...s.env.keys()].filter((k) => k.startsWith('FSPL_SET_')).sort();
  expect(sets).toEqual(Object.keys(SETS).sort());
  for (const [k, v] of Object.entries(SETS)) expect(hex(s.env.get(k)), k).toBe(hex(v));
  expect(s.params.map(hex), 'params appended to argv (--allow-job-params)').toEqual(want.map(hex));
  if (o.plain) {
    const info = fsplInfo(o.plain);
    expect(s.env.get('FSPL_SEQ')?.toString()).toBe(info.get('FSPL_SEQ'));
    expect(s.env.get('FSPL_CTIME_SECS')?.toString()).toBe(info.get('FSPL_CTIME_SECS'));
    expect(s.env.get('FSPL_CTIME_NANOS')?.toString()).toBe(info.get('FSPL_CTIME_NANOS'));
  } else {
    const secs = Number(s.env.get('FSPL_CTIME_SECS')?.toString());
    expect(Math.abs(secs - Date.now() / 1000)).toBeLessThan(600);
  }
}

/** queue-process the queue's one job into the dumping receiver; expects success. */
function processOne(q: string, mode: 'stream' | 'verified', procArgs: string[], opts: RunOpts = {}): Seen {
  const base = join(q, '..', `seen-${randomUUID()}`);
  const r = fsp(['queue-process', '-q', q, '--delivery', mode, '--allow-job-params', ...procArgs, ...recv(base)], opts);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).not.toMatch(/ERROR|WARN fspool: cannot read/);
  expect(order(base), 'the receiver ran exactly once').toEqual(['1']);
  expect(jobFiles(q)).toEqual([]);
  expect(nextseq(q)).toBe('2');
  return seen(base, 1);
}

const MODES = ['stream', 'verified'] as const;
/**
 * The delivery modes case `i` of a table runs in: both in the long mode; in the default run one,
 * alternating down the table, so that each mode meets every layer (the decoding does not
 * depend on how the plaintext is then delivered).
 */
const modesOf = (i: number) => (LONG ? MODES : [MODES[i % 2]!]);

// ---------------------------------------------------------------------------------------------
// Keys: made once per file, agent killed at the end

function fingerprint(uid: string): string {
  const out = gpg(['--with-colons', '--list-keys', uid]).toString();
  const m = /^fpr:+([0-9A-F]{40}):/m.exec(out);
  if (!m) throw new Error(`no fingerprint for ${uid}: ${out}`);
  return m[1]!;
}

beforeAll(() => {
  mkdirSync(GNUPGHOME, { mode: 0o700 });
  mkdirSync(NOKEYS);
  mkdirSync(ENV.HOME!);
  mkdirSync(KEYDIR);
  writeFileSync(PAYLOAD_FILE, PAYLOAD);
  gpg(['--passphrase', '', '--quick-gen-key', 'Recv <recv@test>', 'future-default', 'default', 'never']);
  gpg(['--passphrase', '', '--quick-gen-key', 'Rsa <rsa@test>', 'rsa3072', 'default', 'never']);
  gpg(['--passphrase', '', '--quick-add-key', fingerprint('rsa@test'), 'rsa3072', 'encr', 'never']);
  gpg(['--passphrase', '', '--quick-gen-key', 'Other <other@test>', 'future-default', 'default', 'never']);
  gpg(['--passphrase', PROT_PASSPHRASE, '--quick-gen-key', 'Prot <prot@test>', 'future-default', 'default', 'never']);
  const exportSecret = (uid: string, passphrase = '', armor = true) =>
    gpg(['--passphrase', passphrase, '--export-secret-keys', ...(armor ? ['-a'] : []), uid]);
  for (const [who, uid] of [
    ['recv', 'recv@test'],
    ['rsa', 'rsa@test'],
    ['other', 'other@test'],
  ] as const) {
    writeFileSync(kf(`${who}.pub`), gpg(['--export', '-a', uid]));
    writeFileSync(kf(`${who}.sec`), exportSecret(uid), { mode: 0o600 });
  }
  writeFileSync(K.recvPubBin, gpg(['--export', 'recv@test']));
  writeFileSync(K.recvSecBin, exportSecret('recv@test', '', false), { mode: 0o600 });
  writeFileSync(K.protPub, gpg(['--export', '-a', 'prot@test']));
  writeFileSync(K.protSec, exportSecret('prot@test', PROT_PASSPHRASE), { mode: 0o600 });
  writeFileSync(K.protPass, `${PROT_PASSPHRASE}\n`);
  writeFileSync(K.bothPub, gpg(['--export', '-a', 'recv@test', 'rsa@test']));
  writeFileSync(K.pass, `${SYM_PASSPHRASE}\n`);
  writeFileSync(K.wrongPass, 'not the passphrase\n');
  // Sanity: armored files are armored, binary ones binary, the protected key is protected.
  expect(readFileSync(K.protSec, 'utf8')).toMatch(/BEGIN PGP PRIVATE KEY BLOCK/);
  expect(readFileSync(K.recvPubBin)[0]! & 0x80).toBe(0x80);
  expect(gpgRun(['--list-packets'], { input: readFileSync(K.protSec) }).stdout.toString()).toMatch(/protected|iter\+salt S2K/);
}, 180_000);

afterAll(() => {
  runSync('gpgconf', ['--kill', 'all'], { env: { ...process.env, GNUPGHOME } });
});

// ---------------------------------------------------------------------------------------------
// 1. Round trips

describe('fspool → fspool: prepare with encodings, queue-write, queue-process', () => {
  const cases: Array<{ name: string; prep: string[]; proc: string[] }> = [
    { name: '--zstd', prep: ['--zstd'], proc: [] },
    { name: '--zstd=19', prep: ['--zstd=19'], proc: [] },
    { name: '--encrypt-to ed25519/cv25519', prep: ['--encrypt-to', K.recvPub], proc: ['--decrypt-key', K.recvSec] },
    { name: '--encrypt-to RSA 3072', prep: ['--encrypt-to', K.rsaPub], proc: ['--decrypt-key', K.rsaSec] },
    { name: '--zstd --encrypt-to, binary key files', prep: ['--zstd', '--encrypt-to', K.recvPubBin], proc: ['--decrypt-key', K.recvSecBin] },
    { name: 'two --encrypt-to, decrypted with the second key alone', prep: ['--encrypt-to', K.recvPub, '--encrypt-to', K.rsaPub], proc: ['--decrypt-key', K.rsaSec] },
    { name: 'a key file holding two keys: both are recipients (decrypt with the first)', prep: ['--encrypt-to', K.bothPub], proc: ['--decrypt-key', K.recvSec] },
    { name: 'a key file holding two keys: both are recipients (decrypt with the second)', prep: ['--encrypt-to', K.bothPub], proc: ['--decrypt-key', K.rsaSec] },
    { name: '--zstd --passphrase-file', prep: ['--zstd', '--passphrase-file', K.pass], proc: ['--passphrase-file', K.pass] },
    { name: 'symmetric packet, processor given a key and a passphrase', prep: ['--passphrase-file', K.pass], proc: ['--decrypt-key', K.recvSec, '--passphrase-file', K.pass] },
    { name: 'public-key packet, processor given a key and a passphrase', prep: ['--encrypt-to', K.recvPub], proc: ['--passphrase-file', K.pass, '--decrypt-key', K.recvSec] },
    {
      name: '--zstd --encrypt-to --sign-with RSA, --require-signature',
      prep: ['--zstd', '--encrypt-to', K.recvPub, '--sign-with', K.rsaSec],
      proc: ['--decrypt-key', K.recvSec, '--require-signature', K.rsaPub],
    },
    { name: '--sign-with only (signed, not encrypted), --require-signature', prep: ['--sign-with', K.recvSec], proc: ['--require-signature', K.recvPub] },
    {
      name: '--zstd --sign-with, one of two accepted signers',
      prep: ['--zstd', '--sign-with', K.recvSec],
      proc: ['--require-signature', K.otherPub, '--require-signature', K.recvPub],
    },
    {
      name: 'protected signing key: --sign-with --key-passphrase-file, symmetric',
      prep: ['--zstd', '--passphrase-file', K.pass, '--sign-with', K.protSec, '--key-passphrase-file', K.protPass],
      proc: ['--passphrase-file', K.pass, '--require-signature', K.protPub],
    },
    { name: 'protected decryption key: --key-passphrase-file', prep: ['--zstd', '--encrypt-to', K.protPub], proc: ['--decrypt-key', K.protSec, '--key-passphrase-file', K.protPass] },
  ];

  for (const [i, c] of cases.entries()) {
    for (const mode of modesOf(i)) {
      it(`${c.name} (--delivery ${mode})`, () => {
        const q = makeQueue();
        const packet = prepPayload(c.prep);
        expect(packet.subarray(0, MAGIC.length).equals(MAGIC), 'the packet is encoded').toBe(false);
        queueWrite(q, packet);
        expectPacket(processOne(q, mode, c.proc), { seq: 1 });
      });
    }
  }

  it('prepare-nop and prepare-fail, encoded: the NOP succeeds without running anything, the Fail fails', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    put(q, ok(fsp(['prepare-nop', '-s', seq, '--zstd', '--encrypt-to', K.recvPub]), 'prepare-nop'));
    put(q, ok(fsp(['prepare-fail', '-s', seq, '--passphrase-file', K.pass]), 'prepare-fail'));
    const base = join(dir, 'seen');
    const r = fsp(['queue-process', '-q', q, '--decrypt-key', K.recvSec, '--passphrase-file', K.pass, ...recv(base)]);
    expect(r.code, r.stderr).toBe(1);
    expect(order(base)).toEqual([]);
    expect(nextseq(q)).toBe('2');
    expect(jobFiles(q)).toHaveLength(1);
    expect(r.stderr).toMatch(/job 2 .*failed/);
  });

  it('stdin-process and stdin-payload read encoded packets from a pipe', () => {
    const packet = prepPayload(['--zstd', '--encrypt-to', K.rsaPub, '--sign-with', K.recvSec]);
    const base = join(tempDir(), 'seen');
    for (const mode of MODES) {
      rmSync(`${base}.order`, { force: true });
      const r = fsp(['stdin-process', '--delivery', mode, '--allow-job-params', '--decrypt-key', K.rsaSec, '--require-signature', K.recvPub, ...recv(base)], { input: packet });
      expect(r.code, r.stderr).toBe(0);
      expect(order(base)).toEqual(['1']);
      expectPacket(seen(base, 1), { seq: 1 });
    }
    const p = fsp(['stdin-payload', '--decrypt-key', K.rsaSec, '--require-signature', K.recvPub], { input: packet });
    expect(p.code, p.stderr).toBe(0);
    expect(sha256(p.stdout)).toBe(sha256(PAYLOAD));
  });
});

describe('gpg / zstd command-line tools → fspool', () => {
  /** A plain packet from TOOL, its CLI-encoded form, and the processor's options. */
  const cases: Array<{ name: string; tool?: string; encode: (plain: Buffer) => Buffer; proc: string[]; small?: boolean }> = [
    { name: 'fspool prepare | zstd', encode: (p) => zstdC(p), proc: [] },
    { name: 'fspl prepare | zstd -19', tool: 'fspl', encode: (p) => zstdC(p, '-19'), proc: [] },
    {
      name: 'two zstd frames back to back',
      encode: (p) => Buffer.concat([zstdC(p.subarray(0, 1000)), zstdC(p.subarray(1000))]),
      proc: [],
    },
    { name: 'fspool prepare | zstd | gpg -e -r (cv25519)', encode: (p) => gpgEncrypt(zstdC(p), '-e', '-r', 'recv@test'), proc: ['--decrypt-key', K.recvSec] },
    { name: 'fspl prepare | zstd | gpg -e -r (RSA)', tool: 'fspl', encode: (p) => gpgEncrypt(zstdC(p), '-e', '-r', 'rsa@test'), proc: ['--decrypt-key', K.rsaSec] },
    { name: 'gpg -e -a (armored, public key)', encode: (p) => gpgEncrypt(p, '-e', '-a', '-r', 'recv@test'), proc: ['--decrypt-key', K.recvSec] },
    {
      name: 'gpg -c -a (armored, symmetric)',
      encode: (p) => gpgEncrypt(p, '--passphrase-file', K.pass, '-c', '-a'),
      proc: ['--passphrase-file', K.pass],
    },
    { name: 'zstd around gpg: prepare | gpg -e | zstd', encode: (p) => zstdC(gpgEncrypt(p, '-e', '-r', 'recv@test')), proc: ['--decrypt-key', K.recvSec] },
    {
      name: 'gpg around gpg: prepare | gpg -e -r recv | gpg -e -r rsa',
      encode: (p) => gpgEncrypt(gpgEncrypt(p, '-e', '-r', 'recv@test'), '-e', '-r', 'rsa@test'),
      proc: ['--decrypt-key', K.recvSec, '--decrypt-key', K.rsaSec],
    },
    {
      name: 'gpg -s -e (signed by RSA, encrypted to cv25519), --require-signature',
      encode: (p) => gpgEncrypt(zstdC(p), '-s', '-u', 'rsa@test', '-e', '-r', 'recv@test'),
      proc: ['--decrypt-key', K.recvSec, '--require-signature', K.rsaPub],
    },
    {
      name: 'gpg -s (signed only, ed25519), --require-signature',
      encode: (p) => gpgEncrypt(p, '-s', '-u', 'recv@test'),
      proc: ['--require-signature', K.recvPub],
    },
    {
      name: 'signed by fspool, then zstd: prepare --sign-with | zstd, --require-signature',
      encode: (p) => zstdC(gpgEncrypt(p, '-s', '-u', 'rsa@test')),
      proc: ['--require-signature', K.rsaPub],
    },
    {
      name: 'signed, then encrypted separately: prepare | gpg -s | gpg -e, --require-signature',
      encode: (p) => gpgEncrypt(gpgEncrypt(p, '-s', '-u', 'rsa@test'), '-e', '-r', 'recv@test'),
      proc: ['--decrypt-key', K.recvSec, '--require-signature', K.rsaPub],
    },
    {
      name: 'gpg -e with gpg\'s own compression (zlib), small payload',
      encode: (p) => gpg(['--trust-model', 'always', '-e', '-r', 'recv@test'], p),
      proc: ['--decrypt-key', K.recvSec],
      small: true,
    },
    {
      name: 'gpg -s -e with compression (zlib) and --require-signature, small payload',
      encode: (p) => gpg(['--trust-model', 'always', '-s', '-u', 'rsa@test', '-e', '-r', 'recv@test'], p),
      proc: ['--decrypt-key', K.recvSec, '--require-signature', K.rsaPub],
      small: true,
    },
  ];
  const SMALL = Buffer.from('a small payload\n');

  for (const [i, c] of cases.entries()) {
    for (const mode of modesOf(i)) {
      it(`${c.name} (--delivery ${mode})`, () => {
        const payload = c.small ? SMALL : PAYLOAD;
        const plain = c.small ? prep(['-s', '-', '-i', '-'], c.tool ?? FSPOOL, { input: SMALL }) : prepPayload([], c.tool ?? FSPOOL);
        expect(plain.subarray(0, MAGIC.length).equals(MAGIC)).toBe(true);
        const q = makeQueue();
        queueWrite(q, c.encode(plain));
        expectPacket(processOne(q, mode, c.proc), { seq: 1, payload, plain, params: c.tool === 'fspl' ? FSPL_PARAMS : PARAMS });
      });
    }
  }

  it('gpg-compressed packet: queue-ls, queue-info and queue-payload read it too', () => {
    const plain = prep(['-s', '-', '-i', '-'], FSPOOL, { input: Buffer.from('zlib inside\n') });
    const q = makeQueue();
    const name = put(q, gpg(['--trust-model', 'always', '-z', '9', '-e', '-r', 'recv@test'], plain));
    const ls = fsp(['queue-ls', '-q', q, '--decrypt-key', K.recvSec]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.toString()).toMatch(new RegExp(`^1 +\\S+ +${name}$`, 'm'));
    const info = fsp(['queue-info', '-q', q, '-j', '1', '--decrypt-key', K.recvSec]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout.toString()).toMatch(/^FSPL_SET_TXT=hello world$/m);
    const pl = fsp(['queue-payload', '-q', q, '-j', '1', '--decrypt-key', K.recvSec]);
    expect(pl.code, pl.stderr).toBe(0);
    expect(pl.stdout.toString()).toBe('zlib inside\n');
  });
});

describe('fspool → gpg / zstd command-line tools and fspl', () => {
  /** fspool's encoding options, and the CLI pipeline that undoes them. */
  const cases: Array<{ name: string; prep: string[]; decode: (b: Buffer) => Buffer; keys: string[] }> = [
    { name: '--zstd | zstd -dc', prep: ['--zstd'], decode: zstdD, keys: [] },
    { name: '--zstd --encrypt-to cv25519 | gpg -d | zstd -dc', prep: ['--zstd', '--encrypt-to', K.recvPub], decode: (b) => zstdD(gpg(['-d'], b)), keys: ['--decrypt-key', K.recvSec] },
    { name: '--encrypt-to RSA | gpg -d', prep: ['--encrypt-to', K.rsaPub], decode: (b) => gpg(['-d'], b), keys: ['--decrypt-key', K.rsaSec] },
    {
      name: '--zstd --passphrase-file | gpg --passphrase-file -d | zstd -dc',
      prep: ['--zstd', '--passphrase-file', K.pass],
      decode: (b) => zstdD(gpg(['--passphrase-file', K.pass, '-d'], b)),
      keys: ['--passphrase-file', K.pass],
    },
    { name: '--sign-with (signed only) | gpg -d', prep: ['--sign-with', K.rsaSec], decode: (b) => gpg(['-d'], b), keys: [] },
  ];

  for (const c of cases) {
    it(`${c.name}: fspl stdin-info/stdin-payload of the result equal fspool's view`, () => {
      const packet = prepPayload(c.prep);
      const plain = c.decode(packet);
      expect(plain.subarray(0, MAGIC.length).equals(MAGIC), 'a plain packet after the CLI decoders').toBe(true);
      const fsplInfoOut = ok(run('fspl', ['stdin-info'], { input: plain }), 'fspl stdin-info');
      const fspoolInfo = fsp(['stdin-info', ...c.keys], { input: packet });
      expect(fspoolInfo.code, fspoolInfo.stderr).toBe(0);
      expect(fspoolInfo.stdout.toString('latin1')).toBe(fsplInfoOut.toString('latin1'));
      expect(fsplInfoOut.toString('latin1')).toMatch(/^FSPL_SEQ=1$/m);
      const pay = ok(run('fspl', ['stdin-payload'], { input: plain }), 'fspl stdin-payload');
      expect(sha256(pay)).toBe(sha256(PAYLOAD));
    });
  }

  it('OpenPGP as GnuPG 2.2 writes it: SEIPD v1 with MDC, no AEAD, no compressed packet; zstd checksum on', () => {
    for (const enc of [['--encrypt-to', K.recvPub], ['--passphrase-file', K.pass], ['--encrypt-to', K.rsaPub, '--sign-with', K.recvSec]]) {
      const packet = prep(['-s', '-', '-i', '-', '--zstd', ...enc], FSPOOL, { input: Buffer.from('x\n') });
      const r = gpgRun(['--list-packets', '--passphrase-file', K.pass], { input: packet });
      expect(r.code, r.stderr).toBe(0);
      const listing = r.stdout.toString();
      expect(listing).toMatch(/:encrypted data packet:\n\s+length: .*\n\s+mdc_method: 2/);
      expect(listing).not.toMatch(/compressed packet|aead encrypted/i);
      expect(listing).not.toMatch(/tag=20\b/);
    }
    const signedOnly = prep(['-s', '-', '--sign-with', K.recvSec]);
    expect(gpgRun(['--list-packets'], { input: signedOnly }).stdout.toString()).not.toMatch(/compressed packet/);
    const z = join(tempDir(), 'z.zst');
    writeFileSync(z, prep(['-s', '-', '-i', PAYLOAD_FILE, '--zstd']));
    const l = run('zstd', ['-lv', z]);
    expect(l.code, l.stderr).toBe(0);
    expect(l.stdout.toString() + l.stderr).toMatch(/Check: XXH64/);
  });

  it('two --encrypt-to: both keys are recipients; gpg decrypts with either', () => {
    const packet = prepPayload(['--encrypt-to', K.recvPub, '--encrypt-to', K.rsaPub]);
    const listing = gpgRun(['--list-packets'], { input: packet }).stdout.toString();
    expect(listing.match(/:pubkey enc packet:/g)).toHaveLength(2);
    expect(sha256(ok(run('fspl', ['stdin-payload'], { input: gpg(['-d'], packet) }), 'fspl'))).toBe(sha256(PAYLOAD));
  });

  it('a signed packet: gpg verifies the signature as good, by the signer\'s key', () => {
    const packet = prepPayload(['--zstd', '--encrypt-to', K.recvPub, '--sign-with', K.rsaSec]);
    const r = gpgRun(['--status-fd', '1', '-o', '/dev/null', '-d'], { input: packet });
    expect(r.code, r.stderr).toBe(0);
    const status = r.stdout.toString('latin1');
    expect(status).toMatch(new RegExp(`^\\[GNUPG:\\] VALIDSIG ${fingerprint('rsa@test')} `, 'm'));
    expect(status).toMatch(/^\[GNUPG:\] GOODMDC/m);
    expect(status).toMatch(/^\[GNUPG:\] DECRYPTION_OKAY/m);
  });

  it('fspl queue-ls / queue-process with -d \'gpg -q -d | zstd -dc\' runs fspool\'s packets', () => {
    const dir = tempDir();
    const q = join(dir, 'q');
    ok(run('fspl', ['queue-init', '-q', q]), 'fspl queue-init');
    const seq = join(dir, 'seq');
    const names = [
      put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--zstd', '--encrypt-to', K.recvPub])),
      put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--zstd', '--encrypt-to', K.rsaPub, '--sign-with', K.recvSec])),
      put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--zstd', '--passphrase-file', K.pass])),
    ];
    // fspl runs the decoder with $SHELL -c, in its own environment: GNUPGHOME must be there.
    const decoder = `gpg -q --batch --pinentry-mode loopback --passphrase-file ${K.pass} -d | zstd -dc`;
    const ls = run('fspl', ['queue-ls', '-q', q, '-d', decoder]);
    expect(ls.code, ls.stderr).toBe(0);
    names.forEach((n, i) => expect(ls.stdout.toString()).toMatch(new RegExp(`^${i + 1} +\\S+ +${n}$`, 'm')));
    const base = join(dir, 'seen');
    const r = run('fspl', ['queue-process', '-q', q, '-d', decoder, '--allow-job-params', ...recv(base)]);
    expect(r.code, r.stderr).toBe(0);
    expect(order(base)).toEqual(['1', '2', '3']);
    for (const s of [1, 2, 3]) expectPacket(seen(base, s), { seq: s });
    expect(nextseq(q)).toBe('4');
  });
});

describe('keys from the default location, protected keys', () => {
  it('FSPOOL_KEYS=DIR: DIR/keys/* and DIR/passphrase are used with no --decrypt-key', () => {
    const dir = tempDir();
    const keys = join(dir, 'conf');
    mkdirSync(join(keys, 'keys'), { recursive: true });
    writeFileSync(join(keys, 'keys', 'recv.asc'), readFileSync(K.recvSec), { mode: 0o600 });
    writeFileSync(join(keys, 'keys', 'rsa.gpg'), gpg(['--passphrase', '', '--export-secret-keys', 'rsa@test']), { mode: 0o600 });
    writeFileSync(join(keys, 'passphrase'), `${SYM_PASSPHRASE}\n`);
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--zstd', '--encrypt-to', K.recvPub]));
    put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--encrypt-to', K.rsaPub]));
    put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--passphrase-file', K.pass]));
    // Without the default location nothing can be read, and each file says why.
    const none = fsp(['queue-ls', '-q', q]);
    expect(none.code).toBe(0);
    expect(none.stderr.trim().split('\n'), none.stderr).toHaveLength(3);
    expect(none.stderr).toMatch(/no key to decrypt it/);
    const env = { FSPOOL_KEYS: keys };
    const ls = fsp(['queue-ls', '-q', q], { env });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stderr).toBe('');
    expect(ls.stdout.toString().trim().split('\n')).toHaveLength(4);
    const base = join(dir, 'seen');
    const r = fsp(['queue-process', '-q', q, '--allow-job-params', ...recv(base)], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(order(base)).toEqual(['1', '2', '3']);
    for (const s of [1, 2, 3]) expectPacket(seen(base, s), { seq: s });
  });

  it('XDG_CONFIG_HOME/fspool/keys and key-passphrase unlock a protected key', () => {
    const dir = tempDir();
    const xdg = join(dir, 'xdg');
    mkdirSync(join(xdg, 'fspool', 'keys'), { recursive: true });
    writeFileSync(join(xdg, 'fspool', 'keys', 'prot.asc'), readFileSync(K.protSec));
    writeFileSync(join(xdg, 'fspool', 'key-passphrase'), `${PROT_PASSPHRASE}\n`);
    const q = makeQueue(dir);
    put(q, prepPayload(['--zstd', '--encrypt-to', K.protPub]));
    const env: NodeJS.ProcessEnv = { XDG_CONFIG_HOME: xdg, FSPOOL_KEYS: '' };
    expectPacket(processOne(q, 'stream', [], { env }), { seq: 1 });
  });

  it('a key file that cannot be used is a configuration error: readers stop (exit 1) with the reason, nothing runs', () => {
    const q = makeQueue();
    const name = put(q, prepPayload(['--zstd', '--encrypt-to', K.recvPub]));
    for (const [args, reason] of [
      [['--decrypt-key', '/nonexistent'], /^Error: --decrypt-key \/nonexistent: no such file or directory \(ENOENT\); check the path; nothing was done$/m],
      [['--decrypt-key', PAYLOAD_FILE], /^Error: \S+ holds no usable OpenPGP key/m],
    ] as Array<[string[], RegExp]>) {
      for (const cmd of [['queue-ls'], ['queue-process', 'true'], ['queue-process', '--require-signature', PAYLOAD_FILE, 'true']]) {
        const r = fsp([cmd[0]!, '-q', q, ...args, ...cmd.slice(1)]);
        expect(r.code, `${cmd[0]} ${args.join(' ')}: ${r.stderr}`).toBe(1);
        expect(r.stderr).toMatch(reason);
        expect(r.stderr).not.toMatch(/cannot read job file/);
      }
    }
    const rs = fsp(['queue-process', '-q', q, '--decrypt-key', K.recvSec, '--require-signature', PAYLOAD_FILE, 'true']);
    expect(rs.code, rs.stderr).toBe(1);
    expect(rs.stderr).toMatch(/^Error: \S+ holds no usable OpenPGP key/m);
    expect(jobFiles(q)).toEqual([name]);
    expect(nextseq(q)).toBe('1');
  });

  it('a protected --decrypt-key: without --key-passphrase-file, or with a wrong one, the reason is given', () => {
    const packet = prepPayload(['--encrypt-to', K.protPub]);
    const without = fsp(['stdin-payload', '--decrypt-key', K.protSec], { input: packet });
    expect(without.code).toBe(1);
    expect(without.stdout.length).toBe(0);
    expect(without.stderr).toMatch(/protected.*--key-passphrase-file/);
    const wrong = fsp(['stdin-payload', '--decrypt-key', K.protSec, '--key-passphrase-file', K.wrongPass], { input: packet });
    expect(wrong.code).toBe(1);
    expect(wrong.stdout.length).toBe(0);
    expect(wrong.stderr).toMatch(/cannot unlock secret key/);
    const right = fsp(['stdin-payload', '--decrypt-key', K.protSec, '--key-passphrase-file', K.protPass], { input: packet });
    expect(right.code, right.stderr).toBe(0);
    expect(sha256(right.stdout)).toBe(sha256(PAYLOAD));
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Listing a mixed queue

describe('queue-ls / queue-info / queue-process of a queue mixing encodings', () => {
  const KEYS = ['--decrypt-key', K.recvSec, '--decrypt-key', K.rsaSec, '--passphrase-file', K.pass];

  /** seq 1..6 readable with KEYS, seq 7 encrypted to a key nobody has. Small payloads except seq 1. */
  function buildMixedQueue() {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    const small = (n: number) => Buffer.from(`payload of job ${n}\n`);
    const p = (enc: string[], n: number, tool = FSPOOL) => prep(['-s', seq, '-i', '-', ...enc], tool, { input: small(n) });
    const names: string[] = [];
    const payloads: Buffer[] = [];
    // 1: plain, 3 MiB
    names.push(put(q, prep(['-s', seq, '-i', PAYLOAD_FILE])));
    payloads.push(PAYLOAD);
    names.push(put(q, p(['--zstd'], 2))); // 2: zstd
    payloads.push(small(2));
    names.push(put(q, gpgEncrypt(p([], 3, 'fspl'), '-e', '-r', 'recv@test'))); // 3: fspl | gpg -e
    payloads.push(small(3));
    names.push(put(q, p(['--zstd', '--encrypt-to', K.recvPub], 4))); // 4: gpg + zstd
    payloads.push(small(4));
    names.push(put(q, gpgEncrypt(p([], 5), '--passphrase-file', K.pass, '-c', '-a'))); // 5: armored, symmetric
    payloads.push(small(5));
    names.push(put(q, zstdC(gpgEncrypt(p([], 6), '-e', '-r', 'rsa@test')))); // 6: zstd around gpg
    payloads.push(small(6));
    const bad = put(q, p(['--zstd', '--encrypt-to', K.otherPub], 7)); // 7: nobody's key
    return { dir, q, names, payloads, bad };
  }
  let built: ReturnType<typeof buildMixedQueue> | undefined;
  /** A fresh copy of the mixed queue for each test: its packets are made (a dozen processes) once. */
  function mixedQueue() {
    built ??= buildMixedQueue();
    const dir = tempDir();
    const q = join(dir, 'q');
    cpSync(built.q, q, { recursive: true });
    return { ...built, dir, q };
  }

  it('queue-ls shows every readable seq; the one with a wrong key gets one stderr line with the reason', () => {
    const { q, names, bad } = mixedQueue();
    const r = fsp(['queue-ls', '-q', q, ...KEYS]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.toString().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +creation timestamp +filename$/);
    expect(lines.slice(1).map((l) => l.split(/ +/)[0])).toEqual(['1', '2', '3', '4', '5', '6']);
    names.forEach((n, i) => expect(lines[i + 1]).toMatch(new RegExp(`^${i + 1} +\\S+ +${n}$`)));
    const err = r.stderr.trimEnd().split('\n');
    expect(err, r.stderr).toHaveLength(1);
    expect(err[0]).toContain(bad);
    expect(err[0]).toMatch(/cannot decrypt OpenPGP packet/);
  });

  it('queue-ls with no keys at all: plain and zstd listed, every encrypted file reported once, with the reason', () => {
    const { q, names, bad } = mixedQueue();
    const r = fsp(['queue-ls', '-q', q]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.toString().trimEnd().split('\n').slice(1);
    expect(lines.map((l) => l.split(/ +/)[0])).toEqual(['1', '2']);
    const err = r.stderr.trimEnd().split('\n');
    expect(err, r.stderr).toHaveLength(5);
    for (const n of [...names.slice(2), bad]) {
      const mine = err.filter((l) => l.includes(n));
      expect(mine, `${n}: ${r.stderr}`).toHaveLength(1);
      expect(mine[0]).toMatch(/encrypted packet and no key to decrypt it/);
    }
  });

  it('queue-info and queue-payload of every readable job', () => {
    const { q, payloads } = mixedQueue();
    for (let n = 1; n <= 6; n++) {
      const info = fsp(['queue-info', '-q', q, '-j', String(n), ...KEYS]);
      expect(info.code, info.stderr).toBe(0);
      const text = info.stdout.toString('latin1');
      expect(text).toMatch(new RegExp(`^FSPL_SEQ=${n}$`, 'm'));
      expect(text).toMatch(/^FSPL_PARAM_2=b c$/m);
      const third = (n === 3 ? FSPL_PARAMS : PARAMS)[2]!.toString('latin1');
      expect(text.split('\n')).toContain(`FSPL_PARAM_3=${third}`);
      expect(text).toMatch(/^FSPL_SET_TXT=hello world$/m);
      const pl = fsp(['queue-payload', '-q', q, '-j', String(n), ...KEYS]);
      expect(pl.code, pl.stderr).toBe(0);
      expect(sha256(pl.stdout), `payload of job ${n}`).toBe(sha256(payloads[n - 1]!));
    }
    const seven = fsp(['queue-info', '-q', q, '-j', '7', ...KEYS]);
    expect(seven.code).toBe(1);
    expect(seven.stderr).toMatch(/unreadable/);
  });

  for (const mode of MODES) {
    it(`queue-process (--delivery ${mode}) runs 1..6 in order, skips the unreadable 7 with a report, and keeps it`, () => {
      const { dir, q, payloads, bad } = mixedQueue();
      const base = join(dir, 'seen');
      const r = fsp(['queue-process', '-q', q, '--delivery', mode, '--allow-job-params', ...KEYS, ...recv(base)]);
      // 1..6 ran; then the due seq may be in the file that cannot be read: a person must look.
      expect(r.code, r.stderr).toBe(1);
      expect(order(base), r.stderr).toEqual(['1', '2', '3', '4', '5', '6']);
      for (let n = 1; n <= 6; n++) expectPacket(seen(base, n), { seq: n, payload: payloads[n - 1]!, params: n === 3 ? FSPL_PARAMS : PARAMS });
      expect(r.stderr).toMatch(new RegExp(`WARN.*cannot read job file \\S*${bad}: cannot decrypt OpenPGP packet`));
      expect(r.stderr).toMatch(/^Error: seq 7 not found, and 1 job file\(s\) that cannot be read could hold it/m);
      expect(jobFiles(q)).toEqual([bad]);
      expect(nextseq(q)).toBe('7');
    });
  }

  it('an unreadable file in the middle: the jobs before it run, then a gap; later jobs wait', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    const one = put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--zstd', '--encrypt-to', K.recvPub]));
    const two = put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--encrypt-to', K.otherPub]));
    const three = put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--encrypt-to', K.recvPub]));
    const base = join(dir, 'seen');
    const r = fsp(['queue-process', '-q', q, '--allow-job-params', '--decrypt-key', K.recvSec, ...recv(base)]);
    expect(r.code, r.stderr).toBe(1);
    expect(order(base)).toEqual(['1']);
    expect(r.stderr).toContain(two);
    expect(r.stderr).toMatch(/^Error: seq 2 not found, and 1 job file\(s\) that cannot be read could hold it/m);
    expect(jobFiles(q)).toEqual([two, three].sort());
    expect(jobFiles(q)).not.toContain(one);
    expect(nextseq(q)).toBe('2');
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Bad packets, both delivery modes

describe('bad packets: no clean EOF, the job fails and stays, the reason is given', () => {
  // 4 MiB random: incompressible, so zstd passes it through in raw blocks and only its content
  // checksum can catch a flipped byte; a cut or flip in the middle leaves 2 MiB of plaintext that
  // a streaming decoder has already handed on.
  const BIG = join(ROOT, 'big4');
  const BIGDATA = randomBytes(4 << 20);
  beforeAll(() => writeFileSync(BIG, BIGDATA));
  const make = (enc: string[]) => prep(['-s', '-', '-i', BIG, ...enc]);
  const half = (b: Buffer) => b.subarray(0, b.length >> 1);
  const mid = (b: Buffer) => flip(b, b.length >> 1);

  interface Bad {
    name: string;
    packet: () => Buffer;
    proc: string[];
    reason: RegExp;
    /** In stream mode the receiver has started and read plaintext before the failure shows. */
    streamsFirst: boolean;
  }
  const DK = ['--decrypt-key', K.recvSec];
  const cases: Bad[] = [
    { name: 'zstd+OpenPGP, truncated', packet: () => half(make(['--zstd', '--encrypt-to', K.recvPub])), proc: DK, reason: /OpenPGP|zstd/i, streamsFirst: true },
    { name: 'zstd only, truncated', packet: () => half(make(['--zstd'])), proc: [], reason: /zstd|frame/i, streamsFirst: true },
    { name: 'OpenPGP only, truncated', packet: () => half(make(['--encrypt-to', K.recvPub])), proc: DK, reason: /OpenPGP/, streamsFirst: true },
    { name: 'symmetric OpenPGP, armored by gpg, truncated', packet: () => half(gpgEncrypt(make([]), '--passphrase-file', K.pass, '-c', '-a')), proc: ['--passphrase-file', K.pass], reason: /OpenPGP|armor/i, streamsFirst: true },
    { name: 'zstd+OpenPGP, a byte flipped mid-ciphertext', packet: () => mid(make(['--zstd', '--encrypt-to', K.recvPub])), proc: DK, reason: /OpenPGP|zstd|checksum|corrupt/i, streamsFirst: true },
    { name: 'zstd only, a byte flipped mid-frame', packet: () => mid(make(['--zstd'])), proc: [], reason: /zstd|checksum|corrupt/i, streamsFirst: true },
    { name: 'OpenPGP only, a byte flipped mid-ciphertext (only the MDC can tell)', packet: () => mid(make(['--encrypt-to', K.recvPub])), proc: DK, reason: /OpenPGP.*(tampered|corrupt|Modification)/, streamsFirst: true },
    { name: 'RSA OpenPGP made by gpg, a byte flipped', packet: () => mid(gpgEncrypt(make([]), '-e', '-r', 'rsa@test')), proc: ['--decrypt-key', K.rsaSec], reason: /OpenPGP.*(tampered|corrupt|Modification)/, streamsFirst: true },
    {
      name: 'unsigned encrypted packet, --require-signature',
      packet: () => make(['--zstd', '--encrypt-to', K.recvPub]),
      proc: [...DK, '--require-signature', K.recvPub],
      reason: /not signed/,
      streamsFirst: false,
    },
    { name: 'plain packet, --require-signature', packet: () => make([]), proc: ['--require-signature', K.recvPub], reason: /not signed/, streamsFirst: false },
    { name: 'zstd-only packet (unsigned), --require-signature', packet: () => make(['--zstd']), proc: ['--require-signature', K.recvPub], reason: /not signed/, streamsFirst: false },
    {
      name: 'symmetric packet (unsigned), --require-signature',
      packet: () => make(['--passphrase-file', K.pass]),
      proc: ['--passphrase-file', K.pass, '--require-signature', K.recvPub],
      reason: /not signed/,
      streamsFirst: false,
    },
    {
      name: 'encrypted and signed by another key, --require-signature',
      packet: () => make(['--zstd', '--encrypt-to', K.recvPub, '--sign-with', K.otherSec]),
      proc: [...DK, '--require-signature', K.recvPub],
      reason: /signature/,
      streamsFirst: false,
    },
    {
      name: 'signed only, by another key (gpg -s), --require-signature',
      packet: () => gpgEncrypt(make([]), '-s', '-u', 'other@test'),
      proc: ['--require-signature', K.recvPub, '--require-signature', K.rsaPub],
      reason: /signature/,
      streamsFirst: false,
    },
    {
      name: 'signed only by the right key, a byte flipped in the signed data, --require-signature',
      packet: () => mid(make(['--sign-with', K.recvSec])),
      proc: ['--require-signature', K.recvPub],
      reason: /signature|OpenPGP/,
      streamsFirst: false,
    },
    {
      name: 'signed by the right key, then truncated, --require-signature',
      packet: () => half(make(['--zstd', '--encrypt-to', K.recvPub, '--sign-with', K.recvSec])),
      proc: [...DK, '--require-signature', K.recvPub],
      reason: /OpenPGP|zstd/i,
      streamsFirst: false,
    },
    {
      name: 'signed only, the trailing signature packet cut off, --require-signature',
      packet: () => {
        const p = make(['--sign-with', K.recvSec]);
        const sig = openpgpPackets(p).find((x) => x.tag === 2)!;
        return p.subarray(0, sig.offset);
      },
      proc: ['--require-signature', K.recvPub],
      reason: /signature/,
      streamsFirst: false,
    },
    {
      name: 'signed only, stripped to its literal data packet, --require-signature',
      packet: () => {
        const p = make(['--sign-with', K.recvSec]);
        const lit = openpgpPackets(p).find((x) => x.tag === 11)!;
        return p.subarray(lit.offset, lit.end);
      },
      proc: ['--require-signature', K.recvPub],
      reason: /not signed/,
      streamsFirst: false,
    },
  ];

  const RECEIVER = 'touch "$0"; cat > "$1"; echo clean-eof > "$2"';

  // A packet that goes bad mid-stream is tried in both modes in every run: in stream mode the
  // receiver has read plaintext when the failure shows, in verified mode it never starts.
  for (const [i, c] of cases.entries()) {
    for (const mode of c.streamsFirst ? MODES : modesOf(i)) {
      it(`${c.name} (--delivery ${mode})`, () => {
        const dir = tempDir();
        const q = makeQueue(dir);
        const packet = c.packet();
        const name = put(q, packet);
        const started = join(dir, 'started');
        const out = join(dir, 'out');
        const marker = join(dir, 'marker');
        const r = fsp(['queue-process', '-q', q, '--delivery', mode, ...c.proc, 'sh', '--', '-c', RECEIVER, started, out, marker], { timeoutMs: 60_000 });
        expect(existsSync(marker), 'the receiver saw a clean EOF').toBe(false);
        if (c.proc.includes('--require-signature')) {
          // What does not prove the signature is no job at all (spec/threat-model.md): it is
          // reported as such and the queue waits for a genuine seq 1.
          expect(r.code, r.stderr).toBe(0);
          expect(r.stderr).toMatch(/WARN fspool: job file .* claims seq 1 but fails --require-signature/);
          expect(r.stderr).not.toMatch(/ERROR/);
        } else {
          expect(r.code, r.stderr).toBe(1);
          expect(r.stderr).toMatch(/ERROR fspool: job 1 .*failed: /);
        }
        expect(r.stderr).toMatch(c.reason);
        expect(jobFiles(q)).toEqual([name]);
        expect(readFileSync(join(q, 'jobs', name)).equals(packet), 'job file unchanged').toBe(true);
        expect(nextseq(q)).toBe('1');
        if (mode === 'verified' || !c.streamsFirst) {
          expect(existsSync(started), 'the receiver was started').toBe(false);
        } else {
          // The receiver ran and was killed before EOF: the path under test was exercised.
          expect(existsSync(started)).toBe(true);
        }
        expect(spoolTmp(q), 'temp files left in QUEUE/fspool/tmp').toEqual([]);
      });
    }
  }

  // A packet whose header cannot be decrypted is an unreadable file (spec/encoding.md,
  // job-lifecycle.md): queue-process reports it and waits (exit 0); stdin-process fails (exit 1).
  const undecryptable: Array<{ name: string; packet: () => Buffer; proc: string[]; reason: RegExp }> = [
    { name: 'encrypted to another key', packet: () => make(['--zstd', '--encrypt-to', K.otherPub]), proc: DK, reason: /cannot decrypt OpenPGP packet/ },
    { name: 'encrypted to RSA, only the cv25519 key given', packet: () => make(['--encrypt-to', K.rsaPub]), proc: DK, reason: /cannot decrypt OpenPGP packet/ },
    { name: 'wrong passphrase', packet: () => make(['--passphrase-file', K.pass]), proc: ['--passphrase-file', K.wrongPass], reason: /cannot decrypt OpenPGP packet/ },
    {
      // gpg -c derives the session key from the passphrase itself: a wrong one yields a key, and
      // only the plaintext shows it is wrong: garbage, whose first byte now and then reads as
      // the start of a literal data packet, and then it is the packet inside, or what follows
      // it, that is no packet (spec/encoding.md, the three messages).
      name: 'gpg -c, wrong passphrase',
      packet: () => gpgEncrypt(make([]), '--passphrase-file', K.pass, '-c'),
      proc: ['--passphrase-file', K.wrongPass],
      reason: /(cannot decrypt OpenPGP packet: .*|not a filespooler packet after openpgp \(bad magic; |or was tampered with, or a )wrong key or passphrase/,
    },
    { name: 'no key at all', packet: () => make(['--encrypt-to', K.recvPub]), proc: [], reason: /encrypted packet and no key to decrypt it/ },
  ];
  for (const [i, c] of undecryptable.entries()) {
    for (const mode of modesOf(i)) {
      it(`${c.name} (--delivery ${mode}): never run; queue-process reports it as unreadable and keeps it; stdin-process fails`, () => {
        const dir = tempDir();
        const q = makeQueue(dir);
        const packet = c.packet();
        const name = put(q, packet);
        const started = join(dir, 'started');
        const out = join(dir, 'out');
        const marker = join(dir, 'marker');
        const r = fsp(['queue-process', '-q', q, '--delivery', mode, ...c.proc, 'sh', '--', '-c', RECEIVER, started, out, marker]);
        // The due seq may be in that file: exit 1, so that cron (and a person) hears of it.
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(new RegExp(`WARN fspool: cannot read job file \\S*${name}: .*`));
        expect(r.stderr).toMatch(c.reason);
        expect(r.stderr).toMatch(/^Error: seq 1 not found, and 1 job file\(s\) that cannot be read could hold it/m);
        expect(existsSync(started)).toBe(false);
        expect(jobFiles(q)).toEqual([name]);
        expect(readFileSync(join(q, 'jobs', name)).equals(packet)).toBe(true);
        expect(nextseq(q)).toBe('1');
        const s = fsp(['stdin-process', '--delivery', mode, ...c.proc, 'sh', '--', '-c', RECEIVER, started, out, marker], { input: packet });
        expect(s.code, s.stderr).toBe(1);
        expect(s.stderr).toMatch(c.reason);
        expect(existsSync(started)).toBe(false);
      });
    }
  }

  it('a decrypted plaintext that begins like a literal data packet and then fails names a wrong key or passphrase: never run', async () => {
    // What a wrong gpg -c passphrase makes now and then, made on purpose: a literal data packet
    // holding a good fspool packet, then 70 KiB of padding packets, sealed under a passphrase.
    const openpgp = await import('openpgp');
    const inner = ok(fsp(['prepare', '-s', '-', '--', 'x']), 'prepare');
    const padding = encodePacket({ tag: 21, body: Buffer.alloc(70 * 1024) });
    const plaintext = Buffer.concat([encodePacket({ tag: 11, body: literalBody(inner) }), padding]);
    const key = randomBytes(32);
    const esk = Buffer.from((await openpgp.encryptSessionKey({ data: key, algorithm: 'aes256', passwords: [SYM_PASSPHRASE], format: 'binary' })) as Uint8Array);
    const packet = Buffer.concat([esk, sealSeipd(plaintext, key)]);
    const dir = tempDir();
    const started = join(dir, 'started');
    const r = fsp(['stdin-process', '--passphrase-file', K.pass, '--delivery', 'verified', 'sh', '--', '-c', `touch ${started}`], { input: packet });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/OpenPGP packet is corrupt or was tampered with, or a wrong key or passphrase decrypted it: more than 64 KiB after the literal data packet/);
    expect(existsSync(started)).toBe(false);
  });

  it('queue-payload, stdin-payload and stdin-process with --require-signature: nothing written or run for a bad signature', () => {
    const packets = [
      make(['--zstd', '--encrypt-to', K.recvPub, '--sign-with', K.otherSec]), // signed by another key
      mid(make(['--sign-with', K.recvSec])), // signed data tampered with
      make(['--zstd', '--encrypt-to', K.recvPub]), // not signed
    ];
    for (const p of packets) {
      const dir = tempDir();
      const q = makeQueue(dir);
      put(q, p);
      const qp = fsp(['queue-payload', '-q', q, '-j', '1', ...DK, '--require-signature', K.recvPub]);
      expect(qp.code).toBe(1);
      expect(qp.stdout.length, 'queue-payload wrote before the signature verified').toBe(0);
      expect(qp.stderr).toMatch(/signature|signed/);
      const sp = fsp(['stdin-payload', ...DK, '--require-signature', K.recvPub], { input: p });
      expect(sp.code).toBe(1);
      expect(sp.stdout.length, 'stdin-payload wrote before the signature verified').toBe(0);
      expect(sp.stderr).toMatch(/signature|signed/);
      const started = join(dir, 'started');
      const pr = fsp(['stdin-process', ...DK, '--require-signature', K.recvPub, 'sh', '--', '-c', 'touch "$0"; cat > /dev/null', started], { input: p });
      expect(pr.code).toBe(1);
      expect(existsSync(started), 'stdin-process started the command').toBe(false);
      expect(pr.stderr).toMatch(/signature|signed/);
    }
  });

  it('a zstd failure says it is zstd (the bare library message does not name the layer)', () => {
    const q = makeQueue();
    put(q, mid(make(['--zstd'])));
    const r = fsp(['queue-process', '-q', q, 'sh', '--', '-c', 'cat > /dev/null']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERROR fspool: job 1 .*failed: .*zstd/i);
    const t = fsp(['stdin-payload'], { input: half(make(['--zstd'])) });
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/zstd/i);
  });

  it('a zstd frame that wants a 128 MiB window (zstd --long=27) is refused, with the way around it; -d takes it', () => {
    const plain = make([]);
    const long = zstdC(plain, '--long=27');
    const q = makeQueue();
    // queue-write would refuse it (it cannot read its header); a transport could deliver it.
    const name = put(q, long);
    const ls = fsp(['queue-ls', '-q', q]);
    expect(ls.stderr).toMatch(new RegExp(`WARN fspool: cannot read job file \\S*${name}: zstd frame needs a window over 8 MiB .*zstd -dc --long=31`));
    const r = fsp(['queue-process', '-q', q, '-d', 'zstd -dc --long=31', 'sh', '--', '-c', 'cat > "$0"', `${q}.out`]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(`${q}.out`).equals(fsp(['stdin-payload'], { input: plain }).stdout)).toBe(true);
    // Up to level 19 (an 8 MiB window) is read in-process.
    const q19 = makeQueue();
    put(q19, zstdC(plain, '-19'));
    expect(fsp(['queue-ls', '-q', q19]).stdout.toString()).toMatch(/^1 /m);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Header trust with --require-signature in stream mode

describe('--require-signature, --delivery stream: verified first, then run once', () => {
  it('a signed packet runs once; params and env arrive', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--zstd', '--encrypt-to', K.recvPub, '--sign-with', K.rsaSec]));
    put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--sign-with', K.rsaSec]));
    const base = join(dir, 'seen');
    // A receiver that counts its runs in a file of its own, beside the dumping one.
    const r = fsp(['queue-process', '-q', q, '--delivery', 'stream', '--allow-job-params', '--decrypt-key', K.recvSec, '--require-signature', K.rsaPub, ...recv(base)]);
    expect(r.code, r.stderr).toBe(0);
    expect(order(base), 'each job ran exactly once').toEqual(['1', '2']);
    expectPacket(seen(base, 1), { seq: 1 });
    expectPacket(seen(base, 2), { seq: 2 });
    expect(jobFiles(q)).toEqual([]);
    expect(nextseq(q)).toBe('3');
  });

  it('a signed packet followed by an unsigned one: the first runs once, the second never', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--encrypt-to', K.recvPub, '--sign-with', K.recvSec]));
    const second = put(q, prep(['-s', seq, '-i', PAYLOAD_FILE, '--encrypt-to', K.recvPub]));
    const base = join(dir, 'seen');
    const r = fsp(['queue-process', '-q', q, '--allow-job-params', '--decrypt-key', K.recvSec, '--require-signature', K.recvPub, ...recv(base)]);
    // The unsigned one is no job: the queue waits for a genuine seq 2.
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/job file .* claims seq 2 but fails --require-signature \(.*not signed.*\), whatever seq it claims; not run/);
    expect(order(base)).toEqual(['1']);
    expectPacket(seen(base, 1), { seq: 1 });
    expect(jobFiles(q)).toEqual([second]);
    expect(nextseq(q)).toBe('2');
  });
});

// ---------------------------------------------------------------------------------------------
// The scan of an encoded packet must not disturb the job that runs next

describe('reading headers of zstd packets during the scan', () => {
  // Each run gets a fresh queue: a header cache (QUEUE/fspool/state.db) would spare the scan
  // from decoding the zstd packet again, and the scan is what is under test. The failure is a
  // race (a read left in flight by the scan lands on a reused fd number), seen in roughly one
  // run in ten to one in three depending on load: many runs (more in the long mode), each of a
  // few processes, which take seconds on a loaded machine.
  const RUNS = LONG ? 30 : 8;

  it(`a scanned zstd packet never takes bytes of the plain job run next (${RUNS} fresh queues)`, () => {
    const bad: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      const dir = tempDir();
      const q = makeQueue(dir);
      const seq = join(dir, 'seq');
      put(q, prep(['-s', seq, '-i', PAYLOAD_FILE])); // 1: plain, zero-copy delivery
      put(q, prep(['-s', seq, '-i', '-', '--zstd'], FSPOOL, { input: Buffer.from('two\n') })); // 2: zstd
      const out = join(dir, 'out');
      const r = fsp(['queue-process', '-q', q, '-n', '1', 'sh', '--', '-c', 'cat > "$0"', out]);
      const got = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
      if (r.code !== 0 || !got.equals(PAYLOAD)) bad.push(`run ${i}: exit ${r.code}, receiver got ${got.length} of ${PAYLOAD.length} bytes; ${r.stderr.trim()}`);
    }
    expect(bad).toEqual([]);
  }, RUNS * 20_000);

  it(`a small zstd packet is read reliably by queue-process (${RUNS} fresh queues)`, () => {
    const bad: string[] = [];
    const packet = prep(['-s', '-', '-i', '-', '--zstd'], FSPOOL, { input: Buffer.from('small\n') });
    for (let i = 0; i < RUNS; i++) {
      const dir = tempDir();
      const q = makeQueue(dir);
      put(q, packet);
      const out = join(dir, 'out');
      const r = fsp(['queue-process', '-q', q, 'sh', '--', '-c', 'cat > "$0"', out]);
      const got = existsSync(out) ? readFileSync(out, 'utf8') : '';
      if (r.code !== 0 || got !== 'small\n') bad.push(`run ${i}: exit ${r.code}, got ${JSON.stringify(got)}; ${r.stderr.trim()}`);
    }
    expect(bad).toEqual([]);
  }, RUNS * 20_000);
});

// ---------------------------------------------------------------------------------------------
// 6. The sender: a bad key file costs no sequence number

describe('prepare with a bad key or passphrase file: exit 1, nothing written, no seq consumed', () => {
  const bad: Array<{ name: string; args: () => string[]; reason: RegExp }> = [
    { name: '--encrypt-to /nonexistent', args: () => ['--encrypt-to', '/nonexistent'], reason: /cannot read key file \/nonexistent/ },
    { name: '--encrypt-to a file that is no key', args: () => ['--encrypt-to', PAYLOAD_FILE], reason: /no usable OpenPGP key/ },
    { name: 'a good and a missing --encrypt-to', args: () => ['--zstd', '--encrypt-to', K.recvPub, '--encrypt-to', '/nonexistent'], reason: /nonexistent/ },
    { name: '--sign-with /nonexistent', args: () => ['--sign-with', '/nonexistent'], reason: /cannot read key file/ },
    { name: '--sign-with a public key', args: () => ['--sign-with', K.recvPub], reason: /no usable OpenPGP key|private|secret/i },
    { name: '--sign-with a protected key, no --key-passphrase-file', args: () => ['--sign-with', K.protSec], reason: /protected.*--key-passphrase-file/ },
    { name: '--sign-with a protected key, wrong passphrase', args: () => ['--sign-with', K.protSec, '--key-passphrase-file', K.wrongPass], reason: /cannot unlock/ },
    { name: '--passphrase-file /nonexistent', args: () => ['--passphrase-file', '/nonexistent'], reason: /cannot read passphrase file/ },
  ];
  for (const c of bad) {
    it(c.name, () => {
      const dir = tempDir();
      const seq = join(dir, 'seq');
      ok(fsp(['prepare-set-next', '-s', seq, '5']), 'prepare-set-next');
      for (const cmd of [['prepare', '-i', PAYLOAD_FILE], ['prepare-nop'], ['prepare-fail']]) {
        const r = fsp([cmd[0]!, '-s', seq, ...cmd.slice(1), ...c.args()]);
        expect(r.code, `${cmd[0]}: ${r.stderr}`).toBe(1);
        expect(r.stdout.length).toBe(0);
        expect(r.stderr).toMatch(c.reason);
        expect(r.stderr.trim().split('\n'), 'one line').toHaveLength(1);
        expect(ok(fsp(['prepare-get-next', '-s', seq]), 'prepare-get-next').toString().trim()).toBe('5');
      }
    });
  }

  it('--zstd=20 is a usage error (exit 2) and consumes nothing', () => {
    const seq = join(tempDir(), 'seq');
    ok(fsp(['prepare-set-next', '-s', seq, '5']), 'prepare-set-next');
    const r = fsp(['prepare', '-s', seq, '--zstd=20']);
    expect(r.code).toBe(2);
    expect(r.stdout.length).toBe(0);
    expect(ok(fsp(['prepare-get-next', '-s', seq]), 'prepare-get-next').toString().trim()).toBe('5');
  });

  it('a good key file: the seq is consumed once the packet is written', () => {
    const seq = join(tempDir(), 'seq');
    ok(fsp(['prepare-set-next', '-s', seq, '5']), 'prepare-set-next');
    const packet = prep(['-s', seq, '--zstd', '--encrypt-to', K.recvPub]);
    expect(ok(fsp(['prepare-get-next', '-s', seq]), 'prepare-get-next').toString().trim()).toBe('6');
    const info = fsp(['stdin-info', '--decrypt-key', K.recvSec], { input: packet });
    expect(info.stdout.toString()).toMatch(/^FSPL_SEQ=5$/m);
  });
});

// ---------------------------------------------------------------------------------------------
// 5. A big payload (1 GiB in the long mode) through zstd + OpenPGP, bounded memory

describe(`${LONG ? '1 GiB' : '256 MiB'} payload through zstd + OpenPGP`, () => {
  // 1 GiB in the long mode; 256 MiB by default, still well over the memory limits below, so a
  // decoder that held the payload would fail them.
  const SIZE = LONG ? 1 << 30 : 256 << 20;
  // Streaming means memory does not grow with the payload. The processor is held to the
  // issue's target, 100 MB peak RSS in both delivery modes (measured 86-92 MB, here and in bench
  // enc-1g). The sender has no target in the issue; it is held to 150 MB (measured 88-95 MB:
  // zstd's two workers and their 2 MiB jobs).
  const PROCESSOR_LIMIT_KB = Math.floor(100e6 / 1024); // VmHWM is in KiB
  const SENDER_LIMIT_KB = Math.floor(150e6 / 1024);
  const mb = (kb: number) => ((kb * 1024) / 1e6).toFixed(0);
  const dir = tempDir('fspool-enc-big-');
  const input = join(dir, 'input');
  const packetFile = join(dir, 'packet');
  let digest = '';

  afterAll(() => {
    rmSync(input, { force: true });
    rmSync(packetFile, { force: true });
  });

  /** Max VmHWM / VmRSS of a live process, sampled every 50 ms. */
  function sampleMemory(pid: number) {
    let hwm = 0;
    let rss = 0;
    const read = () => {
      try {
        const s = readFileSync(`/proc/${pid}/status`, 'latin1');
        const h = /^VmHWM:\s+(\d+) kB/m.exec(s);
        const r = /^VmRSS:\s+(\d+) kB/m.exec(s);
        if (h) hwm = Math.max(hwm, Number(h[1]));
        if (r) rss = Math.max(rss, Number(r[1]));
      } catch {
        /* exited */
      }
    };
    read();
    const t = setInterval(read, 50);
    return {
      stop: () => {
        clearInterval(t);
        return { hwm, rss };
      },
    };
  }

  /** 1 MiB random and 1 MiB of a repeated pattern, alternately; returns the SHA-256. */
  function writeInput(path: string, size: number): string {
    const fd = openSync(path, 'w');
    const h = createHash('sha256');
    const pattern = Buffer.alloc(1 << 20, 'fspool: one GiB through zstd and OpenPGP. ');
    try {
      for (let i = 0; i * (1 << 20) < size; i++) {
        const b = i % 2 === 0 ? randomBytes(1 << 20) : pattern;
        h.update(b);
        let w = 0;
        while (w < b.length) w += writeSync(fd, b, w);
      }
    } finally {
      closeSync(fd);
    }
    return h.digest('hex');
  }

  it(`prepare -i ${SIZE >> 20} MiB --zstd --encrypt-to: written, streaming, peak RSS ≤ 150 MB`, async () => {
    digest = writeInput(input, SIZE);
    const fd = openSync(packetFile, 'w');
    const child = spawn(FSPOOL, ['prepare', '-s', '-', '-i', input, '--zstd', '--encrypt-to', K.recvPub], { stdio: ['ignore', fd, 'pipe'], env: ENV });
    closeSync(fd);
    const err: Buffer[] = [];
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const mem = sampleMemory(child.pid!);
    const t0 = Date.now();
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    const { hwm, rss } = mem.stop();
    const secs = (Date.now() - t0) / 1000;
    console.log(`[encoding] ${SIZE >> 20} MiB prepare --zstd --encrypt-to: ${secs.toFixed(1)} s, peak RSS ${mb(hwm)} MB (VmHWM), max sampled VmRSS ${mb(rss)} MB`);
    expect(code, Buffer.concat(err).toString()).toBe(0);
    const head = readFileSync(packetFile).subarray(0, 2);
    expect(head[0]! & 0x80).toBe(0x80); // an OpenPGP packet
    expect(hwm, 'sender peak RSS (kB)').toBeLessThanOrEqual(SENDER_LIMIT_KB);
    rmSync(input);
  }, 300_000);

  for (const mode of MODES) {
    it(`queue-process --delivery ${mode} into sha256sum: byte-exact, peak RSS ≤ 100 MB, no temp file left`, async () => {
      expect(digest, 'the packet was made').not.toBe('');
      const q = makeQueue(tempDir('fspool-enc-bigq-'));
      const name = `fspl-${randomUUID()}.fspl`;
      linkSync(packetFile, join(q, 'jobs', name));
      const out = join(q, '..', 'out');
      // The receiver's parent is the fspool (node) process: it records that pid and its VmHWM
      // after the whole payload went through, beside the sampling from outside.
      const script = 'echo $PPID > "$0.ppid"; sha256sum > "$0"; grep VmHWM /proc/$PPID/status > "$0.hwm"';
      const t0 = Date.now();
      const run = runAsync(FSPOOL, ['queue-process', '-q', q, '--delivery', mode, '--decrypt-key', K.recvSec, 'sh', '--', '-c', script, out], { env: ENV });
      const mem = sampleMemory(run.pid);
      const r = await run.done;
      const { hwm, rss } = mem.stop();
      const secs = (Date.now() - t0) / 1000;
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(out, 'utf8').split(' ')[0]).toBe(digest);
      expect(Number(readFileSync(`${out}.ppid`, 'utf8').trim())).toBe(run.pid);
      const atEnd = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`${out}.hwm`, 'utf8'))?.[1]);
      const peak = Math.max(hwm, atEnd);
      console.log(`[encoding] ${SIZE >> 20} MiB queue-process --delivery ${mode}: ${secs.toFixed(1)} s, peak RSS ${mb(peak)} MB (VmHWM), max sampled VmRSS ${mb(rss)} MB`);
      expect(jobFiles(q)).toEqual([]);
      expect(nextseq(q)).toBe('2');
      expect(spoolTmp(q)).toEqual([]);
      expect(peak, `fspool peak RSS (kB), --delivery ${mode}`).toBeLessThanOrEqual(PROCESSOR_LIMIT_KB);
    }, 300_000);
  }
});
