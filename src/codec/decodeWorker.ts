// The decode worker: undoing a packet's encodings off the main thread (spec/encoding.md,
// "Decoding threads"). Bundled on its own (dist/decode-worker.cjs) and started by
// src/codec/decodeThread.ts.
//
// For each job it reads the input through a descriptor of its own, undoes the layers, reports
// the header, and on request writes the payload into a sink (the receiver's pipe, a temp file,
// stdout) with blocking writes, again through a descriptor of its own where it can, then
// reports whether every layer verified. It never closes a descriptor it did not open: the main
// thread alone decides the receiver's EOF (the EOF rule, spec/processing.md).
//
// Its second core: the bulk of OpenPGP decryption (AES and SHA-1) runs on libuv's thread pool
// (native/fspool_cfb.c) while this thread decompresses and writes the chunk before.
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { isMainThread, type MessagePort, parentPort } from 'node:worker_threads';
import { encodeHeader } from '../packet/codec.js';
import { native } from '../sys/native.js';
import { collectIfDue } from '../sys/youngGc.js';
import { ABORTED, type FromDecoder, HEADER, type Input, type ToDecoder } from './decodeThread.js';
import { type KeyOptions, Keyring } from './keys.js';
import { decodeChunks, type InlinePacket, type Sink } from './layers.js';
import { toThread } from './threadError.js';

/**
 * Reads of the input: small until the header is read (most packets' headers fit in the first;
 * a scan stops there), then 512 KiB: each read is one job for the thread pool (AES and SHA-1
 * of it) and two hand-overs between threads, and on a busy machine each hand-over waits for the
 * scheduler; fewer, larger ones keep both cores busier (bench/README.md, enc-1g). 1 MiB reads
 * put a signed packet's two passes (--require-signature) over 100 MB of peak RSS.
 */
const HEADER_READ = 64 * 1024;
const READ = 512 * 1024;
/** Progress is reported every this many bytes. */
const PROGRESS_EVERY = 4 << 20;

/**
 * A descriptor of our own for what `fd` is open on (through /proc: a pipe, a file, deleted or
 * not), blocking. A socket cannot be opened again (stdin from a Node parent, which gives its
 * children socket pairs): it is read through `fd` itself, made blocking, and not closed here.
 */
function reopen(fd: number, flags: number): { fd: number; own: boolean } {
  try {
    // O_NONBLOCK only for the open: a pipe's other end may be gone, and open() would wait.
    const own = openSync(`/proc/self/fd/${fd}`, flags | constants.O_NONBLOCK);
    native().clearNonblock(own);
    return { fd: own, own: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENXIO' || !fstatSync(fd).isSocket()) throw e;
    native().clearNonblock(fd);
    return { fd, own: false };
  }
}

/**
 * The input, read with blocking reads into buffers of its own (a file by position, a pipe as it
 * comes). Once `reusable()` says that whatever reads it is done with each buffer before asking
 * for the next, two are used in turn (the decryption of one may still run on the thread pool
 * while the next is read).
 */
async function* readInput(fd: number, input: Input, control: Int32Array, reusable: () => boolean): AsyncGenerator<Buffer> {
  let pos = input.at;
  const spare: Buffer[] = [];
  while (!Atomics.load(control, ABORTED)) {
    const size = Atomics.load(control, HEADER) ? READ : HEADER_READ;
    let buf: Buffer | undefined;
    if (reusable()) {
      buf = spare.length >= 2 ? spare.shift()! : Buffer.allocUnsafeSlow(READ);
      spare.push(buf);
    } else {
      buf = Buffer.allocUnsafeSlow(size);
    }
    const n = readSync(fd, buf, 0, size, input.file ? pos : null);
    if (n === 0) return;
    pos += n;
    yield buf.subarray(0, n);
    collectIfDue();
  }
}

/** write(2) all of `data`: blocking, or waiting out EAGAIN on a descriptor shared with others (stdout). */
function writeAll(fd: number, data: Buffer, position: number | null): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(fd, data, off, data.length - off, position === null ? null : position + off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
  }
}

interface Job {
  id: number;
  control: Int32Array;
  /** Its input, read through a descriptor of ours, or the main thread's own (a socket). */
  fd: number;
  /** Whether `fd` is ours to close. */
  ownFd: boolean;
  packet?: InlinePacket;
  draining: boolean;
}

function serve(port: MessagePort): void {
  const jobs = new Map<number, Job>();
  const rings = new Map<string, Keyring>();
  const post = (m: FromDecoder) => port.postMessage(m);

  const keyring = (opts: KeyOptions) => {
    const k = JSON.stringify(opts);
    let ring = rings.get(k);
    if (!ring) rings.set(k, (ring = new Keyring(opts)));
    return ring;
  };
  const stop = (job: Job) => Atomics.store(job.control, ABORTED, 1);
  /** The job is over here: its input is closed (a read in progress has returned: reads are synchronous). */
  const finish = (job: Job) => {
    stop(job);
    if (jobs.delete(job.id) && job.ownFd) closeSync(job.fd);
  };

  port.on('message', (m: ToDecoder) => {
    if (m.type === 'open') void open(m);
    else if (m.type === 'drain') void drain(m.id, m.sink);
    else {
      const job = jobs.get(m.id);
      if (job && !job.draining) finish(job);
      else if (job) stop(job);
    }
  });

  /** Open a job and read its header. Jobs go side by side (a scan reads a few headers at once); each open is answered. */
  async function open(m: Extract<ToDecoder, { type: 'open' }>): Promise<void> {
    let job: Job;
    try {
      const input = reopen(m.input.fd, constants.O_RDONLY);
      job = { id: m.id, control: new Int32Array(m.control), fd: input.fd, ownFd: input.own, draining: false };
    } catch (e) {
      post({ type: 'failed', id: m.id, error: toThread(e) });
      return;
    }
    jobs.set(m.id, job);
    try {
      let reusable = () => false;
      job.packet = await decodeChunks(readInput(job.fd, m.input, job.control, () => reusable()), { keys: keyring(m.keys) }, {
        layers: [],
        abort: () => stop(job),
        async verify() {},
        // drain() writes each chunk with blocking writes before it asks for the next.
        consumedAtOnce: true,
      });
      // Aborted meanwhile: the main thread has stopped listening for this job.
      if (!jobs.has(m.id)) throw new Error('decoding was stopped');
      reusable = job.packet.inputReusable ?? reusable;
      Atomics.store(job.control, HEADER, 1);
      post({ type: 'header', id: m.id, header: encodeHeader(job.packet.header), layers: job.packet.layers });
    } catch (e) {
      finish(job);
      post({ type: 'failed', id: m.id, error: toThread(e) });
    }
  }

  async function drain(id: number, sink: Sink): Promise<void> {
    const job = jobs.get(id);
    if (!job?.packet) {
      post({ type: 'done', id, bytes: 0, outcome: 'aborted' });
      return;
    }
    job.draining = true;
    const aborted = () => Atomics.load(job.control, ABORTED) !== 0;
    let fd: { fd: number; own: boolean } | undefined;
    let bytes = 0;
    let reported = 0;
    let outcome: Extract<FromDecoder, { type: 'done' }>['outcome'] = 'verified';
    try {
      // A descriptor of our own on the pipe or temp file: its offset, blocking mode and closing
      // are ours alone. stdout is shared as it is (reopening a file would restart its offset).
      if (sink.kind === 'pipe' || sink.kind === 'file') fd = reopen(sink.fd, constants.O_WRONLY);
      const to = sink.kind === 'fd' ? sink.fd : fd?.fd;
      for await (const chunk of job.packet.payload) {
        if (aborted()) {
          outcome = 'aborted';
          break;
        }
        if (to !== undefined) {
          try {
            writeAll(to, chunk, sink.kind === 'file' ? bytes : null);
          } catch (e) {
            // The receiver stopped reading (exited, or closed its stdin).
            if ((e as NodeJS.ErrnoException).code !== 'EPIPE' || sink.kind !== 'pipe') throw e;
            outcome = 'broken';
            break;
          }
        }
        bytes += chunk.length;
        if (bytes - reported >= PROGRESS_EVERY) {
          post({ type: 'progress', id, bytes });
          reported = bytes;
        }
      }
      if (outcome === 'verified') await job.packet.verify();
    } catch (e) {
      outcome = { failure: toThread(e) };
    } finally {
      if (fd?.own) closeSync(fd.fd);
      finish(job);
    }
    post({ type: 'done', id, bytes, outcome });
  }
}

if (!isMainThread && parentPort) serve(parentPort);
