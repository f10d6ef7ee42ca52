// Undoing whole-packet encodings layer by layer (zstd and OpenPGP in any order, recognised by
// their leading bytes; spec/encoding.md) until an fspl header appears. No processes, no files:
// the decode worker (src/codec/decodeWorker.ts) runs this as well as the main thread.
import { HeaderReader, PacketError } from '../packet/codec.js';
import type { Header } from '../packet/header.js';
import { allocated, collectIfDue } from '../sys/youngGc.js';
import { peek } from './chunks.js';
import type { Keyring } from './keys.js';
import { type OpenPGPLayer, openpgpLayer, requireSignature } from './openpgp.js';
import { foreignCompression, SNIFF_BYTES, sniff } from './sniff.js';
import { zstdDecompress } from './zstd.js';

/** A packet whose payload is streamed in this thread: decoded, or read from a pipe. */
export interface InlinePacket {
  kind: 'stream';
  via: 'inline';
  header: Header;
  /** The payload, after the header. */
  payload: AsyncIterable<Buffer>;
  /** After the payload was read to its end: resolves if every layer verified, else rejects. */
  verify(): Promise<void>;
  /** Stop reading: kill an external decoder, release the input. */
  abort(): void;
  /** The layers undone, outermost first, e.g. ['openpgp', 'zstd']. */
  layers: string[];
  /** May the input's buffers be overwritten once the next is read (every layer and the payload's reader done with each at once)? */
  inputReusable?: () => boolean;
}

/** A plain fspl packet in a regular file: the fd is left at the payload (zero-copy). */
export interface RawPacket {
  kind: 'raw';
  header: Header;
  headerLength: number;
}

/**
 * A packet decoded by the decode worker (src/codec/decodeThread.ts): its bytes never pass
 * through this thread. `drain` decodes the payload to its end into a sink, verifying every layer.
 */
export interface WorkerPacket {
  kind: 'stream';
  via: 'worker';
  header: Header;
  layers: string[];
  drain(sink: Sink, progress?: { add(n: number): void }): Promise<Drained>;
  /** Stop decoding (nothing more is written into the sink). */
  abort(): void;
}

/**
 * Where a worker writes the payload: a pipe (the receiver's stdin), a file (positional writes
 * from offset 0: --delivery verified), an fd shared with others (stdout), or nowhere (a pass
 * that only verifies).
 */
export type Sink = { kind: 'pipe'; fd: number } | { kind: 'file'; fd: number } | { kind: 'fd'; fd: number } | { kind: 'discard' };

/** How draining ended: every layer verified, or the reason not, or the sink stopped taking bytes. */
export interface Drained {
  bytes: number;
  outcome: 'verified' | 'broken' | 'aborted' | { failure: Error };
}

export type StreamPacket = InlinePacket | WorkerPacket;
export type OpenedPacket = RawPacket | StreamPacket;

/** Layers deeper than this are refused: nothing legitimate nests that far. */
const MAX_LAYERS = 4;

/** Undo layers from `src` until an fspl header appears; read the header. */
export async function decodeChunks(
  src: AsyncIterable<Buffer>,
  ctx: { keys: Keyring },
  outer: {
    verify(): Promise<void>;
    abort(): void;
    layers: string[];
    pgpLayers?: Array<Pick<OpenPGPLayer, 'signatures'>>;
    /**
     * Whoever reads the payload is done with each chunk before asking for the next (it writes
     * it synchronously): once the header is read, a layer whose output goes only through such
     * readers (zstd, the OpenPGP fast path, then this one) reuses its output buffers, instead
     * of making garbage of every payload byte; see also InlinePacket.inputReusable.
     */
    consumedAtOnce?: boolean;
  },
): Promise<InlinePacket> {
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
  let headerRead = false;
  /** Whether each layer undone here is done with a chunk of its input before it asks for the next. */
  const atOnce: Array<() => boolean> = [];
  /** May what layer `i` produces (-1: the input) be overwritten once the next chunk is asked for? */
  const reusable = (i: number) => () => headerRead && !!outer.consumedAtOnce && atOnce.slice(i + 1).every((f) => f());
  // OpenPGP layers undone upstream (in another thread) count for a required signature too.
  const pgpLayers: Array<Pick<OpenPGPLayer, 'signatures'>> = [...(outer.pgpLayers ?? [])];
  try {
    for (;;) {
      const { head, all } = await peek(stream, SNIFF_BYTES);
      stream = all;
      const kind = sniff(head);
      if (kind === 'fspl') break;
      if (layers.length >= MAX_LAYERS) throw new PacketError(`more than ${MAX_LAYERS} layers of encoding`);
      if (kind === 'zstd') {
        stream = await zstdDecompress(stream, reusable(atOnce.length));
        atOnce.push(() => true);
        layers.push('zstd');
      } else if (kind === 'openpgp') {
        const layer = await openpgpLayer(stream, head, ctx.keys, reusable(atOnce.length));
        atOnce.push(() => layer.atOnce === true);
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
    // The rest of the last chunk is the payload's first: it is passed on before the next is made.
    headerRead = true;
    let complete = false;
    async function* payload(): AsyncGenerator<Buffer> {
      if (reader.rest.length > 0) yield reader.rest;
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        yield r.value;
        // Also here: one read can make much output (zstd: 30 MB from 256 KiB of repetitive text,
        // counted where it is made, src/codec/zstd.ts).
        collectIfDue();
      }
      complete = true;
    }
    return {
      kind: 'stream',
      via: 'inline',
      inputReusable: reusable(-1),
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

/** Why bytes starting with `head` (after `layers` were undone) are no packet, and what would read them. */
function notAPacket(head: Buffer, layers: string[]): string {
  const after = layers.length ? ` after ${layers.join(', ')}` : '';
  const foreign = foreignCompression(head);
  if (foreign) return `not a filespooler packet${after} but ${foreign.name} data: decode it with -d '${foreign.decoder}' (stdin-*: ${foreign.decoder} < FILE | fspool ...)`;
  // Under OpenPGP, garbage is what a wrong key or passphrase decrypts to (src/codec/seipd.ts).
  if (layers.at(-1) === 'openpgp') return `not a filespooler packet${after} (bad magic; wrong key or passphrase, or not zstd or OpenPGP either)`;
  if (layers.length) return `not a filespooler packet${after} (bad magic: the ${layers.at(-1)} data holds something else)`;
  return 'not a filespooler packet (bad magic; not zstd or OpenPGP either)';
}
