// queue-payload and stdin-payload: the payload alone, to stdout, in large unbuffered writes.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { openDecoded } from '../codec/external.js';
import { FspoolError } from '../errors.js';
import { readHeaderFromFd } from '../queue/jobfile.js';
import { copyFd, writeAll } from '../sys/fd.js';

/** Copy the payload of the job file at `path` to `outFd`, through `decoder` if given. */
export async function writeJobPayload(path: string, outFd: number, decoder?: string): Promise<void> {
  const fd = openSync(path, 'r');
  try {
    if (!decoder) {
      readHeaderFromFd(fd, fstatSync(fd).size);
      copyFd(fd, outFd);
      return;
    }
    const d = await openDecoded(decoder, fd);
    try {
      for await (const chunk of d.payload) writeAll(outFd, chunk);
    } catch (e) {
      d.abort();
      throw e;
    }
    // The decoder's verdict comes last: what was written so far may be incomplete.
    await d.verify().catch((e: Error) => {
      throw new FspoolError(`${e.message}: the payload written is incomplete or corrupt`);
    });
  } finally {
    closeSync(fd);
  }
}

/** stdin-payload: header from fd 0, then the rest of fd 0 to `outFd`. */
export function writeStdinPayload(outFd: number): void {
  readHeaderFromFd(0);
  copyFd(0, outFd);
}
