// Running a command on a real terminal of a given width: python3's pty module (no native npm
// pty package). The child sets the terminal's size itself before it execs, so the size is in
// place before the command can ask; COLUMNS is not exported, as in an interactive bash.
import { spawnSync } from 'node:child_process';

const PTY = `
import os, pty, sys, fcntl, termios, struct
cols = int(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 24, cols, 0, 0))
    os.execvp(sys.argv[2], sys.argv[2:])
out = bytearray()
while True:
    try:
        b = os.read(fd, 65536)
    except OSError:
        break
    if not b:
        break
    out += b
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(bytes(out))
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
`;

export interface PtyResult {
  code: number | null;
  /** What the terminal got (stdout and stderr of the command), with the tty's \r\n made \n. */
  text: string;
}

/** Run argv on a terminal `cols` wide; `sh -c` for a pipeline. */
export function onPty(cols: number, argv: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): PtyResult {
  const { COLUMNS: _c, LINES: _l, ...rest } = env;
  const r = spawnSync('python3', ['-c', PTY, String(cols), ...argv], { env: rest, timeout: timeoutMs, maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  return { code: r.status, text: r.stdout.toString().replace(/\r\n/g, '\n') };
}

/**
 * What a terminal line shows once drawn: after the last carriage return or erase-line, since
 * the progress line is redrawn in place with `\r\x1b[K`.
 */
export function visibleLines(text: string): string[] {
  return text.split('\n').map((l) => l.split(/\r(?:\x1b\[K)?/).at(-1)!);
}
