// Reading a plain packet's header from an fd without reading past it, so that the fd is left
// at the payload (the receiver gets it as stdin and reads exactly the payload).
import { fstatSync, readSync } from 'node:fs';
import { decodeHeader, HeaderReader, MAGIC, parsePrefix, PREFIX_LEN } from '../packet/codec.js';
import { PacketError } from '../packet/header.js';
import type { Header } from '../packet/header.js';
import { readUpTo } from '../sys/fd.js';

export interface FdHeader {
  header: Header;
  /** Bytes of header: the payload starts here. */
  headerLength: number;
}

/** Read the header at the fd's offset. Throws PacketError on bad or truncated input. */
export function readHeaderFromFd(fd: number, fileSize?: number): FdHeader {
  const r = new HeaderReader();
  while (r.needed > 0) {
    const want = r.needed;
    // A lying metadata length in a short file: say so without allocating what it claims.
    if (fileSize !== undefined && r.headerLength !== undefined && r.headerLength > fileSize) {
      throw new PacketError(`truncated header: metadata is ${r.headerLength - PREFIX_LEN} bytes, the file has ${fileSize} bytes in all`);
    }
    const got = readUpTo(fd, want);
    if (got.length > 0) r.push(got);
    if (got.length < want) throw r.endError();
  }
  return { header: r.header!, headerLength: r.headerLength! };
}

/**
 * The header of a plain fspl packet file, from one positional read in the common case (no
 * offset moved); undefined if the file does not start with the fspl magic (it may be encoded).
 * The scanning path: three syscalls per file, open, pread, close.
 */
export function peekPlainHeader(fd: number): Header | undefined {
  // One buffer for every peek: decoding copies what it keeps, and a scan of 10,000 files
  // should not make 10,000 buffers of garbage.
  const first = peekBuffer;
  const n = readSync(fd, first, 0, PEEK_BYTES, 0);
  const head = first.subarray(0, n);
  if (n < MAGIC.length || !head.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const { metaLen } = parsePrefix(head);
  if (PREFIX_LEN + metaLen <= n) return decodeHeader(head).header;
  // A long header: check the claimed length against the file before reading that much.
  const size = fstatSync(fd).size;
  if (PREFIX_LEN + metaLen > size) {
    throw new PacketError(`truncated header: metadata is ${metaLen} bytes, the file has ${size} bytes in all`);
  }
  const all = Buffer.allocUnsafe(PREFIX_LEN + metaLen);
  readSync(fd, all, 0, all.length, 0);
  return decodeHeader(all).header;
}

/** Covers a command header with a few hundred bytes of params and env; longer ones take a second read. */
const PEEK_BYTES = 1024;
const peekBuffer = Buffer.allocUnsafe(PEEK_BYTES);
