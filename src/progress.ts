// A progress line on stderr for long payloads: bytes, rate, elapsed, and with a known total its
// percentage and the time left. Only when stderr is a terminal and not with --quiet (the log
// level does not matter: -l warn hides events, not the line showing the transfer), and only
// once a transfer has run for a second (short ones stay silent). Never on stdout. Written with
// write(2) like every other line. No library: the ones that fit draw through process.stderr
// and cost start-up time.
import { fstatSync } from 'node:fs';
import { fdOffset, writeAll } from './sys/fd.js';
import { native } from './sys/native.js';

let quiet = false;
export function setQuiet(q: boolean): void {
  quiet = q;
}

const DELAY_MS = 1000;
const EVERY_MS = 250;
const CLEAR = '\r\x1b[K';

function size(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function duration(secs: number): string {
  const s = Math.round(secs);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * What the line says: label, bytes, and with a total the share done and the time left. With
 * `cols`, the terminal's width, it fits in one column less (a line that wraps cannot be
 * redrawn in place): the label gives way first, from its start (a path's end says the most),
 * and goes when fewer than 8 of its characters would be left; then the end of the figures.
 * Characters are counted, not cells: a label of wide characters (CJK) may still wrap.
 * `waiting`: the whole total has gone this many seconds ago and the receiver still runs (`secs`
 * is then the transfer's time, and the rate its rate).
 */
export function progressLine(label: string, bytes: number, total: number | undefined, secs: number, cols?: number, waiting?: number): string {
  const rate = bytes / Math.max(secs, 0.001);
  let figures: string;
  if (!total) {
    figures = `${size(bytes)}, ${size(rate)}/s, ${duration(secs)}`;
  } else {
    const pct = Math.min(100, Math.floor((100 * bytes) / total));
    const left =
      bytes < total ? (rate > 0 ? `${duration((total - bytes) / rate)} left` : 'time left unknown') : waiting === undefined ? 'done' : `receiver running ${duration(waiting)}`;
    figures = `${size(bytes)} of ${size(total)} (${pct}%), ${size(rate)}/s, ${duration(secs)}, ${left}`;
  }
  const name = [...label];
  const width = cols === undefined ? Infinity : cols - 1;
  if (name.length + 2 + figures.length <= width) return `${label}: ${figures}`;
  const room = width - 2 - figures.length - 1;
  if (room >= 8) return `…${name.slice(name.length - room).join('')}: ${figures}`;
  return figures.slice(0, Math.max(width, 1));
}

/**
 * The bytes a copy from `fd` will move, when fd is a regular file: from `from` (default: its
 * offset now) to the end. Undefined for a pipe or a terminal, whose length nobody knows.
 */
export function bytesLeft(fd: number, from?: number): number | undefined {
  try {
    const st = fstatSync(fd);
    return st.isFile() ? Math.max(0, st.size - (from ?? fdOffset(fd))) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether fd is a terminal. Only a character device can be one, and fstat says so for the
 * files and pipes stderr usually is; for a device (/dev/null, say) the addon's isatty answers
 * without loading node:tty, which brings in net and the streams: ~5 ms of every start that
 * needs to know.
 */
function isTerminal(fd: number): boolean {
  try {
    if (!fstatSync(fd).isCharacterDevice()) return false;
  } catch {
    return false;
  }
  return native().isatty(fd);
}

export class Progress {
  private bytes = 0;
  private readonly start = Date.now();
  private last = 0;
  private shown = false;
  /** Other output on the terminal left a line unfinished: drawing now would erase it. */
  private held = false;
  private finished = false;
  /** When the whole total had gone (`receiver` only): the transfer's figures stop there, the receiver may run on. */
  private complete: number | undefined;

  private constructor(
    private readonly label: string,
    private readonly total: number | undefined,
    private readonly receiver: boolean,
  ) {}

  /**
   * A progress reporter, or undefined when none should be shown. `total`: the bytes expected, if
   * known. `receiver`: the bytes go to a receiver, which may go on working once it has them all
   * (a job's run); elsewhere (a file that grows while it is read, say) the line keeps counting.
   */
  static start(label: string, total?: number, receiver = false): Progress | undefined {
    if (quiet || !isTerminal(2)) return undefined;
    return new Progress(label, total, receiver);
  }

  add(n: number): void {
    this.set(this.bytes + n);
  }

  set(bytes: number): void {
    this.bytes = bytes;
    const now = Date.now();
    // An empty payload is never "all delivered": there was no transfer to freeze.
    if (this.receiver && this.complete === undefined && this.total !== undefined && this.total > 0 && bytes >= this.total) this.complete = now;
    if (now - this.start < DELAY_MS || now - this.last < EVERY_MS) return;
    this.last = now;
    this.draw(now);
  }

  /**
   * Pass other output (a receiver's stderr) through to the terminal without running into the
   * line: erase it, write, and draw it again once the output has ended its line.
   */
  around(chunk: Buffer, write: () => void): void {
    if (this.finished || chunk.length === 0) return write();
    if (this.shown && !this.held) this.put(CLEAR);
    write();
    this.held = chunk[chunk.length - 1] !== 0x0a;
    if (this.shown && !this.held) this.draw(Date.now());
  }

  /** The final figures (`bytes`: the count at the end, if the last set() was not), if a line was shown at all, and a newline. */
  done(bytes?: number): void {
    if (this.finished) return;
    if (bytes !== undefined) this.bytes = bytes;
    if (this.shown) {
      // Someone else's unfinished line: end it rather than draw over it.
      if (this.held) this.put('\n');
      this.held = false;
      this.draw(Date.now(), true);
      this.put('\n');
    }
    this.finished = true;
  }

  /** The line as it stands; `last`: the final one, which says the transfer is done. */
  private draw(now: number, last = false): void {
    if (this.held || this.finished) return;
    this.shown = true;
    // The width now: a terminal may be resized while a transfer runs.
    const cols = native().winsize(2);
    const end = this.complete ?? now;
    const waiting = this.complete !== undefined && !last ? (now - this.complete) / 1000 : undefined;
    this.put(`${CLEAR}${progressLine(this.label, this.bytes, this.total, (end - this.start) / 1000, cols, waiting)}`);
  }

  private put(s: string): void {
    try {
      writeAll(2, Buffer.from(s));
    } catch {
      /* stderr gone: progress is not worth failing for */
    }
  }
}
