// Encode and decode Filespooler 1.2 packet headers, byte for byte as fspl 1.2.2 does.
// Pure functions over buffers: no I/O here (see spec/packet-format.md).
import type { Decoder, DecoderOptions } from '@msgpack/msgpack';
import { ByteRun, forLibrary, type Rewrites, RUN_TYPE } from './libraryForm.js';
import { readCanonical } from './canonical.js';
import { crc32 } from './crc32.js';
import { checkShape } from './msgpackShape.js';
import { asciiRun, latin1 } from './msgpackTypes.js';
import { type CmdType, type Header, I64_MAX, I64_MIN, PacketError, STREAM_ID, STREAM_KEY, U64_MAX } from './header.js';

export { PacketError, STREAM_ID, STREAM_KEY };

export const MAGIC = Buffer.from('*FILESPOOLER', 'latin1');
export const FORMAT_VERSION = 1;
/** magic (12) + version (2) + metadata length (8) + metadata CRC (4) + prefix CRC (4). */
export const PREFIX_LEN = 30;
/**
 * Upper bound on the metadata length L. fspl has none and aborts trying to allocate a lying
 * L; a real header is params plus env, which the kernel caps at a few MiB of argv/environ, and
 * each byte costs at most two bytes of MessagePack. 16 MiB leaves room and is never allocated
 * before the prefix CRC has vouched for L.
 */
export const MAX_METADATA_LEN = 16 * 1024 * 1024;

let coders: { plain: Decoder; runs: Decoder } | undefined;
/**
 * The MessagePack decoders, made on first use: a command that reads no header (cron polling an
 * empty queue) does not load the library. In the bundle it is required here, so evaluated then;
 * from source (vitest), it is node_modules'. `runs`: the one for metadata libraryForm.ts rewrote,
 * which gives its runs back; in any other metadata an extension of that type is just that.
 */
function msgpack(runs = false): Decoder {
  if (!coders) {
    const m = require('@msgpack/msgpack') as typeof import('@msgpack/msgpack');
    const extensionCodec = new m.ExtensionCodec();
    // The rewritten buffer is ours: a run is a view of it.
    extensionCodec.register({ type: RUN_TYPE, encode: () => null, decode: (data) => new ByteRun(data) });
    // Strings are bytes to serde, fspl's reader: a name that is not UTF-8 names no field (the
    // shape walk reads names so too). The library's own UTF-8 reader is lenient, and reads
    // `c1 b3 65 71` (an "s" in two bytes) as "seq": a key fspl ignores would take seq's place.
    // So names are read byte for byte, and string values handed over as bytes.
    const options = { useBigInt64: true, rawStrings: true, keyDecoder: BYTE_NAMES, mapKeyConverter: mapKey };
    coders = { plain: new m.Decoder(options), runs: new m.Decoder({ ...options, extensionCodec }) };
  }
  return runs ? coders.runs : coders.plain;
}

/**
 * Map keys that are strings, one character per byte: how serde compares a name with a field's.
 * `__proto__` is no field's name, and the library refuses that key outright (fspl takes it as
 * any unknown key): it becomes the name nothing looks up.
 */
const BYTE_NAMES: NonNullable<DecoderOptions['keyDecoder']> = {
  canBeCached: () => true,
  decode: (b, at, n) => {
    const name = latin1(b, at, n);
    return name === '__proto__' ? UNNAMED : name;
  },
};

/**
 * The metadata's MessagePack, written here rather than by @msgpack/msgpack: fspl writes every
 * byte string as an array of integers, one per byte, and a header at the 16 MiB bound holds
 * millions of them, which the library encodes one call each (seconds of a processor's main
 * thread, for a packet anyone may drop in jobs/). The forms are the library's, which are
 * fspl's: the shortest for each integer and container (test/property.test.ts compares the two
 * on generated headers).
 */
class MetaWriter {
  /** What is written so far, before `buf`'s first `at` bytes: one copy of each into the result. */
  private readonly parts: Uint8Array[] = [];
  private size = 0;
  private buf = Buffer.allocUnsafe(256);
  private at = 0;

  /** Room for n more bytes in `buf`: a full one joins the parts, never copied to grow. */
  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    this.flush();
    this.buf = Buffer.allocUnsafe(Math.max(256, n));
  }

  private flush(): void {
    if (this.at === 0) return;
    this.parts.push(this.buf.subarray(0, this.at));
    this.size += this.at;
    this.buf = this.buf.subarray(this.at);
    this.at = 0;
  }

  /** A container's length: `fix` + n below `fixMax`, else the 16- or 32-bit form. */
  private length(n: number, fix: number, fixMax: number, w16: number, w32: number): void {
    this.room(5);
    if (n < fixMax) this.buf[this.at++] = fix | n;
    else if (n < 0x10000) {
      this.buf[this.at++] = w16;
      this.buf.writeUInt16BE(n, this.at);
      this.at += 2;
    } else {
      this.buf[this.at++] = w32;
      this.buf.writeUInt32BE(n, this.at);
      this.at += 4;
    }
  }

  array(n: number): void {
    this.length(n, 0x90, 16, 0xdc, 0xdd);
  }

  map(n: number): void {
    this.length(n, 0x80, 16, 0xde, 0xdf);
  }

  /** A string of ASCII (the keys, a variant, a stream id: never longer than 255). */
  str(s: string): void {
    this.room(2 + s.length);
    if (s.length < 32) this.buf[this.at++] = 0xa0 | s.length;
    else {
      this.buf[this.at++] = 0xd9;
      this.buf[this.at++] = s.length;
    }
    this.at += this.buf.write(s, this.at, 'latin1');
  }

  int(n: bigint): void {
    this.room(9);
    const b = this.buf;
    if (n >= 0n) {
      if (n < 0x80n) b[this.at++] = Number(n);
      else if (n < 0x100n) {
        b[this.at++] = 0xcc;
        b[this.at++] = Number(n);
      } else if (n < 0x10000n) {
        b[this.at++] = 0xcd;
        b.writeUInt16BE(Number(n), this.at);
        this.at += 2;
      } else if (n < 0x100000000n) {
        b[this.at++] = 0xce;
        b.writeUInt32BE(Number(n), this.at);
        this.at += 4;
      } else {
        b[this.at++] = 0xcf;
        b.writeBigUInt64BE(n, this.at);
        this.at += 8;
      }
    } else if (n >= -0x20n) b[this.at++] = Number(n) & 0xff;
    else if (n >= -0x80n) {
      b[this.at++] = 0xd0;
      b.writeInt8(Number(n), this.at++);
    } else if (n >= -0x8000n) {
      b[this.at++] = 0xd1;
      b.writeInt16BE(Number(n), this.at);
      this.at += 2;
    } else if (n >= -0x80000000n) {
      b[this.at++] = 0xd2;
      b.writeInt32BE(Number(n), this.at);
      this.at += 4;
    } else {
      b[this.at++] = 0xd3;
      b.writeBigInt64BE(n, this.at);
      this.at += 8;
    }
  }

  /** A byte string as fspl writes it: an array of integers, a byte below 128 as itself, others after 0xcc. */
  bytes(v: Uint8Array): void {
    this.array(v.length);
    if (asciiRun(v, 0, v.length)) {
      // Bytes below 128 are themselves: the param's own bytes are a part.
      this.flush();
      this.parts.push(v);
      this.size += v.length;
      return;
    }
    this.room(2 * v.length);
    const b = this.buf;
    let at = this.at;
    for (let i = 0; i < v.length; i++) {
      const x = v[i]!;
      if (x >= 0x80) b[at++] = 0xcc;
      b[at++] = x;
    }
    this.at = at;
  }

  /** The metadata, in a buffer that leaves `before` bytes before it (the prefix's room). */
  done(before: number): Buffer {
    this.flush();
    const out = Buffer.allocUnsafe(before + this.size);
    let at = before;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/** The metadata, `before` bytes into the buffer returned. */
function encodeMeta(h: Header, before: number): Buffer {
  const w = new MetaWriter();
  // fspl ignores unknown keys: a packet with a stream id is still an fspl packet. Without one
  // the map is fspl's three keys, byte for byte.
  w.map(h.stream === undefined ? 3 : 4);
  w.str('seq');
  w.int(h.seq);
  w.str('ctime');
  w.array(2);
  w.int(h.ctimeSecs);
  w.int(BigInt(h.ctimeNanos));
  w.str('cmd_type');
  const cmd = h.cmd;
  if (cmd.kind !== 'Command') w.str(cmd.kind);
  else {
    w.map(1);
    w.str('Command');
    w.map(2);
    w.str('params');
    w.array(cmd.params.length);
    for (const p of cmd.params) w.bytes(p);
    w.str('env');
    w.array(cmd.env.length);
    for (const [k, v] of cmd.env) {
      w.array(2);
      w.bytes(k);
      w.bytes(v);
    }
  }
  if (h.stream !== undefined) {
    w.str(STREAM_KEY);
    w.str(h.stream);
  }
  return w.done(before);
}

/** The whole header: 30-byte prefix, then the MessagePack metadata. The payload follows it. */
export function encodeHeader(h: Header): Buffer {
  const kept = written.get(h) ?? (h as Partial<Encoded>)[ENCODED]?.();
  if (kept) return kept;
  checkHeader(h);
  const out = encodeMeta(h, PREFIX_LEN);
  const meta = out.subarray(PREFIX_LEN);
  MAGIC.copy(out, 0);
  out.writeUInt16BE(FORMAT_VERSION, 12);
  out.writeBigUInt64BE(BigInt(meta.length), 14);
  out.writeUInt32BE(crc32(meta), 22);
  out.writeUInt32BE(crc32(out.subarray(0, 26)), 26);
  if (out.length >= KEEP_WRITTEN) written.set(h, out);
  return out;
}

/**
 * Large headers, encoded: the header cache and the packet's id each encode a header they read,
 * and for one of megabytes (anyone may drop one in jobs/) each time cost ~100 ms of fresh memory
 * and its copies. A header is never changed once made, nor its encoding once returned.
 */
const written = new WeakMap<Header, Buffer>();
const KEEP_WRITTEN = 64 * 1024;

/**
 * A header that holds its own encoding, as encodeHeader wrote it (the header cache's rows): its
 * id and its row need no decoding of it, which for a header of megabytes costs a second and
 * more, at every look at the queue (a status, each scrape of serve's metrics).
 */
export const ENCODED = Symbol('the header as encodeHeader wrote it');
export interface Encoded {
  [ENCODED](): Buffer;
}


function checkHeader(h: Header): void {
  if (h.stream !== undefined && !STREAM_ID.test(h.stream)) throw new PacketError(`stream id "${h.stream}" is not 32 lower-case hex digits`);
  if (h.seq < 0n || h.seq > U64_MAX) throw new PacketError(`sequence number ${h.seq} is not a u64`);
  if (h.ctimeSecs < I64_MIN || h.ctimeSecs > I64_MAX) throw new PacketError(`ctime seconds ${h.ctimeSecs} out of range`);
  if (!Number.isInteger(h.ctimeNanos) || h.ctimeNanos < 0 || h.ctimeNanos >= 1e9) {
    throw new PacketError(`ctime nanoseconds ${h.ctimeNanos} out of range (must be below 1000000000)`);
  }
}

/**
 * Check the 30-byte prefix and return the metadata length L and its expected CRC.
 * The order of checks is fspl's: magic, version, prefix CRC; then our bound on L.
 */
export function parsePrefix(prefix: Uint8Array): { metaLen: number; metaCrc: number } {
  if (prefix.length < PREFIX_LEN) {
    throw new PacketError(`truncated header: ${prefix.length} of ${PREFIX_LEN} prefix bytes`);
  }
  const b = Buffer.from(prefix.buffer, prefix.byteOffset, PREFIX_LEN);
  if (MAGIC.compare(b, 0, MAGIC.length) !== 0) throw new PacketError('not a filespooler packet (bad magic)');
  const version = b.readUInt16BE(12);
  if (version !== FORMAT_VERSION) throw new PacketError(`unsupported packet format version ${version} (expected 1)`);
  if (crc32(b.subarray(0, 26)) !== b.readUInt32BE(26)) throw new PacketError('header prefix CRC mismatch');
  // L is a u64; anything of 2^32 or more is far beyond the limit, so the high word decides.
  const high = b.readUInt32BE(14);
  const low = b.readUInt32BE(18);
  if (high !== 0 || low > MAX_METADATA_LEN) {
    throw new PacketError(`metadata length ${b.readBigUInt64BE(14)} exceeds the limit of ${MAX_METADATA_LEN} bytes`);
  }
  return { metaLen: low, metaCrc: b.readUInt32BE(22) };
}

/** Check the metadata CRC and decode the metadata into a Header. */
export function parseMetadata(meta: Uint8Array, expectedCrc: number): Header {
  if (crc32(meta) !== expectedCrc) throw new PacketError('metadata CRC mismatch');
  return readCanonical(meta) ?? decodeAnyForm(meta);
}

/**
 * Metadata in any form fspl reads (the shape walk, then the library), as parseMetadata reads
 * what is not in the canonical form; exported for the tests that hold the two readers equal.
 * The library is given it as libraryForm.ts writes it; the tests compare that, `rewrite` by
 * `rewrite`, with the library's reading of the metadata as it is.
 */
export function decodeAnyForm(meta: Uint8Array, rewrite?: Rewrites): Header {
  const shape = checkShape(meta);
  let value: unknown;
  try {
    const rewritten = forLibrary(meta, rewrite);
    value = rewritten ? msgpack(true).decode(rewritten) : msgpack().decode(meta);
  } catch (e) {
    // fspl ignores spare bytes after the map inside L: then take the first object only.
    value = firstObject(meta, e);
  }
  const header = headerFrom(value);
  // Two stream ids are none: the decoder kept the last, and neither can be trusted over the other.
  if (shape.streamRepeated) delete header.stream;
  return header;
}

function firstObject(meta: Uint8Array, whole: unknown): unknown {
  if (!(whole instanceof RangeError && /^Extra /.test(whole.message))) {
    throw new PacketError(`metadata is not valid MessagePack: ${(whole as Error).message}`);
  }
  // The generator is closed at once: left open, it keeps the shared decoder marked as in use,
  // and every later decode then goes to a copy the library makes of it without our key
  // converter (which refuses a name given as a bin, and misreads a field given by its number).
  const objects = msgpack().decodeMulti(meta);
  try {
    const first = objects.next();
    if (first.done) throw new PacketError('empty metadata');
    return first.value;
  } finally {
    objects.return(undefined);
  }
}

/** Decode a whole header held in one buffer (prefix + metadata); returns it and its length. */
export function decodeHeader(buf: Uint8Array): { header: Header; length: number } {
  const { metaLen, metaCrc } = parsePrefix(buf);
  if (buf.length < PREFIX_LEN + metaLen) {
    throw new PacketError(`truncated header: metadata is ${metaLen} bytes, only ${buf.length - PREFIX_LEN} present`);
  }
  const header = parseMetadata(buf.subarray(PREFIX_LEN, PREFIX_LEN + metaLen), metaCrc);
  return { header, length: PREFIX_LEN + metaLen };
}

// ---- Reading the decoded MessagePack value, accepting what fspl 1.2.2 accepts ----

/**
 * serde, fspl's reader, takes a struct's field or an enum's variant from a map key given by its
 * name (a str, or a bin of the same bytes) or by its index (an unsigned integer). Decoded, a
 * key becomes a property name that keeps the two apart: a name stays itself, index N becomes
 * `\0#N`, and a name that itself begins with NUL moves to `\0s...`, so that no key passes for
 * an index. Other keys (nil, booleans, containers: the shape walk refuses them in the header's
 * own maps, as serde does) and `__proto__` become `\0?`, which nothing looks up.
 */
const INDEX = '\0#';
const UNNAMED = '\0?';
function mapKey(k: unknown): string {
  if (k instanceof Uint8Array) k = latin1(k);
  if (typeof k === 'string') return k === '__proto__' || k === UNNAMED ? UNNAMED : k.startsWith('\0') ? `\0s${k}` : k;
  if (typeof k === 'number' || typeof k === 'bigint') return `${INDEX}${k}`;
  return UNNAMED;
}

/** fspl's command types in the order it declares them: serde's variant indexes. */
const VARIANTS = ['Command', 'NOP', 'Fail'];

function variantAt(i: number | bigint | string): string {
  const v = VARIANTS[Number(i)];
  if (v === undefined || String(Number(i)) !== String(i)) throw new PacketError(`cmd_type variant ${i} is not one of 0 (Command), 1 (NOP), 2 (Fail)`);
  return v;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/**
 * An integer field. The decoder gives 64-bit integers as BigInt and smaller ones as numbers,
 * and floats as numbers too: a number outside the 32-bit range, or with a fraction, was a float,
 * which fspl refuses where it wants an integer. (A float holding a small whole number cannot be
 * told apart here and is accepted.)
 */
function toBigInt(v: unknown, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 32) return BigInt(v);
  throw new PacketError(`${what} is not an integer`);
}

function bytesFrom(v: unknown, what: string): Buffer {
  if (v instanceof ByteRun) return Buffer.from(v.bytes.buffer, v.bytes.byteOffset, v.bytes.byteLength);
  if (!Array.isArray(v)) throw new PacketError(`${what} is not a byte array`);
  const out = Buffer.allocUnsafe(v.length);
  for (let i = 0; i < v.length; i++) {
    // Any integer form that holds 0..255, as fspl takes it; the 64-bit forms decode as BigInt.
    const x = typeof v[i] === 'bigint' && v[i] >= 0n && v[i] <= 255n ? Number(v[i]) : v[i];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 255) {
      throw new PacketError(`${what} is not a byte array`);
    }
    out[i] = x;
  }
  return out;
}

/** serde accepts a struct as a map (by field name) or as an array (by position). */
function fields(v: unknown, names: string[], what: string): unknown[] {
  if (Array.isArray(v)) {
    // serde takes a struct's fields by position only from an array of exactly as many.
    if (v.length !== names.length) throw new PacketError(`${what} has ${v.length} fields, expected ${names.length}`);
    return v;
  }
  if (isMap(v)) {
    // By name or by index: the shape walk has refused a field given both ways.
    return names.map((n, i) => {
      if (Object.hasOwn(v, n)) return v[n];
      if (Object.hasOwn(v, `${INDEX}${i}`)) return v[`${INDEX}${i}`];
      throw new PacketError(`${what} lacks field "${n}"`);
    });
  }
  throw new PacketError(`${what} is neither a map nor an array`);
}

function cmdFrom(v: unknown): CmdType {
  let variant: string;
  let body: unknown = null;
  if (v instanceof Uint8Array) {
    variant = latin1(v);
  } else if (typeof v === 'number' || typeof v === 'bigint') {
    variant = variantAt(v);
  } else if (isMap(v) && Object.keys(v).length === 1) {
    const key = Object.keys(v)[0]!;
    variant = key.startsWith(INDEX) ? variantAt(key.slice(INDEX.length)) : key.startsWith('\0s') ? key.slice(2) : key;
    body = v[key];
  } else {
    throw new PacketError('cmd_type is not a known command type');
  }
  switch (variant) {
    case 'NOP':
    case 'Fail':
      if (body !== null) throw new PacketError(`cmd_type ${variant} carries unexpected data`);
      return { kind: variant };
    case 'Command': {
      if (body === null) throw new PacketError('cmd_type Command has no params/env');
      const [params, env] = fields(body, ['params', 'env'], 'Command');
      if (!Array.isArray(params)) throw new PacketError('Command params is not an array');
      if (!Array.isArray(env)) throw new PacketError('Command env is not an array');
      return {
        kind: 'Command',
        params: params.map((p, i) => bytesFrom(p, `param ${i + 1}`)),
        env: env.map((pair, i) => {
          if (!Array.isArray(pair) || pair.length !== 2) throw new PacketError(`env entry ${i + 1} is not a pair`);
          return [bytesFrom(pair[0], `env key ${i + 1}`), bytesFrom(pair[1], `env value ${i + 1}`)];
        }),
      };
    }
    default:
      throw new PacketError(`unknown cmd_type ${JSON.stringify(variant)}`);
  }
}

function headerFrom(v: unknown): Header {
  const [seqV, ctimeV, cmdV] = fields(v, ['seq', 'ctime', 'cmd_type'], 'metadata');
  const seq = toBigInt(seqV, 'seq');
  if (seq < 0n || seq > U64_MAX) throw new PacketError(`seq ${seq} is not a u64`);
  if (!Array.isArray(ctimeV) || ctimeV.length !== 2) throw new PacketError('ctime is not a [seconds, nanoseconds] pair');
  const ctimeSecs = toBigInt(ctimeV[0], 'ctime seconds');
  if (ctimeSecs < I64_MIN || ctimeSecs > I64_MAX) throw new PacketError(`ctime seconds ${ctimeSecs} out of range`);
  const nanos = toBigInt(ctimeV[1], 'ctime nanoseconds');
  if (nanos < 0n || nanos >= 1_000_000_000n) {
    throw new PacketError(`ctime nanoseconds ${nanos} out of range (must be below 1000000000)`);
  }
  const header: Header = { seq, ctimeSecs, ctimeNanos: Number(nanos), cmd: cmdFrom(cmdV) };
  // Read only as 32 hex digits (a str, or a bin of them); anything else under the key is ignored, as fspl ignores it.
  const stream = isMap(v) ? v[STREAM_KEY] : undefined;
  const text = stream instanceof Uint8Array ? latin1(stream) : undefined;
  if (text !== undefined && STREAM_ID.test(text)) header.stream = text;
  return header;
}

/**
 * Collects a header from bytes arriving in pieces (a pipe, a stream), without reading past it:
 * `needed` says how many more bytes complete the current step, so a reader of an fd can ask
 * for exactly that and leave the fd positioned at the payload.
 */
export class HeaderReader {
  private readonly parts: Buffer[] = [];
  private have = 0;
  private meta: { metaLen: number; metaCrc: number } | undefined;
  header: Header | undefined;
  /** Bytes pushed beyond the end of the header: the start of the payload. */
  rest: Buffer = Buffer.alloc(0);

  get needed(): number {
    if (this.header) return 0;
    return (this.meta ? PREFIX_LEN + this.meta.metaLen : PREFIX_LEN) - this.have;
  }

  /** Length of the whole header, once the prefix has been read. */
  get headerLength(): number | undefined {
    return this.meta ? PREFIX_LEN + this.meta.metaLen : undefined;
  }

  /** Feed bytes; returns true once the header is complete. Throws PacketError on bad input. */
  push(chunk: Buffer): boolean {
    if (this.header) {
      this.rest = Buffer.concat([this.rest, chunk]);
      return true;
    }
    this.parts.push(chunk);
    this.have += chunk.length;
    if (!this.meta && this.have >= PREFIX_LEN) {
      const all = Buffer.concat(this.parts);
      this.parts.length = 0;
      this.parts.push(all);
      this.meta = parsePrefix(all);
    }
    if (this.meta && this.have >= PREFIX_LEN + this.meta.metaLen) {
      const { metaLen, metaCrc } = this.meta;
      // A reader of an fd asks for the prefix, then for the metadata: that second read is the
      // metadata, and is not copied (a copy of megabytes is not free).
      const after = this.parts.length === 2 && this.parts[0]!.length === PREFIX_LEN ? this.parts[1]! : Buffer.concat(this.parts).subarray(PREFIX_LEN);
      this.header = parseMetadata(after.subarray(0, metaLen), metaCrc);
      this.rest = after.subarray(metaLen);
      this.parts.length = 0;
      return true;
    }
    return false;
  }

  /** The input ended: say what was missing. */
  endError(): PacketError {
    if (this.have === 0) return new PacketError('empty input: no packet header');
    const start = Buffer.concat(this.parts).subarray(0, MAGIC.length);
    if (!MAGIC.subarray(0, start.length).equals(start)) return new PacketError('not a filespooler packet (bad magic)');
    if (!this.meta) return new PacketError(`truncated header: ${this.have} of ${PREFIX_LEN} prefix bytes`);
    return new PacketError(`truncated header: metadata is ${this.meta.metaLen} bytes, only ${this.have - PREFIX_LEN} present`);
  }
}
