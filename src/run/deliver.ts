// Delivering a decoded payload into the receiver's stdin pipe, with the EOF rule:
// the receiver sees a clean EOF only after the whole payload was written and the source
// (an external decoder, zstd, OpenPGP) has verified it. Otherwise its process group is
// killed first and only then is the pipe closed, so it can never take a truncated stream
// for a complete one.
//
// Two sources: a packet decoded by the decode worker writes into the pipe itself and says how
// its decoding ended, and this thread never touches its bytes (deliverFromWorker); an external
// decoder's output is copied here (pump).
import { closeSync, constants, openSync, readSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Drained, WorkerPacket } from '../codec/decode.js';
import type { Progress } from '../progress.js';
import type { Receiver } from './receiver.js';

export type PayloadStream =
  | {
      via?: 'inline';
      chunks: AsyncIterable<Buffer>;
      /** Resolves when the source verified what it produced; rejects with the reason otherwise. */
      verify(): Promise<void>;
      /** Stop the source early. */
      abort(): void;
    }
  | ({ via: 'worker' } & Pick<WorkerPacket, 'drain' | 'abort'>);

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
  if (src.via === 'worker') return deliverFromWorker(receiver, src, progress);
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

/**
 * The decode worker writes the payload into the receiver's pipe (through a descriptor of its
 * own, which is not the one whose closing gives EOF), and says how decoding ended; this thread
 * decides EOF: on 'verified' the receiver may see it, on anything else its group is killed
 * first.
 */
async function deliverFromWorker(receiver: Receiver, src: Extract<PayloadStream, { via: 'worker' }>, progress?: Progress): Promise<Delivery> {
  const sink = receiver.stdin!;
  const fd = receiver.stdinFd!;
  const draining = src.drain({ kind: 'pipe', fd }, progress);
  const first = await Promise.race([draining, receiver.done.then(() => 'exited' as const)]);
  if (first === 'exited') {
    // The receiver exited while input was still coming (or being verified): whatever is left
    // of its group must not read on to a clean EOF.
    receiver.kill('SIGKILL');
    src.abort();
    const d = await unblocked(draining, fd);
    sink.destroy();
    return { bytes: d.bytes, early: true };
  }
  const d = first;
  if (d.outcome === 'verified') {
    receiver.endInput();
    return { bytes: d.bytes, early: false };
  }
  if (d.outcome === 'broken') {
    // Nothing reads the pipe any more: no EOF can be seen.
    sink.destroy();
    return { bytes: d.bytes, early: true };
  }
  // A failure kills the receiver's group; an interruption (the run was stopped, and the
  // receiver told so) lets it end as it chooses. Either way the pipe closes after it is gone.
  if (d.outcome !== 'aborted') receiver.kill('SIGKILL');
  await receiver.done;
  sink.destroy();
  return { bytes: d.bytes, early: false, failure: d.outcome === 'aborted' ? 'decoding was stopped' : message(d.outcome.failure) };
}

/**
 * `draining`, once the worker stops writing. Its write can wait forever if a process outside
 * the receiver's group (which was killed) still holds the pipe without reading it: then this
 * thread reads the pipe itself, and throws the bytes away, until the worker has stopped.
 */
async function unblocked(draining: Promise<Drained>, fd: number): Promise<Drained> {
  let reader: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const waited = setTimeout(() => {
    reader = openSync(`/proc/self/fd/${fd}`, constants.O_RDONLY | constants.O_NONBLOCK);
    const scratch = Buffer.allocUnsafe(1 << 16);
    timer = setInterval(() => {
      try {
        while (readSync(reader!, scratch) > 0);
      } catch {
        /* EAGAIN: empty for now */
      }
    }, 10);
  }, 100);
  try {
    return await draining;
  } finally {
    clearTimeout(waited);
    if (timer) clearInterval(timer);
    if (reader !== undefined) closeSync(reader);
  }
}
