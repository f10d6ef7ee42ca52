// The OpenPGP fast path (src/codec/seipd.ts, pgpFraming.ts) parses untrusted input by hand. Here
// it is checked differentially against openpgp.js, the library it stands in for: for mutated
// messages (bit flips, truncations, extensions, length fields that lie or take another valid
// form, packets reordered, dropped, repeated or inserted; outside the encryption and, sealed
// again with a good MDC, inside it), fspool's OpenPGP layer (src/codec/openpgp.ts, which takes
// the fast path for the shapes it knows and hands the rest to openpgp.js) must give the same
// verdict as openpgp.js reading the whole message at once, the same plaintext, and the same
// signature verdicts, in every chunking of the input.
//
// The default suite runs a fixed seed. `npm run soak:openpgp` runs 20,000 cases of a random seed;
// FSPOOL_DIFF_RUNS=N and FSPOOL_DIFF_SEED=S choose, and FSPOOL_DIFF_PATH=P (with the seed) replays
// the failing case fast-check reports. A case that runs over 30 s fails as a hang.
import { randomBytes } from 'node:crypto';
import { deflateRawSync, deflateSync } from 'node:zlib';
import fc from 'fast-check';
import type { PrivateKey } from 'openpgp';
import { beforeAll, describe, expect, it } from 'vitest';
import { type DecryptionMaterial, type Keyring, openpgp as loadOpenpgp } from '../src/codec/keys.js';
import { openpgpLayer } from '../src/codec/openpgp.js';
import { openLiteral, openSeipd } from '../src/codec/seipd.js';
import { sniff } from '../src/codec/sniff.js';
import { filler } from './helpers/bytes.js';
import { encodePacket, type Form, literalBody, sealSeipd, splitPackets } from './helpers/pgpSurgery.js';

type OpenPGP = typeof import('openpgp');

const RUNS = Number(process.env.FSPOOL_DIFF_RUNS ?? 400);
const SEED = process.env.FSPOOL_DIFF_SEED === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.FSPOOL_DIFF_SEED ?? 20261205);

let pgp: OpenPGP;
/** The receiver's key (decrypts; one of the accepted signers). */
let alice: PrivateKey;
/** Another accepted signer. */
let bob: PrivateKey;
/** A signer nobody accepts. */
let carol: PrivateKey;
let material: DecryptionMaterial;
const PASSWORD = 'correct horse';

/** The same key material fspool would load, as a Keyring. */
const ring = (m: DecryptionMaterial) => ({ load: async () => m, requiresSignature: m.verificationKeys.length > 0 }) as unknown as Keyring;

/** `b` in chunks of the given sizes, in turn. */
async function* chunked(b: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  for (let at = 0, i = 0; at < b.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield Buffer.from(b.subarray(at, at + n));
    at += n;
  }
}

interface Verdict {
  ok: boolean;
  data?: Buffer;
  /** Each signature: verified or not, sorted (openpgp.js and fspool may list them in other orders). */
  sigs?: boolean[];
  error?: string;
}

const ENCRYPTED_TAGS = new Set([1, 3, 9, 18, 20]);
const tagOf = (b: number) => (b & 0x40 ? b & 0x3f : (b & 0x3c) >> 2);

const isArmored = (b: Buffer) => b.subarray(0, 64).toString('latin1').trimStart().startsWith('-----');

/** The binary message: `b`, or what its armor holds (undefined if openpgp.js cannot undo it). */
async function binaryOf(b: Buffer): Promise<Buffer | undefined> {
  if (!isArmored(b)) return b;
  try {
    const { data, type } = await pgp.unarmor(b.toString('latin1'));
    return type === pgp.enums.armor.message ? Buffer.from(data as unknown as Uint8Array) : undefined;
  } catch {
    return undefined;
  }
}

/** openpgp.js on the whole message at once, with its default (safe) configuration. */
async function reference(armored: Buffer, m: DecryptionMaterial): Promise<Verdict> {
  try {
    const bytes = await binaryOf(armored);
    if (!bytes) throw new Error('not armor of a message');
    const message = await pgp.readMessage({ binaryMessage: bytes });
    const encrypted = ENCRYPTED_TAGS.has(tagOf(bytes[0]!));
    let result;
    if (encrypted) {
      // fspool's choice (src/codec/openpgp.ts): the keys for a message to public keys, else the passwords.
      const toKeys = message.getEncryptionKeyIDs().length > 0 && m.decryptionKeys.length > 0;
      result = await pgp.decrypt({
        message,
        ...(toKeys ? { decryptionKeys: m.decryptionKeys } : { passwords: m.passwords }),
        verificationKeys: m.verificationKeys,
        format: 'binary',
      });
    } else {
      result = await pgp.verify({ message, verificationKeys: m.verificationKeys, format: 'binary' });
    }
    const data = await readAll(result.data as Uint8Array | ReadableStream<Uint8Array>);
    const sigs = await Promise.all(result.signatures.map((s) => s.verified.then(() => true, () => false)));
    return { ok: true, data, sigs: sigs.sort() };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/** fspool's OpenPGP layer, fed `bytes` in chunks of `sizes`. */
async function viaFspool(bytes: Buffer, sizes: number[], m: DecryptionMaterial): Promise<Verdict> {
  try {
    const layer = await openpgpLayer(chunked(bytes, sizes), bytes.subarray(0, 64), ring(m));
    const parts: Buffer[] = [];
    for await (const b of layer.plaintext) parts.push(b);
    const verdicts = await layer.signatures();
    return { ok: true, data: Buffer.concat(parts), sigs: verdicts.map((v) => v === undefined).sort() };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/**
 * Which of fspool's paths `bytes` takes: the fast path ('fast'), the fast path's decryption with
 * openpgp.js reading the message inside ('inner'), or openpgp.js alone ('other').
 */
async function pathOf(armored: Buffer, m: DecryptionMaterial): Promise<'fast' | 'inner' | 'other' | 'threw'> {
  try {
    const bytes = await binaryOf(armored);
    if (!bytes || bytes.length === 0) return 'threw';
    const tag = tagOf(bytes[0]!);
    const opened = tag === 1 || tag === 3 ? await openSeipd(chunked(bytes, [4096]), pgp, m) : await openLiteral(chunked(bytes, [4096]), pgp, m);
    if (opened.kind === 'other') return 'other';
    // Unwrapped, or decrypted with something else inside (openpgp.js reads that).
    return opened.literal ? 'fast' : 'inner';
  } catch {
    return 'threw';
  }
}

// ---------------------------------------------------------------------------------------------
// Messages

/** A signed message as openpgp.js writes it (one-pass signatures, literal, signatures). */
async function signed(data: Buffer, keys: PrivateKey[], stream: boolean): Promise<Buffer> {
  const message = await pgp.createMessage({ binary: stream ? streamOf(data) : data, format: 'binary' });
  const out = await pgp.sign({ message, signingKeys: keys, format: 'binary', config: { preferredCompressionAlgorithm: pgp.enums.compression.uncompressed } });
  return readAll(out as unknown as Uint8Array | ReadableStream<Uint8Array>);
}

function streamOf(data: Buffer): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(c) {
      for (let at = 0; at < data.length; at += 3000) c.enqueue(data.subarray(at, at + 3000));
      c.close();
    },
  });
}

async function readAll(x: Uint8Array | ReadableStream<Uint8Array>): Promise<Buffer> {
  if (x instanceof Uint8Array) return Buffer.from(x);
  const parts: Buffer[] = [];
  for await (const b of x as unknown as AsyncIterable<Uint8Array>) parts.push(Buffer.from(b));
  return Buffer.concat(parts);
}

/** Session key packets made once per recipient kind: sealing is then only AES and SHA-1. */
interface Sealer {
  esk: Buffer;
  key: Buffer;
  cipher: string;
}
const sealers: Record<'key' | 'password', Sealer> = {} as never;

/** Encrypt `inner` (any bytes) as one SEIPD v1 packet with a good MDC, as fspool and gpg write it. */
function seal(inner: Buffer, to: 'key' | 'password', form: Form): Buffer {
  const s = sealers[to];
  return Buffer.concat([s.esk, sealSeipd(inner, s.key, s.cipher, form)]);
}

/**
 * `compressed+encrypted`: a signed message in a compressed packet, encrypted, as gpg writes
 * by default (openpgp.js reads it, after the fast path decrypted it). `aead`: SEIPD v2, which
 * openpgp.js decrypts itself.
 */
type Kind = 'encrypted' | 'symmetric' | 'signed' | 'signed+encrypted' | 'signed+symmetric' | 'literal' | 'compressed+encrypted' | 'aead';
const KINDS: Kind[] = ['encrypted', 'symmetric', 'signed', 'signed+encrypted', 'signed+symmetric', 'literal', 'compressed+encrypted', 'aead'];
const SIZES = [0, 1, 17, 700, 5000];
/** Who signs a signed message: an accepted key, two, one nobody accepts, or an accepted key and an unknown one. */
const SIGNERS = ['alice', 'alice+bob', 'carol', 'alice+carol'] as const;

/** The plaintext OpenPGP messages (inside the encryption, or the whole message): by kind of signing, size, framing. */
const plainMessages = new Map<string, Buffer>();

function plainMessage(signedBy: (typeof SIGNERS)[number] | 'none', size: number, stream: boolean): Buffer {
  return plainMessages.get(`${signedBy}/${size}/${stream}`)!;
}

/** A compressed packet around `msg`: uncompressed (algorithm 0), ZIP (raw deflate) or ZLIB. */
function compressed(msg: Buffer, algorithm: number): Buffer {
  const body = algorithm === 0 ? msg : algorithm === 1 ? deflateRawSync(msg) : deflateSync(msg);
  return encodePacket({ tag: 8, body: Buffer.concat([Buffer.from([algorithm]), body]) });
}

/** SEIPD v2 messages (AEAD), by size; made once, they are costly to make. */
const aeadMessages = new Map<number, Buffer>();

// ---------------------------------------------------------------------------------------------
// Mutations

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  /** A flip near a packet's start, where its header and the literal packet's fields are. */
  | { op: 'flipNear'; packet: number; offset: number; bit: number }
  | { op: 'truncate'; at: number }
  | { op: 'extend'; bytes: Uint8Array }
  | { op: 'insert'; at: number; packet: { tag: number; body: Uint8Array } }
  | { op: 'lie'; packet: number; delta: number }
  | { op: 'form'; packet: number; form: Form }
  | { op: 'swap'; a: number; b: number }
  | { op: 'drop'; packet: number }
  | { op: 'dup'; packet: number; at: number };

const formArb: fc.Arbitrary<Form> = fc.oneof(
  fc.constant<Form>({ kind: 'new' }),
  fc.constant<Form>({ kind: 'new5' }),
  fc.constantFrom<Form>({ kind: 'old', bytes: 1 }, { kind: 'old', bytes: 2 }, { kind: 'old', bytes: 4 }),
  fc.constant<Form>({ kind: 'oldIndeterminate' }),
  fc.integer({ min: 0, max: 12 }).map<Form>((power) => ({ kind: 'partial', power })),
);

/** Packets worth inserting: a marker, padding, unknown tags, another literal, one-pass or signature packet, anything. */
const packetArb = fc.oneof(
  fc.constant({ tag: 10, body: new Uint8Array(Buffer.from('PGP')) }),
  fc.record({ tag: fc.constant(21), body: fc.uint8Array({ maxLength: 40 }) }),
  fc.record({ tag: fc.integer({ min: 0, max: 63 }), body: fc.uint8Array({ maxLength: 40 }) }),
  fc.record({ tag: fc.constant(11), body: fc.uint8Array({ maxLength: 30 }).map((d) => new Uint8Array(literalBody(Buffer.from(d)))) }),
  fc.record({ tag: fc.constant(4), body: fc.uint8Array({ minLength: 13, maxLength: 13 }).map((b) => ((b[0] = 3), (b[1] = 0), (b[2] = 8), b)) }),
);

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('flipNear' as const), packet: fc.nat(8), offset: fc.nat(24), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(8), packet: packetArb }),
  fc.record({ op: fc.constant('lie' as const), packet: fc.nat(8), delta: fc.integer({ min: -30, max: 30 }).filter((d) => d !== 0) }),
  fc.record({ op: fc.constant('form' as const), packet: fc.nat(8), form: formArb }),
  fc.record({ op: fc.constant('swap' as const), a: fc.nat(8), b: fc.nat(8) }),
  fc.record({ op: fc.constant('drop' as const), packet: fc.nat(8) }),
  fc.record({ op: fc.constant('dup' as const), packet: fc.nat(8), at: fc.nat(8) }),
);

/** Apply one mutation. Structural ones work on whole packets and leave a message that does not split alone. */
function mutate(b: Buffer, m: Mutation): Buffer {
  const bytes = () => Buffer.from(b);
  switch (m.op) {
    case 'flip': {
      if (b.length === 0) return b;
      const out = bytes();
      out[m.at % b.length]! ^= 1 << m.bit;
      return out;
    }
    case 'truncate':
      return b.length === 0 ? b : b.subarray(0, m.at % b.length);
    case 'extend':
      return Buffer.concat([b, m.bytes]);
    default:
      break;
  }
  const ps = splitPackets(b);
  if (!ps || ps.length === 0) return b;
  const i = (n: number) => n % ps.length;
  const raws = ps.map((p) => p.raw);
  switch (m.op) {
    case 'flipNear': {
      const start = raws.slice(0, i(m.packet)).reduce((n, r) => n + r.length, 0);
      const at = start + m.offset;
      if (at >= b.length) return b;
      const out = bytes();
      out[at]! ^= 1 << m.bit;
      return out;
    }
    case 'insert':
      raws.splice(m.at % (ps.length + 1), 0, encodePacket({ tag: m.packet.tag, body: Buffer.from(m.packet.body) }));
      break;
    case 'lie': {
      const p = ps[i(m.packet)]!;
      raws[i(m.packet)] = encodePacket(p, { kind: 'new' }, m.delta);
      break;
    }
    case 'form': {
      const p = ps[i(m.packet)]!;
      // An indeterminate length runs to the end: only the last packet may have one.
      if (m.form.kind === 'oldIndeterminate' && i(m.packet) !== ps.length - 1) return b;
      raws[i(m.packet)] = encodePacket(p, m.form);
      break;
    }
    case 'swap': {
      const [x, y] = [raws[i(m.a)]!, raws[i(m.b)]!];
      raws[i(m.a)] = y;
      raws[i(m.b)] = x;
      break;
    }
    case 'drop':
      raws.splice(i(m.packet), 1);
      break;
    case 'dup':
      raws.splice(m.at % (ps.length + 1), 0, raws[i(m.packet)]!);
      break;
  }
  return Buffer.concat(raws);
}

interface Case {
  kind: Kind;
  signers: (typeof SIGNERS)[number];
  size: number;
  stream: boolean;
  /** Mutations of the message inside the encryption (sealed again with a good MDC afterwards). */
  inner: Mutation[];
  /** Mutations of the whole message. */
  outer: Mutation[];
  sealForm: Form;
  chunks: number[];
  /** With the accepted signers' keys, or with none. */
  verifying: boolean;
  /** ASCII armor around the result. */
  armor: boolean;
  /** compressed+encrypted: the compression algorithm. */
  compression: number;
}

const caseArb: fc.Arbitrary<Case> = fc.record({
  kind: fc.constantFrom(...KINDS),
  signers: fc.constantFrom(...SIGNERS),
  size: fc.constantFrom(...SIZES),
  stream: fc.boolean(),
  inner: fc.array(mutationArb, { maxLength: 3 }),
  outer: fc.array(mutationArb, { maxLength: 2 }),
  sealForm: fc.oneof({ weight: 3, arbitrary: fc.constant<Form>({ kind: 'partial', power: 9 }) }, { weight: 2, arbitrary: formArb }),
  chunks: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 6 }),
  verifying: fc.boolean(),
  armor: fc.constantFrom(false, false, false, true),
  compression: fc.constantFrom(0, 1, 2),
});

function build(c: Case): Buffer {
  const isSigned = c.kind.startsWith('signed') || c.kind === 'compressed+encrypted';
  let msg = c.kind === 'aead' ? aeadMessages.get(c.size)! : plainMessage(isSigned ? c.signers : 'none', c.size, c.stream);
  if (c.kind === 'compressed+encrypted') msg = compressed(msg, c.compression);
  const sealed = c.kind !== 'signed' && c.kind !== 'literal' && c.kind !== 'aead';
  if (sealed) {
    for (const m of c.inner) msg = mutate(msg, m);
    msg = seal(msg, c.kind.endsWith('symmetric') ? 'password' : 'key', c.sealForm);
  }
  // Not sealed here: the inner mutations are simply more mutations of the message.
  for (const m of sealed ? c.outer : [...c.inner, ...c.outer]) msg = mutate(msg, m);
  return c.armor ? Buffer.from(pgp.armor(pgp.enums.armor.message, msg)) : msg;
}

const materialOf = (c: Case): DecryptionMaterial => (c.verifying ? material : { ...material, verificationKeys: [] });

/** The same verdict and plaintext, and the same verdict for each signature. */
function same(a: Verdict, b: Verdict): boolean {
  if (a.ok !== b.ok) return false;
  if (!a.ok) return true;
  return a.data!.equals(b.data!) && JSON.stringify(a.sigs) === JSON.stringify(b.sigs);
}

const show = (v: Verdict) => (v.ok ? `accepted ${v.data!.length} bytes, signatures ${JSON.stringify(v.sigs)}` : `refused: ${v.error}`);

beforeAll(async () => {
  pgp = await loadOpenpgp();
  const gen = async (email: string) => (await pgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email }], format: 'object' })).privateKey;
  [alice, bob, carol] = await Promise.all([gen('alice@example.org'), gen('bob@example.org'), gen('carol@example.org')]);
  material = { decryptionKeys: [alice], passwords: [PASSWORD], verificationKeys: [alice.toPublic(), bob.toPublic()] };
  // One session key per recipient kind; the passphrase's S2K made cheap (one decryption per case).
  for (const to of ['key', 'password'] as const) {
    const sk = { data: randomBytes(32), algorithm: 'aes256' as const };
    const esk = await pgp.encryptSessionKey({
      ...sk,
      ...(to === 'key' ? { encryptionKeys: alice.toPublic() } : { passwords: [PASSWORD] }),
      format: 'binary',
      config: { s2kIterationCountByte: 0 },
    });
    sealers[to] = { esk: Buffer.from(esk as Uint8Array), key: sk.data, cipher: 'aes-256-cfb' };
  }
  const keysOf = { alice: [alice], 'alice+bob': [alice, bob], carol: [carol], 'alice+carol': [alice, carol] } as const;
  for (const size of SIZES) {
    const data = filler(size, size + 99);
    for (const stream of [false, true]) {
      for (const s of SIGNERS) plainMessages.set(`${s}/${size}/${stream}`, await signed(data, [...keysOf[s]], stream));
      // Bare literal data: with a file name (as gpg writes it) when streamed.
      plainMessages.set(`none/${size}/${stream}`, encodePacket({ tag: 11, body: literalBody(data, 0x62, stream ? 'payload.fspl' : '') }, stream ? { kind: 'partial', power: 9 } : { kind: 'new' }));
    }
    const message = await pgp.createMessage({ binary: data, format: 'binary' });
    const aead = await pgp.encrypt({ message, passwords: [PASSWORD], signingKeys: alice, format: 'binary', config: { aeadProtect: true, s2kType: pgp.enums.s2k.iterated, s2kIterationCountByte: 0 } });
    aeadMessages.set(size, Buffer.from(aead as unknown as Uint8Array));
  }
}, 120_000);

describe('the OpenPGP fast path against openpgp.js', () => {
  it('unmutated messages of every kind: the fast path takes them, and agrees', async () => {
    for (const kind of KINDS) {
      for (const size of SIZES) {
        const c: Case = { kind, signers: 'alice+carol', size, stream: size > 700, inner: [], outer: [], sealForm: { kind: 'partial', power: 9 }, chunks: [333], verifying: true, armor: false, compression: 2 };
        const bytes = build(c);
        expect(await pathOf(bytes, material), `${kind} ${size}`).toBe(kind === 'aead' ? 'other' : kind === 'compressed+encrypted' ? 'inner' : 'fast');
        const ref = await reference(bytes, material);
        expect(ref.ok, `${kind} ${size}: ${ref.error}`).toBe(true);
        const mine = await viaFspool(bytes, c.chunks, material);
        expect(show(mine), `${kind} ${size}`).toBe(show(ref));
        expect(mine.data!.equals(ref.data!)).toBe(true);
      }
    }
  });

  it(`mutated messages: the same verdict, plaintext and signature verdicts, in every chunking (${RUNS} cases, seed ${SEED})`, async () => {
    const paths = { fast: 0, inner: 0, other: 0, threw: 0 };
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const bytes = build(c);
        // Only what fspool recognises as OpenPGP reaches this layer (src/codec/sniff.ts).
        fc.pre(bytes.length > 0 && sniff(bytes.subarray(0, 64)) === 'openpgp');
        const m = materialOf(c);
        const path = await pathOf(bytes, m);
        // Every path must read a message as openpgp.js reads it whole: the fast path, and
        // openpgp.js itself, which reads what the fast path hands over whole when it is small
        // (src/codec/openpgp.ts, readByOpenpgp), as these are.
        const ref = await reference(bytes, m);
        paths[path]++;
        if (ref.ok) accepted++;
        for (const sizes of [c.chunks, [1 << 20], [1]]) {
          if (sizes[0] === 1 && bytes.length > 3000) continue;
          const mine = await viaFspool(bytes, sizes, m);
          if (!same(mine, ref)) {
            throw new Error(`fspool (${path} path, chunks ${sizes}): ${show(mine)}\nopenpgp.js: ${show(ref)}\nmessage: ${bytes.toString('hex').slice(0, 400)}`);
          }
        }
      }),
      { numRuns: RUNS, seed: SEED, timeout: 30_000, ...(process.env.FSPOOL_DIFF_PATH ? { path: process.env.FSPOOL_DIFF_PATH } : {}) },
    );
    // The cases must reach the fast path, and not only to be refused.
    expect(paths.fast, JSON.stringify(paths)).toBeGreaterThan(RUNS / 5);
    expect(accepted).toBeGreaterThan(RUNS / 10);
  }, 60_000 + RUNS * 200);
});

describe('expired, revoked and not-yet-valid keys and signatures, on the fast path', () => {
  const DAY = 86_400_000;
  const now = Date.now();
  /** A key or subkey whose (secret) key packet signs. */
  type Signing = { keyPacket: { algorithm: import('openpgp').enums.publicKey } };

  /** One-pass signature, literal data, signature, made by hand so that any date and expiry can be given. */
  async function handSigned(signing: Signing, data: Buffer, created: Date, expiresIn?: number): Promise<Buffer> {
    const literal = new (pgp.LiteralDataPacket as unknown as new (date: Date) => import('openpgp').LiteralDataPacket)(created);
    (literal as unknown as { setBytes(b: Uint8Array, f: number): void }).setBytes(data, pgp.enums.literal.binary);
    const sig = new pgp.SignaturePacket() as import('openpgp').SignaturePacket & { signatureExpirationTime: number; signatureNeverExpires: boolean };
    sig.signatureType = pgp.enums.signature.binary;
    sig.hashAlgorithm = pgp.enums.hash.sha256;
    sig.publicKeyAlgorithm = signing.keyPacket.algorithm;
    if (expiresIn !== undefined) {
      sig.signatureExpirationTime = expiresIn;
      sig.signatureNeverExpires = false;
    }
    await (sig as unknown as { sign(k: unknown, d: unknown, date: Date, detached: boolean, config: unknown): Promise<void> }).sign(signing.keyPacket, literal, created, false, pgp.config);
    const ops = new pgp.OnePassSignaturePacket() as unknown as Record<string, unknown>;
    Object.assign(ops, { version: 3, signatureType: sig.signatureType, hashAlgorithm: sig.hashAlgorithm, publicKeyAlgorithm: sig.publicKeyAlgorithm, issuerKeyID: sig.issuerKeyID, flags: 1 });
    const list = new pgp.PacketList();
    list.push(ops as never, literal, sig);
    return Buffer.from(list.write() as Uint8Array);
  }

  const gen = async (o: { date?: Date; keyExpirationTime?: number; subkeys?: Array<Record<string, unknown>> } = {}) =>
    (await pgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'v@example.org' }], format: 'object', ...o })).privateKey;

  it('the same verdict as openpgp.js, signed and signed inside encryption', async () => {
    const data = filler(3000, 7);
    const t0 = new Date(now - 10 * DAY);
    const base = await gen({ date: t0 });
    const reformat = (o: { date: Date; keyExpirationTime?: number }) =>
      pgp.reformatKey({ privateKey: base, userIDs: [{ email: 'v@example.org' }], format: 'object', ...o }).then((k) => k.privateKey);
    const expiresAfterAnHour = await reformat({ date: t0, keyExpirationTime: 3600 });
    const notYetValid = await reformat({ date: new Date(now + DAY) });
    const revoked = (await pgp.revokeKey({ key: base, format: 'object' })).privateKey;
    const superseded = (await pgp.revokeKey({ key: base, format: 'object', date: new Date(now - DAY), reasonForRevocation: { flag: pgp.enums.reasonForRevocation.keySuperseded } })).privateKey;
    const withSigningSubkey = await gen({ date: t0, subkeys: [{}, { sign: true, keyExpirationTime: 3600 }] });
    const signingSub = withSigningSubkey.subkeys[1]!;
    const subRevoked = (withSigningSubkey as unknown as { clone(): import('openpgp').PrivateKey }).clone();
    subRevoked.subkeys[1] = await signingSub.revoke(withSigningSubkey.keyPacket as never, undefined, new Date(now - DAY));
    const at = (ms: number) => new Date(ms);
    const cases: Array<{ name: string; key: import('openpgp').PrivateKey; sign: Signing; created: Date; expiresIn?: number; verifies: boolean }> = [
      { name: 'a valid key and signature', key: base, sign: base, created: at(now - DAY), verifies: true },
      { name: 'an expired signature', key: base, sign: base, created: at(now - 2 * DAY), expiresIn: 3600, verifies: false },
      { name: 'a signature not expired yet', key: base, sign: base, created: at(now - DAY), expiresIn: 30 * 86400, verifies: true },
      { name: 'a signature from the future', key: base, sign: base, created: at(now + DAY), verifies: false },
      { name: 'a signature older than its key', key: base, sign: base, created: at(t0.getTime() - DAY), verifies: false },
      { name: 'a key that had expired when it signed', key: expiresAfterAnHour, sign: base, created: at(now - DAY), verifies: false },
      { name: 'a key that has expired since it signed', key: expiresAfterAnHour, sign: base, created: at(t0.getTime() + 60_000), verifies: true },
      { name: 'a key not valid yet when it signed', key: notYetValid, sign: base, created: at(now - DAY), verifies: false },
      { name: 'a revoked key (compromised)', key: revoked, sign: base, created: at(now - 5 * DAY), verifies: false },
      { name: 'a key superseded after it signed', key: superseded, sign: base, created: at(now - 5 * DAY), verifies: true },
      { name: 'a key superseded before it signed', key: superseded, sign: base, created: at(now - DAY / 2), verifies: false },
      { name: 'a signing subkey, valid', key: withSigningSubkey, sign: signingSub, created: at(t0.getTime() + 60_000), verifies: true },
      { name: 'a signing subkey that had expired', key: withSigningSubkey, sign: signingSub, created: at(now - DAY), verifies: false },
      { name: 'a signing subkey revoked before it signed', key: subRevoked, sign: signingSub, created: at(now - DAY / 2), verifies: false },
    ];
    for (const c of cases) {
      const signedMessage = await handSigned(c.sign, data, c.created, c.expiresIn);
      const m = { ...material, verificationKeys: [c.key.toPublic()] };
      for (const [how, bytes] of [
        ['signed', signedMessage],
        ['signed inside encryption', seal(signedMessage, 'key', { kind: 'partial', power: 9 })],
      ] as const) {
        expect(await pathOf(bytes, m), `${c.name}, ${how}`).toBe('fast');
        const ref = await reference(bytes, m);
        expect(ref.sigs, `${c.name}, ${how}: openpgp.js`).toEqual([c.verifies]);
        for (const sizes of [[1 << 20], [97]]) {
          const mine = await viaFspool(bytes, sizes, m);
          expect(show(mine), `${c.name}, ${how}`).toBe(show(ref));
        }
      }
    }
  }, 120_000);
});

describe('what openpgp.js reads by itself', () => {
  /** A SEIPD v1 message that is not the fast path's shape: a marker packet after the session key packet. */
  function offShape(inner: Buffer): Buffer {
    const sealed = seal(inner, 'key', { kind: 'partial', power: 9 });
    const esk = sealers.key.esk.length;
    return Buffer.concat([sealed.subarray(0, esk), encodePacket({ tag: 10, body: Buffer.from('PGP') }), sealed.subarray(esk)]);
  }
  const nestedAead = Buffer.concat([encodePacket({ tag: 20, body: Buffer.alloc(13) }), encodePacket({ tag: 11, body: literalBody(Buffer.from('hi')) })]);

  it('decrypts a small one whole, as its default does: an encrypted packet inside is refused, in any chunking', async () => {
    // Streaming, openpgp.js 6.3.2 waits forever on this one (the nested packet's body is never read).
    const bytes = offShape(nestedAead);
    expect(await pathOf(bytes, material)).toBe('other');
    for (const sizes of [[1 << 20], [1], [7]]) {
      const mine = await viaFspool(bytes, sizes, material);
      expect(mine.ok).toBe(false);
      expect(mine.error).toMatch(/not allowed in this context/);
    }
    const good = offShape(plainMessage('alice', 5000, true));
    const ok = await viaFspool(good, [1], material);
    expect(show(ok)).toBe(show(await reference(good, material)));
    expect(ok.sigs).toEqual([true]);
  });

  it('refuses a large SEIPD v1 message that is not the common shape (it would stream it unauthenticated), with the way around', async () => {
    const big = offShape(encodePacket({ tag: 11, body: literalBody(filler(3 << 20, 5)) }, { kind: 'partial', power: 16 }));
    const mine = await viaFspool(big, [256 * 1024], material);
    expect(mine.ok).toBe(false);
    expect(mine.error).toMatch(/nor AEAD-protected; decode it with -d 'gpg -q -d'/);
  });

  it('streams a large AEAD-protected message', async () => {
    const data = filler(3 << 20, 9);
    const message = await pgp.createMessage({ binary: data, format: 'binary' });
    const bytes = Buffer.from((await pgp.encrypt({ message, passwords: [PASSWORD], format: 'binary', config: { aeadProtect: true, s2kType: pgp.enums.s2k.iterated, s2kIterationCountByte: 0 } })) as unknown as Uint8Array);
    const mine = await viaFspool(bytes, [256 * 1024], material);
    expect(mine.error).toBeUndefined();
    expect(mine.data!.equals(data)).toBe(true);
  });

  it('undoes armor first, so a large armored message of the common shape takes the fast path', async () => {
    const data = filler(3 << 20, 11);
    const bytes = Buffer.from(pgp.armor(pgp.enums.armor.message, seal(encodePacket({ tag: 11, body: literalBody(data) }, { kind: 'partial', power: 16 }), 'key', { kind: 'partial', power: 16 })));
    expect(await pathOf(bytes, material)).toBe('fast');
    const mine = await viaFspool(bytes, [65536], material);
    expect(mine.error).toBeUndefined();
    expect(mine.data!.equals(data)).toBe(true);
    // A damaged armor checksum fails at the end, after the plaintext was passed on.
    const text = bytes.toString('latin1');
    const crc = text.lastIndexOf('\n=');
    const bad = Buffer.from(`${text.slice(0, crc + 2)}${text[crc + 2] === 'A' ? 'B' : 'A'}${text.slice(crc + 3)}`, 'latin1');
    expect((await viaFspool(bad, [65536], material)).ok).toBe(false);
  });
});
