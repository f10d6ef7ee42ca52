// The main thread's side of the decode worker (src/codec/decodeWorker.ts): packets are decoded
// off the main thread, which only learns their header and how their decoding ended. A
// processor that runs many queues (`fspool serve`) is then never the one thread moving every
// stream's bytes (spec/encoding.md, "Decoding threads").
import { fstatSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { HeaderReader } from '../packet/codec.js';
import { packageFile } from '../sys/native.js';
import { setGcFlags } from '../sys/youngGc.js';
import type { KeyOptions } from './keys.js';
import type { Drained, Sink, WorkerPacket } from './layers.js';
import { fromThread, type ThreadError } from './threadError.js';
import { after, type Timer } from '../sys/timer.js';
import { DecoderError } from './external.js';

/** The input of a job: an fd of the main thread's, read from `at` (a regular file) or as it comes (a pipe). */
export interface Input {
  fd: number;
  at: number;
  file: boolean;
}

/**
 * Per job, shared with the worker: [ABORTED] set to stop at once (the worker may be busy, and
 * see its messages late); [HEADER] set once it has the header (until then it reads little at a
 * time: a scan needs only the header).
 */
export const ABORTED = 0;
export const HEADER = 1;
const CONTROL_INTS = 2;

export type ToDecoder =
  | { type: 'open'; id: number; input: Input; keys: KeyOptions; control: SharedArrayBuffer }
  | { type: 'drain'; id: number; sink: Sink }
  | { type: 'abort'; id: number };

export type FromDecoder =
  | { type: 'header'; id: number; header: Uint8Array; layers: string[] }
  | { type: 'failed'; id: number; error: ThreadError }
  | { type: 'progress'; id: number; bytes: number }
  | { type: 'done'; id: number; bytes: number; outcome: 'verified' | 'broken' | 'aborted' | { failure: ThreadError } };

/**
 * The decode worker's heap, at most. Decoding streams (spec/encoding.md: a processor's whole RSS
 * stays under 100 MB), but openpgp.js reads the packets inside compressed data part by part, and
 * a few KiB of compressed data can hold millions of one-byte parts: hundreds of MB of heap within
 * seconds, and more for more. That must end in an error for that packet (the worker is started
 * again for the next), not in the machine's memory.
 */
const HEAP_LIMITS = { maxOldGenerationSizeMb: 192 };

/** How long a worker told to stop a drain may take to say it has, before it is stopped whole. */
const ABORT_GRACE_SECONDS = 5;

/** Why built-in decoding was given up before the header (a DecoderError's message). */
export function builtInLate(seconds: number): string {
  return `no packet header within ${seconds}s of decoding (--decoder-timeout): OpenPGP that openpgp.js reads a byte at a time, say; decoding was stopped`;
}

/** Something that stops a job's decoding when its run is interrupted; returns the undo. */
type Guard = (helper: { kill(signal: NodeJS.Signals): void }) => () => void;

interface Pending {
  /** The worker doing it: one that stops fails its own jobs, not those of the one after it. */
  worker: Worker;
  header(m: Extract<FromDecoder, { type: 'header' }>): void;
  failed(e: Error): void;
  progress?(bytes: number): void;
  done?(d: Drained): void;
}

/**
 * The decode worker of one processor (one DecodeContext): started on first use and kept for
 * the jobs that follow (starting it, and loading openpgp.js and the keys in it, costs ~0.1 s),
 * without keeping the process alive. Jobs may go side by side (a scan reads a few headers at
 * once). openpgp.js and the keys are loaded there only: this thread never holds them (~20 MB)
 * for packets it hands over.
 */
export class DecodeWorkers {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /**
   * Per worker, the jobs whose header or drain this thread is waiting for. A worker does not keep
   * the process alive, but a wait for it must: else a worker that dies (a crash, its memory
   * limit) would end the process as if all were done, the wait never answered.
   */
  private readonly waiting = new Map<Worker, number>();

  private hold(w: Worker): void {
    this.waiting.set(w, (this.waiting.get(w) ?? 0) + 1);
    w.ref();
  }

  private release(w: Worker): void {
    const n = (this.waiting.get(w) ?? 1) - 1;
    if (n > 0) return void this.waiting.set(w, n);
    this.waiting.delete(w);
    w.unref();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const { Worker } = process.getBuiltinModule('node:worker_threads') as typeof import('node:worker_threads');
    // A worker's heap takes V8's flags as they are when it starts.
    setGcFlags();
    const w = new Worker(packageFile('dist/decode-worker.cjs'), { workerData: { role: 'decoder' }, resourceLimits: HEAP_LIMITS });
    w.unref();
    w.on('message', (m: FromDecoder) => this.receive(m));
    const lost = (cause: Error) => {
      if (this.worker === w) this.worker = undefined;
      const e =
        (cause as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new Error(
              `decoding it took more than the decode worker's ${HEAP_LIMITS.maxOldGenerationSizeMb} MB of heap (OpenPGP that openpgp.js reads a byte at a time: partial lengths of a byte inside compressed data); gpg decodes it outside (-d 'gpg -q -d', where the command takes -d)`,
            )
          : cause;
      for (const [id, p] of this.pending) {
        if (p.worker !== w) continue;
        this.pending.delete(id);
        if (p.done) p.done({ bytes: 0, outcome: { failure: e } });
        else p.failed(e);
      }
    };
    w.on('error', lost);
    w.on('exit', (code) => lost(new Error(`the decode worker stopped (exit code ${code})`)));
    this.worker = w;
    return w;
  }

  private receive(m: FromDecoder): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === 'header') p.header(m);
    else if (m.type === 'failed') {
      this.pending.delete(m.id);
      p.failed(fromThread(m.error));
    } else if (m.type === 'progress') p.progress?.(m.bytes);
    else {
      this.pending.delete(m.id);
      p.done?.({ bytes: m.bytes, outcome: typeof m.outcome === 'string' ? m.outcome : { failure: fromThread(m.outcome.failure) } });
    }
  }

  /**
   * Open the packet in `fd` (from `at` if it is a regular file) in the worker, and read its
   * header there. `guard` stops the decoding if the run is interrupted.
   */
  open(fd: number, at: number, keys: KeyOptions, guard?: Guard, headerSeconds?: number): Promise<WorkerPacket> {
    const w = this.start();
    const id = this.nextId++;
    const control = new SharedArrayBuffer(CONTROL_INTS * 4);
    const flags = new Int32Array(control);
    let over = false;
    let unguard = () => {};
    let awaitingHeader = true;
    let late: Timer | undefined;
    const headerSettled = () => {
      if (!awaitingHeader) return;
      awaitingHeader = false;
      late?.clear();
      this.release(w);
    };
    this.hold(w);
    return new Promise<WorkerPacket>((resolve, reject) => {
      /** The worker, stopped whole: one busy inside openpgp.js reads no message. The next packet gets a new one. */
      const stopWorker = () => {
        if (this.worker === w) this.worker = undefined;
        void w.terminate();
      };
      let unheeded: Timer | undefined;
      /** Stop the job: the worker writes nothing more; an open still waiting for the header fails, a drain ends 'aborted'. */
      const abort = () => {
        if (over) return;
        over = true;
        unguard();
        Atomics.store(flags, ABORTED, 1);
        w.postMessage({ type: 'abort', id } satisfies ToDecoder);
        // Draining: the worker reports how it ended, or, if it does not within the grace, is
        // stopped (then its 'exit' ends the drain). Else nothing more comes for this job.
        if (p.done) {
          unheeded = after(ABORT_GRACE_SECONDS, stopWorker);
          return;
        }
        this.pending.delete(id);
        headerSettled();
        reject(new Error('decoding was stopped'));
      };
      const p: Pending = {
        worker: w,
        failed: (e) => {
          over = true;
          unguard();
          headerSettled();
          reject(e);
        },
        header: (m) => {
          headerSettled();
          const reader = new HeaderReader();
          reader.push(Buffer.from(m.header.buffer, m.header.byteOffset, m.header.byteLength));
          resolve({
            kind: 'stream',
            via: 'worker',
            header: reader.header!,
            layers: m.layers,
            abort,
            drain: (sink: Sink, progress?: { add(n: number): void }) =>
              new Promise<Drained>((done) => {
                let reported = 0;
                p.progress = (bytes) => {
                  progress?.add(bytes - reported);
                  reported = bytes;
                };
                if (over || !this.pending.has(id)) return done({ bytes: 0, outcome: 'aborted' });
                this.hold(w);
                p.done = (d) => {
                  progress?.add(d.bytes - reported);
                  over = true;
                  unguard();
                  unheeded?.clear();
                  this.release(w);
                  done(d);
                };
                w.postMessage({ type: 'drain', id, sink } satisfies ToDecoder);
              }),
          });
        },
      };
      this.pending.set(id, p);
      // A stop that came before this open kills it at once (guard calls abort): nothing is sent.
      unguard = guard?.({ kill: abort }) ?? unguard;
      if (over) return;
      try {
        w.postMessage({ type: 'open', id, input: { fd, at, file: fstatSync(fd).isFile() }, keys, control } satisfies ToDecoder);
      } catch (e) {
        this.pending.delete(id);
        p.failed(e as Error);
        return;
      }
      if (headerSeconds) {
        // The others it was reading fail this time, and are read again at the next look.
        late = after(headerSeconds, () => {
          this.pending.delete(id);
          p.failed(new DecoderError(builtInLate(headerSeconds)));
          stopWorker();
        });
      }
    });
  }
}
