// From the bytes of a job file (or stdin) to a packet header and its payload, undoing
// whole-packet encodings layer by layer: an external decoder (-d), then zstd and OpenPGP in
// any order, recognised by their leading bytes (spec/encoding.md).
import { fstatSync, readSync } from 'node:fs';
import { HeaderReader, PacketError } from '../packet/codec.js';
import type { Header } from '../packet/header.js';
import { readHeaderFromFd } from '../queue/jobfile.js';
import { fdChunks, fdOffset } from '../sys/fd.js';
import { after, type Timer } from '../sys/timer.js';
import { allocated, collectIfDue } from '../sys/youngGc.js';
import { peek } from './chunks.js';
import { DecoderError, type Guard, runDecoder } from './external.js';
import type { Keyring } from './keys.js';
import { type OpenPGPLayer, openpgpLayer, requireSignature } from './openpgp.js';
import { SNIFF_BYTES, sniff } from './sniff.js';
import { zstdDecompress } from './zstd.js';

export interface DecodeContext {
  /** External decoder command (`-d`), run before any built-in layer. */
  decoder?: string;
  /**
   * How long the decoder may take to produce the packet header (seconds; 0 or absent: no
   * limit). A decoder that hangs there would otherwise hang the processor, lock held.
   */
  decoderTimeoutSeconds?: number;
  keys: Keyring;
  /** Kills external decoders when the run they work for is interrupted. */
  guard?: Guard;
}

/** A packet whose payload must be streamed: decoded, or read from a pipe. */
export interface StreamPacket {
  kind: 'stream';
  header: Header;
  /** The payload, after the header. */
  payload: AsyncIterable<Buffer>;
  /** After the payload was read to its end: resolves if every layer verified, else rejects. */
  verify(): Promise<void>;
  /** Stop reading: kill an external decoder, release the input. */
  abort(): void;
  /** The layers undone, outermost first, e.g. ['openpgp', 'zstd']. */
  layers: string[];
}

/** A plain fspl packet in a regular file: the fd is left at the payload (zero-copy). */
export interface RawPacket {
  kind: 'raw';
  header: Header;
  headerLength: number;
}

export type OpenedPacket = RawPacket | StreamPacket;

/**
 * Reads of an encoded file: 256 KiB keeps openpgp.js and zstd busy, and (measured, bench/) the
 * garbage of larger reads is what drives peak RSS; memory stays bounded for any payload size.
 */
const DECODE_CHUNK = 256 * 1024;

/** Layers deeper than this are refused: nothing legitimate nests that far. */
const MAX_LAYERS = 4;

/** Undo layers from `src` until an fspl header appears; read the header. */
export async function decodeChunks(
  src: AsyncIterable<Buffer>,
  ctx: DecodeContext,
  outer: { verify(): Promise<void>; abort(): void; layers: string[] },
): Promise<StreamPacket> {
  let inputEnded = false;
  let stream: AsyncIterable<Buffer> = (async function* () {
    for await (const chunk of src) {
      allocated(chunk.length);
      yield chunk;
      collectIfDue();
    }
    inputEnded = true;
  })();
  const layers = [...outer.layers];
  const pgpLayers: OpenPGPLayer[] = [];
  try {
    for (;;) {
      const { head, all } = await peek(stream, SNIFF_BYTES);
      stream = all;
      const kind = sniff(head);
      if (kind === 'fspl') break;
      if (layers.length >= MAX_LAYERS) throw new PacketError(`more than ${MAX_LAYERS} layers of encoding`);
      if (kind === 'zstd') {
        stream = await zstdDecompress(stream);
        layers.push('zstd');
      } else if (kind === 'openpgp') {
        const layer = await openpgpLayer(stream, head, ctx.keys);
        stream = layer.plaintext;
        pgpLayers.push(layer);
        layers.push('openpgp');
      } else if (head.length === 0) {
        throw new HeaderReader().endError();
      } else {
        throw new PacketError(notAPacket(head, layers));
      }
    }

    const it = stream[Symbol.asyncIterator]();
    const reader = new HeaderReader();
    for (;;) {
      const r = await it.next();
      if (r.done) throw reader.endError();
      if (reader.push(r.value)) break;
    }
    let complete = false;
    async function* payload(): AsyncGenerator<Buffer> {
      if (reader.rest.length > 0) yield reader.rest;
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        allocated(r.value.length);
        yield r.value;
        // Also here: one read can make much output (zstd: 30 MB from 256 KiB of repetitive text).
        collectIfDue();
      }
      complete = true;
    }
    return {
      kind: 'stream',
      header: reader.header!,
      payload: payload(),
      layers,
      abort: outer.abort,
      async verify() {
        if (!complete) throw new PacketError('payload was not read to its end');
        // zstd checksums and OpenPGP integrity were checked as the stream was read to its end;
        // what is left: the external decoder's exit, and the signatures over the whole packet.
        await outer.verify();
        if (ctx.keys.requiresSignature) await requireSignature(pgpLayers);
      },
    };
  } catch (e) {
    // If the input ended early because an external decoder failed, that is the reason to give.
    if (inputEnded) await outer.verify();
    outer.abort();
    throw e;
  }
}

/**
 * Open the packet at `fd`'s current offset. A plain fspl packet in a regular file comes back
 * raw, with the fd at the payload; anything else (an encoding, a decoder, a pipe) as a stream.
 * `at`: that offset, when the caller knows it (a file it has just opened: 0), which spares
 * reading it from /proc.
 */
export async function openPacket(fd: number, ctx: DecodeContext, at?: number): Promise<OpenedPacket> {
  if (ctx.decoder) {
    const d = runDecoder(ctx.decoder, fd, ctx.guard);
    const opened = decodeChunks(d.chunks, ctx, { verify: d.verify, abort: d.abort, layers: ['decoder'] });
    const limit = ctx.decoderTimeoutSeconds;
    if (!limit) return opened;
    let timer: Timer | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = after(limit, () => {
        d.abort();
        reject(new DecoderError(`decoder "${ctx.decoder}" gave no packet header within ${limit}s (--decoder-timeout); it was killed`));
      });
    });
    try {
      return await Promise.race([opened, late]);
    } finally {
      timer?.clear();
    }
  }
  const st = fstatSync(fd);
  if (st.isFile()) {
    const head = Buffer.alloc(SNIFF_BYTES);
    const n = readSync(fd, head, 0, SNIFF_BYTES, at ?? fdOffset(fd));
    if (sniff(head.subarray(0, n)) === 'fspl') return { kind: 'raw', ...readHeaderFromFd(fd, st.size) };
  }
  const input = fdChunks(fd, DECODE_CHUNK);
  return decodeChunks(input.chunks, ctx, { verify: async () => {}, abort: input.stop, layers: [] });
}

/** Compressions fspool does not undo itself, and the decoder that does. */
const FOREIGN: Array<{ magic: Buffer; name: string; decoder: string }> = [
  { magic: Buffer.from([0x1f, 0x8b]), name: 'gzip', decoder: 'gzip -dc' },
  { magic: Buffer.from('BZh'), name: 'bzip2', decoder: 'bzip2 -dc' },
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), name: 'xz', decoder: 'xz -dc' },
  { magic: Buffer.from([0x04, 0x22, 0x4d, 0x18]), name: 'lz4', decoder: 'lz4 -dc' },
];

/** Why bytes starting with `head` (after `layers` were undone) are no packet, and what would read them. */
function notAPacket(head: Buffer, layers: string[]): string {
  const after = layers.length ? ` after ${layers.join(', ')}` : '';
  const foreign = FOREIGN.find((f) => head.subarray(0, f.magic.length).equals(f.magic));
  if (foreign) return `not a filespooler packet${after} but ${foreign.name} data: decode it with -d '${foreign.decoder}' (stdin-*: ${foreign.decoder} < FILE | fspool ...)`;
  // Under OpenPGP, garbage is what a wrong key or passphrase decrypts to (src/codec/seipd.ts).
  if (layers.at(-1) === 'openpgp') return `not a filespooler packet${after} (bad magic; wrong key or passphrase, or not zstd or OpenPGP either)`;
  if (layers.length) return `not a filespooler packet${after} (bad magic: the ${layers.at(-1)} data holds something else)`;
  return 'not a filespooler packet (bad magic; not zstd or OpenPGP either)';
}
