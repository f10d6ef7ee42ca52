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

/** Something that stops a job's decoding when its run is interrupted; returns the undo. */
type Guard = (helper: { kill(signal: NodeJS.Signals): void }) => () => void;

interface Pending {
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

  private start(): Worker {
    if (this.worker) return this.worker;
    const { Worker } = process.getBuiltinModule('node:worker_threads') as typeof import('node:worker_threads');
    // A worker's heap takes V8's flags as they are when it starts.
    setGcFlags();
    const w = new Worker(packageFile('dist/decode-worker.cjs'), { workerData: { role: 'decoder' } });
    w.unref();
    w.on('message', (m: FromDecoder) => this.receive(m));
    const lost = (e: Error) => {
      if (this.worker === w) this.worker = undefined;
      for (const [id, p] of this.pending) {
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
  open(fd: number, at: number, keys: KeyOptions, guard?: Guard): Promise<WorkerPacket> {
    const w = this.start();
    const id = this.nextId++;
    const control = new SharedArrayBuffer(CONTROL_INTS * 4);
    const flags = new Int32Array(control);
    let over = false;
    let unguard = () => {};
    return new Promise<WorkerPacket>((resolve, reject) => {
      /** Stop the job: the worker writes nothing more; an open still waiting for the header fails, a drain ends 'aborted'. */
      const abort = () => {
        if (over) return;
        over = true;
        unguard();
        Atomics.store(flags, ABORTED, 1);
        w.postMessage({ type: 'abort', id } satisfies ToDecoder);
        // Draining: the worker reports how it ended. Else nothing more comes for this job.
        if (!p.done) {
          this.pending.delete(id);
          reject(new Error('decoding was stopped'));
        }
      };
      unguard = guard?.({ kill: abort }) ?? unguard;
      const p: Pending = {
        failed: (e) => {
          over = true;
          unguard();
          reject(e);
        },
        header: (m) => {
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
                p.done = (d) => {
                  progress?.add(d.bytes - reported);
                  over = true;
                  unguard();
                  done(d);
                };
                w.postMessage({ type: 'drain', id, sink } satisfies ToDecoder);
              }),
          });
        },
      };
      this.pending.set(id, p);
      w.postMessage({ type: 'open', id, input: { fd, at, file: fstatSync(fd).isFile() }, keys, control } satisfies ToDecoder);
    });
  }
}
