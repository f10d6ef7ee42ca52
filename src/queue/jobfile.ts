// Reading a packet header from an fd without reading past it, so that the fd is left at the
// payload (the receiver gets it as stdin and reads exactly the payload).
import { closeSync, fstatSync, openSync } from 'node:fs';
import { HeaderReader, PacketError, PREFIX_LEN } from '../packet/codec.js';
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

export interface OpenJob extends FdHeader {
  fd: number;
  size: number;
}

/** Open a job file and read its header; the returned fd sits at the payload. */
export function openJobFile(path: string): OpenJob {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    return { fd, size, ...readHeaderFromFd(fd, size) };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Just the header of a job file. */
export function readJobHeader(path: string): FdHeader {
  const job = openJobFile(path);
  closeSync(job.fd);
  return { header: job.header, headerLength: job.headerLength };
}
