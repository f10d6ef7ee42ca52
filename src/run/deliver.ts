// Delivering a decoded payload into the receiver's stdin pipe, with the EOF rule:
// the receiver sees a clean EOF only after the whole payload was written and the source
// (an external decoder, later zstd/OpenPGP) has verified it. Otherwise its process group is
// killed first and only then is the pipe closed, so it can never take a truncated stream
// for a complete one.
import type { Socket } from 'node:net';
import type { Progress } from '../progress.js';
import type { Receiver } from './receiver.js';

export interface PayloadStream {
  chunks: AsyncIterable<Buffer>;
  /** Resolves when the source verified what it produced; rejects with the reason otherwise. */
  verify(): Promise<void>;
  /** Stop the source early. */
  abort(): void;
}

export interface Delivery {
  bytes: number;
  /** The receiver stopped taking input (exited or closed stdin) before the end. */
  early: boolean;
  /** Why the payload could not be delivered whole; the receiver was killed before EOF. */
  failure?: string;
}

interface Pumped {
  bytes: number;
  broken: boolean;
  sourceError?: unknown;
}

async function pump(src: AsyncIterable<Buffer>, sink: Socket, progress?: Progress): Promise<Pumped> {
  let bytes = 0;
  try {
    for await (const chunk of src) {
      if (sink.destroyed) return { bytes, broken: true };
      if (!sink.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            sink.off('drain', done);
            sink.off('close', done);
            resolve();
          };
          sink.on('drain', done);
          sink.on('close', done);
        });
      }
      bytes += chunk.length;
      progress?.add(chunk.length);
    }
    return { bytes, broken: sink.destroyed };
  } catch (e) {
    return { bytes, broken: false, sourceError: e };
  }
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export async function deliver(receiver: Receiver, src: PayloadStream, progress?: Progress): Promise<Delivery> {
  const sink = receiver.stdin!;
  let pumped: Pumped | undefined;
  const pumping = pump(src.chunks, sink, progress).then((p) => (pumped = p));
  await Promise.race([pumping, receiver.done]);

  if (!pumped) {
    // The receiver exited while input was still coming: whatever is left of its group must not
    // read on to a clean EOF.
    receiver.kill('SIGKILL');
    src.abort();
    sink.destroy();
    const p = await pumping;
    return { bytes: p.bytes, early: true };
  }
  if (pumped.sourceError !== undefined || pumped.broken) {
    src.abort();
    if (pumped.sourceError !== undefined) {
      receiver.kill('SIGKILL');
      await receiver.done;
      sink.destroy();
      return { bytes: pumped.bytes, early: false, failure: message(pumped.sourceError) };
    }
    sink.destroy();
    return { bytes: pumped.bytes, early: true };
  }
  // The source's verdict (a decoder's exit, a signature) may be slow to come; if the receiver
  // ends first (timeout, signal, its own choice) stop waiting for it.
  const verdict = await Promise.race([
    src.verify().then(
      () => 'verified' as const,
      (e: unknown) => e,
    ),
    receiver.done.then(() => 'exited' as const),
  ]);
  if (verdict === 'exited') {
    src.abort();
    sink.destroy();
    return { bytes: pumped.bytes, early: true };
  }
  if (verdict !== 'verified') {
    receiver.kill('SIGKILL');
    await receiver.done;
    sink.destroy();
    return { bytes: pumped.bytes, early: false, failure: message(verdict) };
  }
  receiver.endInput();
  return { bytes: pumped.bytes, early: false };
}
