// Is this a packet? What queue-write asks of its input before it becomes a job: a file that
// no reader can take for a packet (a tar stream piped in with `prepare` forgotten) would sit
// at the head of the queue as unreadable, and the queue would stall without a word.
import { readSync } from 'node:fs';
import { describe } from '../errors.js';
import { PacketError } from '../packet/codec.js';
import { type DecodeContext, openPacket } from './decode.js';
import { NoKeyError } from './openpgp.js';
import { SNIFF_BYTES, sniff } from './sniff.js';

/**
 * Why the packet file at `fd` (a regular file, read from offset 0) is not one fspool or the
 * configured decoder can read, or undefined if it is: a plain packet's header must be whole and
 * its CRCs right; zstd is undone to find the header; an OpenPGP message is taken as it is (the
 * writer rarely holds the receiver's key, and its header is secret until decrypted).
 */
export async function notAPacket(fd: number, ctx: DecodeContext): Promise<string | undefined> {
  const head = Buffer.alloc(SNIFF_BYTES);
  const n = readSync(fd, head, 0, head.length, 0);
  if (sniff(head.subarray(0, n)) === 'openpgp' && !ctx.decoder) return undefined;
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
