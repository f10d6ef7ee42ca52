// OpenPGP packet framing (RFC 4880 §4.2), as much as the fast paths need (src/codec/seipd.ts,
// src/codec/seipdEncrypt.ts): a packet's tag, a definite length, and a packet's body, which a data packet (literal, SEIPD) may
// split into partial-length parts. Pure: no I/O.

export type BodyLength =
  | { kind: 'definite'; length: number }
  /** One part of `length` bytes, more parts follow (new format only). */
  | { kind: 'partial'; length: number }
  /** Old format, length type 3: the body runs to the end of the input. */
  | { kind: 'indeterminate' };

export interface PacketHead {
  tag: number;
  /** Bytes of the header, the (first) length included. */
  size: number;
  body: BodyLength;
}

/** Body runs of one push handed on as they are; more are gathered into one buffer. */
export const MAX_RUNS = 8;

export class FramingError extends Error {
  override name = 'FramingError';
}

/** A new-format length at b[at]; undefined if b ends before it does. */
function newLength(b: Buffer, at: number): { body: BodyLength; size: number } | undefined {
  if (at >= b.length) return undefined;
  const o = b[at]!;
  if (o < 192) return { body: { kind: 'definite', length: o }, size: 1 };
  if (o < 224) return at + 1 < b.length ? { body: { kind: 'definite', length: ((o - 192) << 8) + b[at + 1]! + 192 }, size: 2 } : undefined;
  if (o < 255) return { body: { kind: 'partial', length: 2 ** (o & 0x1f) }, size: 1 };
  if (at + 4 >= b.length) return undefined;
  return { body: { kind: 'definite', length: b.readUInt32BE(at + 1) }, size: 5 };
}

/** A new-format definite length of `n` bytes, in its shortest form (what newLength reads). */
export function definiteLength(n: number): Buffer {
  if (n < 192) return Buffer.from([n]);
  if (n < 8384) return Buffer.from([((n - 192) >> 8) + 192, (n - 192) & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = 0xff;
  b.writeUInt32BE(n, 1);
  return b;
}

/** The header of the packet at b[at]; undefined if b ends inside it. Throws if b[at] starts no packet. */
export function readPacketHead(b: Buffer, at = 0): PacketHead | undefined {
  if (at >= b.length) return undefined;
  const first = b[at]!;
  if ((first & 0x80) === 0) throw new FramingError(`not an OpenPGP packet header (byte 0x${first.toString(16).padStart(2, '0')})`);
  if (first & 0x40) {
    const len = newLength(b, at + 1);
    return len && { tag: first & 0x3f, size: 1 + len.size, body: len.body };
  }
  const tag = (first >> 2) & 0x0f;
  const type = first & 3;
  if (type === 3) return { tag, size: 1, body: { kind: 'indeterminate' } };
  const n = 1 << type;
  if (at + n >= b.length) return undefined;
  return { tag, size: 1 + n, body: { kind: 'definite', length: b.readUIntBE(at + 1, n) } };
}

/**
 * The body of one packet, fed the bytes that follow its header: hands out the body bytes and,
 * once the body has ended, whatever comes after it. The body of one push comes out as subarrays
 * of the input (never copies) while it is a few runs of bytes (writers' parts are 512 bytes and
 * more: fspool's own 256 KiB, in reads of 512 KiB), and gathered into one buffer beyond
 * MAX_RUNS. Parts may be as small as 1 byte (RFC 4880 §4.2.2.4), and a buffer handed on per part
 * would cost every layer above a call per byte.
 */
export class BodyFramer {
  /** Bytes left in the current part (Infinity: to the end of the input). */
  private left: number;
  /** The current part is the last. */
  private last: boolean;
  /** The start of a part's length, when an input chunk ended inside it. */
  private lengthBytes: Buffer | undefined;
  done: boolean;

  constructor(first: BodyLength) {
    this.left = first.kind === 'indeterminate' ? Infinity : first.length;
    this.last = first.kind !== 'partial';
    this.done = this.last && this.left === 0;
  }

  push(chunk: Buffer): { body: Buffer[]; after?: Buffer } {
    const runs: Buffer[] = [];
    /** Past MAX_RUNS, the runs are gathered here. */
    let out: Buffer | undefined;
    let o = 0;
    let at = 0;
    while (at < chunk.length && !this.done) {
      if (this.left > 0) {
        const n = Math.min(this.left, chunk.length - at);
        if (out === undefined && runs.length === MAX_RUNS) {
          out = Buffer.allocUnsafe(runs.reduce((k, r) => k + r.length, 0) + chunk.length - at);
          for (const r of runs) o += r.copy(out, o);
        }
        if (out === undefined) runs.push(chunk.subarray(at, at + n));
        // Buffer.copy is a call into C++; a byte or a few are cheaper copied here.
        else if (n < 64) for (let i = at; i < at + n; i++) out[o++] = chunk[i]!;
        else o += chunk.copy(out, o, at, at + n);
        at += n;
        this.left -= n;
        if (this.left === 0 && this.last) this.done = true;
        continue;
      }
      // The length of the next part; a partial length, by far the most frequent, read inline.
      const b = chunk[at]!;
      if (this.lengthBytes === undefined && b >= 224 && b < 255) {
        at += 1;
        this.left = 2 ** (b & 0x1f);
        continue;
      }
      const held = this.lengthBytes?.length ?? 0;
      const bytes = held ? Buffer.concat([this.lengthBytes!, chunk.subarray(at, at + 5)]) : chunk.subarray(at);
      const len = newLength(bytes, 0);
      if (!len) {
        this.lengthBytes = Buffer.from(bytes);
        at = chunk.length;
        break;
      }
      this.lengthBytes = undefined;
      at += len.size - held;
      this.left = len.body.kind === 'indeterminate' ? Infinity : len.body.length;
      this.last = len.body.kind !== 'partial';
      if (this.left === 0 && this.last) this.done = true;
    }
    const body = out ? [out.subarray(0, o)] : runs;
    return this.done ? { body, after: chunk.subarray(at) } : { body };
  }

  /** At the end of the input: throws if the body is not complete. */
  end(): void {
    if (this.done || this.left === Infinity) return;
    throw new FramingError('the packet is truncated');
  }
}
