// Taking OpenPGP messages apart and putting them back together wrong, for the differential
// tests of the fast path (test/openpgp-differential.test.ts) and the packets the CLI must
// refuse (test/encoding.test.ts): packets split at their headers, re-encoded with other (valid
// or lying) lengths, reordered, dropped, repeated; any bytes sealed as a SEIPD packet.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { definiteLength, readPacketHead } from '../../src/codec/pgpFraming.js';

export interface RawPacket {
  tag: number;
  /** The body, its partial-length parts joined. */
  body: Buffer;
  /** The packet as it was written (header, lengths and body). */
  raw: Buffer;
}

/**
 * The packets of `b`, or undefined if it does not split cleanly into whole packets (old or new
 * format, definite or partial lengths; an indeterminate length runs to the end).
 */
export function splitPackets(b: Buffer): RawPacket[] | undefined {
  const out: RawPacket[] = [];
  let at = 0;
  while (at < b.length) {
    let h;
    try {
      h = readPacketHead(b, at);
    } catch {
      return undefined;
    }
    if (!h) return undefined;
    const start = at;
    at += h.size;
    if (h.body.kind === 'indeterminate') {
      out.push({ tag: h.tag, body: b.subarray(at), raw: b.subarray(start) });
      return out;
    }
    const parts: Buffer[] = [];
    let len = h.body;
    for (;;) {
      if (at + len.length > b.length) return undefined;
      parts.push(b.subarray(at, at + len.length));
      at += len.length;
      if (len.kind === 'definite') break;
      // The next part's length (new format only).
      const next = readPacketHead(Buffer.concat([Buffer.from([0xc0]), b.subarray(at, at + 5)]));
      if (!next || next.body.kind === 'indeterminate') return undefined;
      at += next.size - 1;
      len = next.body;
    }
    out.push({ tag: h.tag, body: Buffer.concat(parts), raw: b.subarray(start, at) });
  }
  return out;
}

/** How a packet's header states its length. */
export type Form =
  | { kind: 'new' }
  | { kind: 'new5' }
  | { kind: 'old'; bytes: 1 | 2 | 4 }
  | { kind: 'oldIndeterminate' }
  /** New format, the body in parts of 2^power bytes, then a definite last part. */
  | { kind: 'partial'; power: number };

/** One packet, its length stated as `form` says (`lie`: that many bytes more, or fewer, than the body has). */
export function encodePacket(p: { tag: number; body: Buffer }, form: Form = { kind: 'new' }, lie = 0): Buffer {
  const n = Math.max(0, p.body.length + lie);
  switch (form.kind) {
    case 'new':
      return Buffer.concat([Buffer.from([0xc0 | p.tag]), definiteLength(n), p.body]);
    case 'new5': {
      const l = Buffer.alloc(5);
      l[0] = 0xff;
      l.writeUInt32BE(n, 1);
      return Buffer.concat([Buffer.from([0xc0 | p.tag]), l, p.body]);
    }
    case 'old': {
      // Old format knows tags below 16 only.
      if (p.tag > 15) return encodePacket(p, { kind: 'new' }, lie);
      const type = form.bytes === 1 ? 0 : form.bytes === 2 ? 1 : 2;
      const l = Buffer.alloc(form.bytes);
      l.writeUIntBE(Math.min(n, 2 ** (8 * form.bytes) - 1), 0, form.bytes);
      return Buffer.concat([Buffer.from([0x80 | (p.tag << 2) | type]), l, p.body]);
    }
    case 'oldIndeterminate':
      if (p.tag > 15) return encodePacket(p, { kind: 'new' }, lie);
      return Buffer.concat([Buffer.from([0x80 | (p.tag << 2) | 3]), p.body]);
    case 'partial': {
      const size = 1 << form.power;
      const parts: Buffer[] = [Buffer.from([0xc0 | p.tag])];
      let at = 0;
      // The first part must be at least 512 bytes (RFC 4880 §4.2.2.4); openpgp.js writes such.
      while (p.body.length - at > size) {
        parts.push(Buffer.from([224 + form.power]), p.body.subarray(at, at + size));
        at += size;
      }
      parts.push(definiteLength(Math.max(0, p.body.length - at + lie)), p.body.subarray(at));
      return Buffer.concat(parts);
    }
  }
}

export const join = (ps: Buffer[]) => Buffer.concat(ps);

/** A literal data packet's body: format, file name, a date, then the data. */
export function literalBody(data: Buffer, format = 0x62, name = ''): Buffer {
  const head = Buffer.alloc(6 + name.length);
  head[0] = format;
  head[1] = name.length;
  head.write(name, 2, 'latin1');
  head.writeUInt32BE(0x5f000000, 2 + name.length);
  return Buffer.concat([head, data]);
}

/**
 * `inner` (any bytes) encrypted as one SEIPD v1 packet with a good MDC, as fspool and gpg write
 * it, under the session key `key` (`cipher`: Node's name of AES in CFB mode of its size).
 */
export function sealSeipd(inner: Buffer, key: Buffer, cipher = 'aes-256-cfb', form: Form = { kind: 'new' }): Buffer {
  const prefix = randomBytes(16);
  const plain = Buffer.concat([prefix, prefix.subarray(14), inner, Buffer.from([0xd3, 0x14])]);
  const mdc = createHash('sha1').update(plain).digest();
  const c = createCipheriv(cipher, key, Buffer.alloc(16));
  const body = Buffer.concat([Buffer.from([1]), c.update(Buffer.concat([plain, mdc])), c.final()]);
  return encodePacket({ tag: 18, body }, form);
}

/** Where each packet of `b` starts (as far as it splits). */
export function packetStarts(b: Buffer): number[] {
  const starts: number[] = [];
  let at = 0;
  while (at < b.length) {
    starts.push(at);
    let h;
    try {
      h = readPacketHead(b, at);
    } catch {
      break;
    }
    if (!h || h.body.kind !== 'definite') break;
    at += h.size + h.body.length;
  }
  return starts;
}
