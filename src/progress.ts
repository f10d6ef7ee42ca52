// A progress line on stderr for long payloads: bytes, rate, elapsed. Only when stderr is a
// terminal, not with --quiet or a log level above INFO, and only once a transfer has run for a
// second (short ones stay silent). Never on stdout. Written with write(2) like every other line.
// No library: the ones that fit draw through process.stderr and cost start-up time.
import { enabled } from './log.js';
import { writeAll } from './sys/fd.js';

let quiet = false;
export function setQuiet(q: boolean): void {
  quiet = q;
}

const DELAY_MS = 1000;
const EVERY_MS = 250;

function size(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export class Progress {
  private bytes = 0;
  private readonly start = Date.now();
  private last = 0;
  private shown = false;

  private constructor(
    private readonly label: string,
    private readonly total: number | undefined,
  ) {}

  /** A progress reporter, or undefined when none should be shown. */
  static start(label: string, total?: number): Progress | undefined {
    if (quiet || !enabled('info')) return undefined;
    const tty = process.getBuiltinModule('node:tty') as typeof import('node:tty');
    return tty.isatty(2) ? new Progress(label, total) : undefined;
  }

  add(n: number): void {
    this.set(this.bytes + n);
  }

  set(bytes: number): void {
    this.bytes = bytes;
    const now = Date.now();
    if (now - this.start < DELAY_MS || now - this.last < EVERY_MS) return;
    this.last = now;
    this.draw(now);
  }

  /** The final figures, if a line was shown at all, and a newline. */
  done(): void {
    if (!this.shown) return;
    this.draw(Date.now());
    writeAll(2, Buffer.from('\n'));
  }

  private draw(now: number): void {
    const secs = Math.max((now - this.start) / 1000, 0.001);
    const of = this.total ? ` of ${size(this.total)} (${Math.floor((100 * this.bytes) / this.total)}%)` : '';
    const line = `${this.label}: ${size(this.bytes)}${of}, ${size(this.bytes / secs)}/s, ${Math.round(secs)}s`;
    this.shown = true;
    try {
      writeAll(2, Buffer.from(`\r\x1b[K${line}`));
    } catch {
      /* stderr gone: progress is not worth failing for */
    }
  }
}
