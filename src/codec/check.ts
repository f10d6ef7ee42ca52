// Is this a packet? What queue-write asks of its input before it becomes a job: a file that
// no reader can take for a packet (a tar stream piped in with `prepare` forgotten) would sit
// at the head of the queue as unreadable, and the queue would stall without a word.
import { readSync } from 'node:fs';
import { describe } from '../errors.js';
import { decodeHeader, MAGIC, PacketError } from '../packet/codec.js';
import { type DecodeContext, openPacket } from './decode.js';
import { NoKeyError } from './openpgp.js';
import { zlib } from '../sys/lazy.js';
import { foreignCompression, sniff, startsAsWritten } from './sniff.js';

/** What is undone of a gzip stream to see what it holds: its first output comes after at most a block's Huffman tables. */
const GZIP_PEEK_BYTES = 4096;

/**
 * Why gzip data starting with `head` holds no packet; undefined if it does, or if too little of
 * it was read to tell (`whole`: `head` is the whole file).
 */
function gzipHolds(head: Buffer, whole: boolean): string | undefined {
  let inner: Buffer;
  try {
    // Z_SYNC_FLUSH: what the bytes so far decode to, without asking for the stream's end.
    const { constants, gunzipSync } = zlib();
    inner = gunzipSync(head, { finishFlush: constants.Z_SYNC_FLUSH });
  } catch (e) {
    return `not a filespooler packet but broken gzip data (${describe(e)})`;
  }
  if (inner.length < MAGIC.length) return whole ? 'not a filespooler packet: gzip data too short to hold a packet' : undefined;
  if (!startsAsWritten(inner)) return 'not a filespooler packet: gzip data that holds something else; did you forget fspool prepare?';
  if (sniff(inner) !== 'fspl') return undefined;
  // A plain packet inside: its header, if it is all there, must be right.
  try {
    decodeHeader(inner);
  } catch (e) {
    if (!(e instanceof PacketError) || !/^truncated/.test(e.message)) return `not a filespooler packet inside gzip: ${describe(e)}`;
  }
  return undefined;
}

/**
 * Why the packet file at `fd` (a regular file, read from offset 0) is not one fspool or the
 * configured decoder can read, or undefined if it is: a plain packet's header must be whole and
 * its CRCs right; zstd is undone to find the header; an OpenPGP message is taken as it is (the
 * writer rarely holds the receiver's key, and its header is secret until decrypted). So are
 * the compressions whose readers need a decoder (-d), as fspl's manual pipes a packet through
 * gzip into queue-write: gzip's start is undone (Node's zlib) and must hold a packet, or zstd
 * or OpenPGP; the others' tools may well be missing where the packet is written.
 */
export async function notAPacket(fd: number, ctx: DecodeContext): Promise<string | undefined> {
  const head = Buffer.alloc(GZIP_PEEK_BYTES);
  const n = readSync(fd, head, 0, head.length, 0);
  if (!ctx.decoder) {
    if (sniff(head.subarray(0, n)) === 'openpgp') return undefined;
    const foreign = foreignCompression(head.subarray(0, n));
    if (foreign?.name === 'gzip') return gzipHolds(head.subarray(0, n), n < head.length);
    if (foreign) return undefined;
  }
  try {
    const p = await openPacket(fd, ctx, 0);
    if (p.kind === 'stream') p.abort();
    return undefined;
  } catch (e) {
    if (e instanceof NoKeyError) return undefined; // encrypted inside: not ours to open
    const hint = e instanceof PacketError && /bad magic/.test(e.message) ? '; did you forget fspool prepare?' : '';
    return `${describe(e)}${hint}`;
  }
}
