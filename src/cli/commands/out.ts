// Text to stdout: written straight to fd 1, never through process.stdout (spec/processing.md).
import { writeAll } from '../../sys/fd.js';

export function print(text: string | Buffer): void {
  writeAll(1, typeof text === 'string' ? Buffer.from(text) : text);
}
