// The tail of a receiver's stderr, for the journal. The receiver's stderr is a pipe
// of ours (made O_CLOEXEC, like every fd of ours, so nothing else inherits it); everything that
// comes through is passed on to our own stderr at once, and the last few KiB are kept.
//
// A receiver that leaves a daemon holding its stderr: we wait a moment for end-of-file after
// the receiver exited, take the tail, and keep passing the daemon's output on while we run.
//
// The pipe is read by the native addon on the event loop (readPipe), not by a net.Socket:
// node:net and its streams would be loaded for this alone by every run of a raw payload.
import { closeSync, fstatSync, readSync } from 'node:fs';
import type { Progress } from '../progress.js';
import { writeAll } from '../sys/fd.js';
import { native, type PipeReader } from '../sys/native.js';

export const TAIL_BYTES = 4096;

export class StderrTail {
  /** The write end: the receiver's stderr. */
  readonly fd: number;
  private readonly reader: PipeReader;
  private tail = Buffer.alloc(0);
  private readonly ended: Promise<void>;
  private writeEndOpen = true;
  private line: Progress | undefined;

  constructor() {
    const [r, w] = native().pipe();
    this.fd = w;
    let end!: () => void;
    this.ended = new Promise((resolve) => (end = resolve));
    try {
      this.reader = native().readPipe(r, (b) => {
        if (b === null) end();
        else this.pass(b);
      });
    } catch (e) {
      closeSync(r);
      closeSync(w);
      throw e;
    }
  }

  private pass(b: Buffer): void {
    const pass = () => {
      try {
        writeAll(2, b);
      } catch {
        /* our stderr is gone: keep the tail anyway */
      }
    };
    if (this.line) this.line.around(b, pass);
    else pass();
    this.tail = this.tail.length + b.length <= TAIL_BYTES ? Buffer.concat([this.tail, b]) : Buffer.concat([this.tail, b]).subarray(-TAIL_BYTES);
  }

  /** A progress line on our stderr, which what passes through must not run into. */
  showing(line: Progress | undefined): void {
    this.line = line;
  }

  /** The receiver holds its copy: ours must go, or end-of-file never comes. */
  spawned(): void {
    this.closeWriteEnd();
  }

  /** Once the receiver exited: its last output, up to TAIL_BYTES. */
  async take(graceMs = 250): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.ended, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    // Whatever a leftover holder writes later is still passed on, without keeping us alive.
    this.reader.unref();
    return textOf(this.tail);
  }

  /** The receiver never started: drop the pipe. */
  close(): void {
    this.closeWriteEnd();
    this.reader.close();
  }

  private closeWriteEnd(): void {
    if (!this.writeEndOpen) return;
    this.writeEndOpen = false;
    closeSync(this.fd);
  }
}

/**
 * The last TAIL_BYTES of a file (the job's saved output, --output-to saveboth), read through
 * the fd it was written by: its name is in jobs/, where others may have replaced it since.
 */
export function fileTail(fd: number): string {
  const size = fstatSync(fd).size;
  const start = Math.max(0, size - TAIL_BYTES);
  const buf = Buffer.alloc(size - start);
  const n = readSync(fd, buf, 0, buf.length, start);
  return textOf(buf.subarray(0, n));
}

/** Text for the journal: UTF-8, a partial character at the cut dropped. */
function textOf(b: Buffer): string {
  return b.toString('utf8').replace(/^\uFFFD+/, '');
}
