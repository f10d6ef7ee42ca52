// An external decoder command (`-d CMD`), run as `$SHELL -c CMD` with the whole job file on
// stdin; it writes the decoded packet (header and payload, or another layer fspool decodes
// itself) to stdout.
//
// Unlike fspl we check its exit status, and we never hand its stdout to the receiver: its
// output is read here and copied into a pipe of our own (see src/run/deliver.ts). It starts
// through fspool's spawner like a receiver, so it dies with fspool, and it is killed when
// fspool gets a signal.
import { closeSync } from 'node:fs';
import type { Socket } from 'node:net';
import { FspoolError } from '../errors.js';
import { GuardedChild } from '../sys/guarded.js';
import { net } from '../sys/lazy.js';
import { native } from '../sys/native.js';

/** A decoder that failed: exit status, signal, or a start failure. */
export class DecoderError extends FspoolError {
  override name = 'DecoderError';
}

export interface DecoderOutput {
  chunks: AsyncIterable<Buffer>;
  /** Resolves when the decoder exited 0; rejects with DecoderError otherwise. */
  verify(): Promise<void>;
  /** Stop the decoder now (its whole process group). */
  abort(): void;
}

/** Something that kills helpers when their run is interrupted; returns the undo. */
export type Guard = (helper: { kill(signal: NodeJS.Signals): void }) => () => void;

/** Start `cmd` on the file behind `fd`, read from its current offset; `guard` kills it if the run is interrupted. */
export function runDecoder(cmd: string, fd: number, guard?: Guard): DecoderOutput {
  const shell = process.env.SHELL || '/bin/sh';
  const [outRead, outWrite] = native().pipe();
  let proc: GuardedChild;
  try {
    proc = new GuardedChild({ argv: [Buffer.from(shell), Buffer.from('-c'), Buffer.from(cmd)], env: [], stdio: [fd, outWrite, 'inherit'] });
  } catch (e) {
    closeSync(outRead);
    throw e;
  } finally {
    // The decoder has its copy of the write end; ours must go, or its EOF never comes.
    closeSync(outWrite);
  }
  const stdout: Socket = new (net().Socket)({ fd: outRead, readable: true, writable: false });
  const unguard = guard?.(proc) ?? (() => {});
  const exited = proc.exited.then((e) => {
    unguard();
    proc.release();
    return e;
  });
  return {
    chunks: stdout,
    async verify() {
      const e = await exited;
      if (e.startError) throw new DecoderError(`decoder "${cmd}" could not start: ${e.startError}`);
      if (e.signal) throw new DecoderError(`decoder "${cmd}" was killed by ${e.signal}`);
      if (e.code !== 0) throw new DecoderError(`decoder "${cmd}" exited with status ${e.code}`);
    },
    abort() {
      proc.kill('SIGKILL');
      stdout.destroy();
    },
  };
}
