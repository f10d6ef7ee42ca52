// A packet's identity: the first 16 bytes of SHA-256 over its header as fspool encodes it
// (seq, creation time to the nanosecond, command, params, variables, and the stream id when it
// has one). Two files with the same identity are copies of one packet. The payload is not
// hashed (it may be gigabytes): a sender never makes two packets with one seq and one
// nanosecond. The journal records runs by it (spec/state-db.md) and receipts acknowledge by it
// (spec/receipts.md).
import { native } from '../sys/native.js';
import { encodeHeader } from './codec.js';
import type { Header } from './header.js';

/** The identity as 32 lower-case hex digits (the journal's `packet` column). */
export function packetId(h: Header): string {
  return native().sha256(encodeHeader(h)).toString('hex', 0, 16);
}
