// Running a delivery command (`outbox-resend --exec`, `queue-process --receipt-exec`) as
// `$SHELL -c CMD` with a file or bytes on its stdin, waiting for it to finish. Its stdout goes
// where the caller says (a processor's stdout belongs to its jobs), its stderr to ours.
import { childProcess } from './lazy.js';

export interface ShellResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why it could not start. */
  error?: string;
}

export function runShell(cmd: string, stdin: number | Buffer, env: Record<string, string>, stdout: 'inherit' | 2 = 'inherit'): Promise<ShellResult> {
  const shell = process.env.SHELL || '/bin/sh';
  return new Promise((resolve) => {
    const child = childProcess().spawn(shell, ['-c', cmd], {
      stdio: [typeof stdin === 'number' ? stdin : 'pipe', stdout, 'inherit'],
      env: { ...process.env, ...env },
    });
    child.once('error', (e) => resolve({ code: null, signal: null, error: e.message }));
    child.once('close', (code, signal) => resolve({ code, signal }));
    if (typeof stdin !== 'number') {
      // A command that exits without reading all of it is judged by its exit status.
      child.stdin!.on('error', () => {});
      child.stdin!.end(stdin);
    }
  });
}

/** "exited with status 3", "was killed by SIGTERM", "could not start: ..." */
export function shellFailure(r: ShellResult): string | undefined {
  if (r.error) return `could not start: ${r.error}`;
  if (r.signal) return `was killed by ${r.signal}`;
  if (r.code !== 0) return `exited with status ${r.code}`;
  return undefined;
}
