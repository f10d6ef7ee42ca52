// An external decoder command (`-d CMD`), run as `$SHELL -c CMD` with the whole job file on
// stdin; it must write the decoded packet (header and payload) to stdout.
//
// Unlike fspl we check its exit status, and we never hand its stdout to the receiver: we read
// the header from it and copy the rest into a pipe of our own (see src/run/deliver.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { FspoolError } from '../errors.js';
import { HeaderReader } from '../packet/codec.js';
import type { Header } from '../packet/header.js';
import { killGroup } from '../run/group.js';

/** A decoder that failed: exit status, signal, or a start failure. */
export class DecoderError extends FspoolError {
  override name = 'DecoderError';
}

export interface DecodedPacket {
  header: Header;
  /** The rest of the decoded payload, in order. */
  payload: AsyncIterable<Buffer>;
  /** Resolves when the decoder exited 0; rejects with DecoderError otherwise. */
  verify(): Promise<void>;
  /** Stop the decoder now (its whole process group). */
  abort(): void;
}

function describeExit(cmd: string, code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `decoder "${cmd}" was killed by ${signal}` : `decoder "${cmd}" exited with status ${code}`;
}

/**
 * Start `cmd` on the file behind `fd` (read from its current offset) and read the header
 * from its output. Throws PacketError if the output is not a packet, DecoderError if the
 * decoder cannot start or fails before the header is complete.
 */
export async function openDecoded(cmd: string, fd: number): Promise<DecodedPacket> {
  const shell = process.env.SHELL || '/bin/sh';
  const child: ChildProcess = spawn(shell, ['-c', cmd], { stdio: [fd, 'pipe', 'inherit'], detached: true });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const stdout = child.stdout as Readable;
  const abort = () => {
    if (child.pid) killGroup(child.pid, 'SIGKILL');
    stdout.destroy();
  };
  const verify = async () => {
    const r = await exited;
    if (r.error) throw new DecoderError(`decoder "${cmd}" could not start: ${r.error.message}`);
    if (r.code !== 0 || r.signal) throw new DecoderError(describeExit(cmd, r.code, r.signal));
  };

  const it = stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const reader = new HeaderReader();
  try {
    for (;;) {
      const next = await it.next();
      if (next.done) {
        await verify();
        throw reader.endError();
      }
      if (reader.push(next.value)) break;
    }
  } catch (e) {
    abort();
    throw e;
  }

  async function* payload(): AsyncGenerator<Buffer> {
    if (reader.rest.length > 0) yield reader.rest;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { header: reader.header!, payload: payload(), verify, abort };
}
