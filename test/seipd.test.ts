// The fast OpenPGP decryption path (src/codec/seipd.ts) and its framing (src/codec/pgpFraming.ts),
// against messages openpgp.js writes: every size around the block and MDC boundaries, every way
// of cutting the input into chunks, partial and definite lengths; and every damage (a flipped
// byte anywhere, a cut anywhere, trailing bytes) must make it throw, never end cleanly.
// End to end with gpg, zstd and fspl: test/encoding.test.ts.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import * as openpgp from 'openpgp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DecryptionMaterial } from '../src/codec/keys.js';
import { BodyFramer, definiteLength, MAX_RUNS, readPacketHead } from '../src/codec/pgpFraming.js';
import { openLiteral, openSeipd, type Unwrapped } from '../src/codec/seipd.js';
import { encryptSeipd } from '../src/codec/seipdEncrypt.js';
import { filler } from './helpers/bytes.js';
import { LONG } from './helpers/queue.js';

const seed = process.env.FSPOOL_PROP_SEED ? Number(process.env.FSPOOL_PROP_SEED) : undefined;
const params = (numRuns: number): fc.Parameters<unknown> => ({ numRuns, ...(seed !== undefined ? { seed } : {}) });

/** `b` cut into chunks of the given sizes, in turn. */
async function* chunked(b: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  for (let at = 0, i = 0; at < b.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield Buffer.from(b.subarray(at, at + n));
    at += n;
  }
}

const CONFIG = { aeadProtect: false, preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed };
let key: openpgp.PrivateKey;
let material: DecryptionMaterial;
const password = { decryptionKeys: [], passwords: ['correct horse'], verificationKeys: [] };

beforeAll(async () => {
  const k = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'seipd@example.org' }], format: 'object' });
  key = k.privateKey;
  material = { decryptionKeys: [key], passwords: [], verificationKeys: [] };
});

/** Encrypt like fspool prepare does. `stream`: from a stream, so the lengths are partial. */
async function encrypt(data: Buffer, o: { to?: 'key' | 'password'; stream?: boolean; sign?: boolean; config?: Partial<openpgp.Config> } = {}): Promise<Buffer> {
  const input = o.stream
    ? new ReadableStream<Uint8Array>({
        start(c) {
          for (let at = 0; at < data.length; at += 3000) c.enqueue(data.subarray(at, at + 3000));
          c.close();
        },
      })
    : data;
  const message = await openpgp.createMessage({ binary: input as Uint8Array, format: 'binary' });
  const out = await openpgp.encrypt({
    message,
    ...(o.to === 'password' ? { passwords: password.passwords } : { encryptionKeys: key.toPublic() }),
    ...(o.sign ? { signingKeys: key } : {}),
    format: 'binary',
    config: { ...CONFIG, ...o.config },
  });
  if (out instanceof Uint8Array) return Buffer.from(out);
  const parts: Buffer[] = [];
  for await (const b of out as unknown as AsyncIterable<Uint8Array>) parts.push(Buffer.from(b));
  return Buffer.concat(parts);
}

async function readAll(s: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of s) parts.push(b);
  return Buffer.concat(parts);
}

/** Decrypt `packet` fed in chunks: the plaintext, or the error, and the kind of result. */
async function decrypt(packet: Buffer, sizes: number[], m: DecryptionMaterial = material): Promise<{ kind: Unwrapped['kind'] | 'threw'; literal?: boolean; data?: Buffer; error?: string }> {
  let s: Unwrapped;
  try {
    s = await openSeipd(chunked(packet, sizes), openpgp, m);
  } catch (e) {
    return { kind: 'threw', error: (e as Error).message };
  }
  if (s.kind === 'other') return { kind: 'other', data: await readAll(s.input) };
  try {
    return { kind: 'plaintext', literal: s.literal, data: await readAll(s.plaintext) };
  } catch (e) {
    return { kind: 'threw', error: (e as Error).message };
  }
}

/** `n` deterministic bytes; `s` picks the stream (by default the size). */
const payload = (n: number, s = n): Buffer => filler(n, s * 2654435761 + 1);

describe('OpenPGP framing', () => {
  /** A packet of tag 11 whose body is sent in parts of 2^powers[i] bytes, then a definite last part. */
  function framed(body: Buffer, powers: number[]): Buffer {
    const out: Buffer[] = [Buffer.from([0xc0 | 11])];
    let at = 0;
    for (const p of powers) {
      if (body.length - at <= 1 << p) break;
      out.push(Buffer.from([224 + p]), body.subarray(at, at + (1 << p)));
      at += 1 << p;
    }
    const rest = body.length - at;
    out.push(definiteLength(rest), body.subarray(at));
    return Buffer.concat(out);
  }

  it('reassembles any body from partial and definite parts, cut into any chunks, in a few buffers a push, and hands back what follows', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 12000 }),
        fc.array(fc.integer({ min: 0, max: 11 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 9 }),
        (n, powers, sizes, trailing) => {
          const body = payload(n);
          const tail = payload(trailing, n + 1);
          const packet = framed(body, powers);
          const head = readPacketHead(packet)!;
          expect(head.tag).toBe(11);
          const framer = new BodyFramer(head.body);
          const got: Buffer[] = [];
          const after: Buffer[] = [];
          const all = Buffer.concat([packet.subarray(head.size), tail]);
          for (let at = 0, i = 0; at < all.length; i++) {
            const chunk = all.subarray(at, at + sizes[i % sizes.length]!);
            at += chunk.length;
            const r = framer.push(chunk);
            // A few buffers at most per push, however small the parts: every layer above pays per buffer.
            expect(r.body.length).toBeLessThanOrEqual(MAX_RUNS);
            got.push(...r.body);
            if (r.after) after.push(r.after);
          }
          framer.end();
          expect(framer.done).toBe(true);
          expect(Buffer.concat(got).equals(body)).toBe(true);
          expect(Buffer.concat(after).equals(tail)).toBe(true);
        },
      ),
      params(300),
    );
  });

  it('a body cut short is refused at the end of the input', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 8 }), fc.nat(), (n, powers, cutAt) => {
        const packet = framed(payload(n), powers);
        const head = readPacketHead(packet)!;
        const cut = packet.subarray(head.size, head.size + (cutAt % (packet.length - head.size)));
        const framer = new BodyFramer(head.body);
        framer.push(cut);
        expect(() => framer.end()).toThrow(/truncated/);
      }),
      params(300),
    );
  });

  it('reads old-format headers, and refuses a byte that starts no packet', () => {
    expect(readPacketHead(Buffer.from([0x88 | 0, 5]))).toEqual({ tag: 2, size: 2, body: { kind: 'definite', length: 5 } });
    expect(readPacketHead(Buffer.from([0x84 | 1, 1, 0]))).toEqual({ tag: 1, size: 3, body: { kind: 'definite', length: 256 } });
    expect(readPacketHead(Buffer.from([0xac | 3]))).toEqual({ tag: 11, size: 1, body: { kind: 'indeterminate' } });
    expect(readPacketHead(Buffer.from([0x84 | 2, 0, 0]))).toBeUndefined();
    expect(readPacketHead(Buffer.from([0xc0 | 18, 255, 0, 1, 0]))).toBeUndefined();
    expect(readPacketHead(Buffer.from([0xc0 | 18, 255, 0, 1, 0, 0]))).toEqual({ tag: 18, size: 6, body: { kind: 'definite', length: 65536 } });
    expect(() => readPacketHead(Buffer.from([0x28]))).toThrow(/not an OpenPGP packet header/);
    // Definite lengths at the edges of their three forms (RFC 4880 §4.2.2).
    expect([...definiteLength(191)]).toEqual([191]);
    expect([...definiteLength(192)]).toEqual([192, 0]);
    expect([...definiteLength(8383)]).toEqual([223, 255]);
    expect([...definiteLength(8384)]).toEqual([255, 0, 0, 0x20, 0xc0]);
  });
});

describe('fast SEIPD v1 decryption', () => {
  // Around the AES block (16), the prefix (18) and the MDC packet (22), and beyond a partial part.
  const SIZES = [0, 1, 2, 15, 16, 17, 18, 21, 22, 23, 33, 1000, 70_000, 300_001];
  const CHUNKINGS: number[][] = [[1], [7, 1, 3], [16], [4096], [65536, 3]];
  /**
   * Which chunkings a size is decrypted in. Byte-sized chunks are for the sizes up to 1000; the
   * other small ones go through the large sizes too only in the long mode: there they took two
   * thirds of this file's time, cutting the same boundaries (block, prefix, MDC, part header)
   * again and again that they cut in the small sizes.
   */
  const tried = (n: number, sizes: number[]) => (sizes[0] === 1 ? n <= 1000 : LONG || n <= 1000 || sizes[0]! >= 4096);

  for (const to of ['key', 'password'] as const) {
    for (const stream of [false, true]) {
      it(`decrypts what openpgp.js writes (${to}, ${stream ? 'partial' : 'definite'} lengths), every size and chunking`, async () => {
        for (const n of SIZES) {
          const data = payload(n);
          const packet = await encrypt(data, { to, stream });
          for (const sizes of CHUNKINGS) {
            if (!tried(n, sizes)) continue;
            const r = await decrypt(packet, sizes, to === 'key' ? material : password);
            expect(r.error, `${n} bytes in chunks of ${sizes}`).toBeUndefined();
            expect(r.kind).toBe('plaintext');
            expect(r.literal).toBe(true);
            expect(r.data!.equals(data), `${n} bytes in chunks of ${sizes}`).toBe(true);
          }
        }
      });
    }
  }

  it('a flipped byte anywhere: it throws, it never ends cleanly', async () => {
    const data = payload(5000);
    const packet = await encrypt(data, { stream: true });
    const head = readPacketHead(packet)!;
    const seipdAt = head.size + (head.body as { length: number }).length;
    for (let i = 0; i < packet.length; i += i < seipdAt + 40 ? 1 : 37) {
      const bad = Buffer.from(packet);
      bad[i]! ^= 0x10;
      const r = await decrypt(bad, [4096]);
      // A damaged session key packet or SEIPD header may make it not our shape: then openpgp.js
      // reads it (and refuses it, tested in test/encoding.test.ts). Inside the ciphertext it throws.
      if (i > seipdAt + 2) expect(r.kind, `byte ${i} of ${packet.length}`).toBe('threw');
      else expect(r.kind, `byte ${i}`).not.toBe('plaintext');
    }
  });

  it('cut anywhere: it throws, it never ends cleanly', async () => {
    const packet = await encrypt(payload(3000), { stream: true });
    for (let n = 1; n < packet.length; n += n < 200 ? 1 : 29) {
      const r = await decrypt(packet.subarray(0, n), [512]);
      expect(r.kind, `cut at ${n} of ${packet.length}`).not.toBe('plaintext');
    }
  });

  it('bytes after the encrypted packet: it throws', async () => {
    const packet = await encrypt(payload(3000));
    const r = await decrypt(Buffer.concat([packet, Buffer.from('junk')]), [1000]);
    expect(r.kind).toBe('threw');
    expect(r.error).toMatch(/data after the encrypted packet/);
  });

  it('the wrong passphrase: never a clean end', async () => {
    const packet = await encrypt(payload(100), { to: 'password' });
    // openpgp.js usually refuses the garbage session key; if its algorithm byte happens to be a
    // valid one, it is decrypted (an AES one here, another by openpgp.js) and the MDC fails.
    for (const wrong of ['wrong', 'wrong2', 'wrong3', 'wrong4', 'wrong5']) {
      const r = await decrypt(packet, [4096], { ...password, passwords: [wrong] });
      expect(r.kind, wrong).not.toBe('plaintext');
      if (r.kind === 'threw') expect(r.error).toMatch(/session key|decrypt|MDC|modification/i);
    }
  });

  /** A SEIPD v1 message around any `inner` bytes (no literal packet added), to the test key. */
  /** `tinyParts`: the SEIPD body in one 512-byte part, then 1-byte parts (RFC 4880 allows it). */
  async function sealRaw(inner: Buffer, tinyParts = false): Promise<Buffer> {
    const sk = await openpgp.generateSessionKey({ encryptionKeys: key.toPublic() });
    const esk = Buffer.from((await openpgp.encryptSessionKey({ ...sk, encryptionKeys: key.toPublic(), format: 'binary' })) as Uint8Array);
    const prefix = randomBytes(16);
    const plain = Buffer.concat([prefix, prefix.subarray(14), inner, Buffer.from([0xd3, 0x14])]);
    const mdc = createHash('sha1').update(plain).digest();
    const c = createCipheriv('aes-256-cfb', sk.data, Buffer.alloc(16));
    const body = Buffer.concat([Buffer.from([1]), c.update(Buffer.concat([plain, mdc])), c.final()]);
    if (tinyParts) {
      const parts: Buffer[] = [Buffer.from([0xc0 | 18, 0xe0 | 9]), body.subarray(0, 512)];
      for (let at = 512; at < body.length - 1; at++) parts.push(Buffer.from([0xe0, body[at]!]));
      parts.push(Buffer.from([1, body[body.length - 1]!]));
      return Buffer.concat([esk, ...parts]);
    }
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    return Buffer.concat([esk, Buffer.from([0xc0 | 18, 0xff]), len, body]);
  }

  it('a SEIPD body in 1-byte parts (hundreds of thousands per read) decrypts', async () => {
    const data = payload(150_000);
    const literal = Buffer.concat([Buffer.from([0xcb, 0xff, 0, 0, 0, 0, 0x62, 0, 0, 0, 0, 0]), data]);
    literal.writeUInt32BE(data.length + 6, 2);
    const packet = await sealRaw(literal, true);
    const r = await decrypt(packet, [256 * 1024]);
    expect(r.error).toBeUndefined();
    expect(r.data!.equals(data)).toBe(true);
  });
  /** openpgp.js's signed (not encrypted) message: one-pass signature, literal, signature. */
  async function signedMessage(data: Buffer, signingKeys: openpgp.PrivateKey | openpgp.PrivateKey[]): Promise<Buffer> {
    const message = await openpgp.createMessage({ binary: data, format: 'binary' });
    return Buffer.from((await openpgp.sign({ message, signingKeys, format: 'binary', config: CONFIG })) as Uint8Array);
  }
  async function verdicts(packet: Buffer, verificationKeys: openpgp.Key[]): Promise<{ data?: Buffer; verdicts?: Array<string | undefined>; error?: string }> {
    try {
      const s = await openSeipd(chunked(packet, [777]), openpgp, { ...material, verificationKeys });
      if (s.kind !== 'plaintext' || !s.literal) return { error: `not unwrapped: ${s.kind}` };
      const data = await readAll(s.plaintext);
      return { data, verdicts: await s.signatures() };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }

  it('signed inside (as fspool prepare --sign-with writes it): unwrapped here, and the signature verified', async () => {
    const data = payload(300_000);
    const packet = await encrypt(data, { sign: true, stream: true });
    const good = await verdicts(packet, [key.toPublic()]);
    expect(good.error).toBeUndefined();
    expect(good.data!.equals(data)).toBe(true);
    expect(good.verdicts).toEqual([undefined]);
    const other = (await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'other@example.org' }], format: 'object' })).privateKey;
    const byOther = await verdicts(packet, [other.toPublic()]);
    expect(byOther.verdicts![0]).toMatch(/Could not find signing key/);
    // Not verifying (no keys given): the data is the same, the verdict says why not.
    expect((await verdicts(packet, [])).verdicts![0]).toMatch(/Could not find signing key/);
    // Two signers: both verdicts; one key given, one verifies.
    const both = await sealRaw(await signedMessage(data, [key, other]));
    const two = await verdicts(both, [other.toPublic()]);
    expect(two.data!.equals(data)).toBe(true);
    expect(two.verdicts!.filter((v) => v === undefined)).toHaveLength(1);
    expect(two.verdicts).toHaveLength(2);
  });

  it('signed inside, the signed data changed (MDC intact): the signature does not verify', async () => {
    const data = payload(5000);
    const signed = await signedMessage(data, key);
    const at = signed.indexOf(data.subarray(0, 64));
    expect(at).toBeGreaterThan(0);
    const forged = Buffer.from(signed);
    forged[at + 100]! ^= 1;
    const r = await verdicts(await sealRaw(forged), [key.toPublic()]);
    expect(r.error).toBeUndefined();
    expect(r.verdicts).toHaveLength(1);
    expect(r.verdicts![0]).toMatch(/digest did not match|verification failed/i);
    // The untouched message, sealed the same way, verifies: the forgery is what failed.
    expect((await verdicts(await sealRaw(signed), [key.toPublic()])).verdicts).toEqual([undefined]);
  });

  it('signed inside, the signature packet missing or followed by junk: it throws at the end', async () => {
    const signed = await signedMessage(payload(5000), key);
    // Walk the packets: one-pass signature, literal data (definite lengths), then the signature.
    let sigAt = 0;
    for (const tag of [4, 11]) {
      const h = readPacketHead(signed, sigAt)!;
      expect(h.tag).toBe(tag);
      sigAt += h.size + (h.body as { length: number }).length;
    }
    expect(readPacketHead(signed, sigAt)!.tag).toBe(2);
    const cut = await verdicts(await sealRaw(signed.subarray(0, sigAt)), [key.toPublic()]);
    expect(cut.error).toMatch(/one-pass signature packet\(s\) but 0 signature/);
    const junk = await verdicts(await sealRaw(Buffer.concat([signed, Buffer.from('junk')])), [key.toPublic()]);
    expect(junk.error).toMatch(/not a signature|not an OpenPGP packet header/);
  });

  it('AEAD (SEIPD v2 / AEAD packets) is not this shape: the input comes back whole', async () => {
    const packet = await encrypt(payload(3000), { to: 'password', config: { aeadProtect: true } });
    const r = await decrypt(packet, [100]);
    expect(r.kind).toBe('other');
    expect(r.data!.equals(packet)).toBe(true);
  });
});

describe('fast SEIPD v1 encryption (the sender)', () => {
  // Around the partial-length part (2^18) and the literal packet's own 6 bytes.
  const SIZES = [0, 1, 17, 1000, 262_138, 262_143, 262_144, 262_145, 524_288, 600_001];

  async function seal(data: Buffer, to: 'key' | 'password', sizes: number[]): Promise<Buffer> {
    const out = await encryptSeipd(chunked(data, sizes), openpgp, to === 'key' ? { encryptionKeys: [key.toPublic()] } : { passwords: password.passwords });
    expect(out, 'an AES session key').toBeDefined();
    return readAll(out!);
  }

  for (const to of ['key', 'password'] as const) {
    it(`what it writes, openpgp.js decrypts (MDC checked) and so does the fast reader (${to})`, async () => {
      for (const n of SIZES) {
        const data = payload(n, n + 7);
        const packet = await seal(data, to, [65536, 1, 100_000]);
        const message = await openpgp.readMessage({ binaryMessage: packet });
        const viaOpenpgp = await openpgp.decrypt({
          message,
          ...(to === 'key' ? { decryptionKeys: key } : { passwords: password.passwords }),
          format: 'binary',
        });
        expect(Buffer.from(viaOpenpgp.data as Uint8Array).equals(data), `openpgp.js, ${n} bytes`).toBe(true);
        const mine = await decrypt(packet, [4096], to === 'key' ? material : password);
        expect(mine.error).toBeUndefined();
        expect(mine.data!.equals(data), `fast reader, ${n} bytes`).toBe(true);
      }
    });
  }

  it('each message has its own session key and prefix', async () => {
    const data = payload(1000);
    const [a, b] = [await seal(data, 'key', [1000]), await seal(data, 'key', [1000])];
    expect(a.equals(b)).toBe(false);
  });
});

describe('signed, not encrypted (openLiteral)', () => {
  async function sign(data: Buffer, config: Partial<openpgp.Config> = CONFIG): Promise<Buffer> {
    const message = await openpgp.createMessage({ binary: data, format: 'binary' });
    return Buffer.from((await openpgp.sign({ message, signingKeys: key, format: 'binary', config: { ...CONFIG, ...config } })) as Uint8Array);
  }
  async function open(packet: Buffer, sizes: number[]) {
    const s = await openLiteral(chunked(packet, sizes), openpgp, { ...material, verificationKeys: [key.toPublic()] });
    if (s.kind === 'other') return { kind: s.kind, data: await readAll(s.input) };
    try {
      const data = await readAll(s.plaintext);
      return { kind: s.kind, data, verdicts: await s.signatures() };
    } catch (e) {
      return { kind: 'threw' as const, error: (e as Error).message };
    }
  }

  it('unwrapped and verified, in any chunking; a changed byte fails the signature', async () => {
    const data = payload(70_000);
    const signed = await sign(data);
    for (const sizes of [[1, 2, 3], [4096], [1 << 20]]) {
      const r = await open(signed, sizes);
      expect(r.kind).toBe('plaintext');
      expect(r.data!.equals(data)).toBe(true);
      expect(r.verdicts).toEqual([undefined]);
    }
    const forged = Buffer.from(signed);
    forged[signed.indexOf(data.subarray(0, 64)) + 5000]! ^= 1;
    const bad = await open(forged, [4096]);
    expect(bad.verdicts![0]).toMatch(/digest did not match|verification failed/i);
  });

  it('cut anywhere: it throws or is handed to openpgp.js, it never ends cleanly', async () => {
    const signed = await sign(payload(3000));
    for (let n = 1; n < signed.length; n += n < 100 ? 1 : 13) {
      const r = await open(signed.subarray(0, n), [512]);
      if (r.kind === 'plaintext') expect.fail(`cut at ${n} of ${signed.length} ended cleanly`);
    }
  });

  it('a text signature (not this shape): the input comes back whole, for openpgp.js', async () => {
    const message = await openpgp.createMessage({ text: 'hello\nworld\n' });
    const signed = Buffer.from((await openpgp.sign({ message, signingKeys: key, format: 'binary', config: CONFIG })) as Uint8Array);
    const r = await open(signed, [100]);
    expect(r.kind).toBe('other');
    expect(r.data!.equals(signed)).toBe(true);
  });

  it('thousands of one-pass packets before the literal: not this shape, handed on whole (bounded)', async () => {
    const onePass = Buffer.from([0xc4, 13, 3, 0, 8, 22, 1, 2, 3, 4, 5, 6, 7, 8, 1]);
    const literal = Buffer.from([0xcb, 9, 0x62, 0, 0, 0, 0, 0, 0x68, 0x69, 0x0a]);
    const packet = Buffer.concat([...Array.from({ length: 5000 }, () => onePass), literal]);
    const r = await open(packet, [4096]);
    expect(r.kind).toBe('other');
    expect(r.data!.equals(packet)).toBe(true);
  });
});
