// Running a delivery command (`outbox-resend --exec`, `queue-process --receipt-exec`) as
// `$SHELL -c CMD` with a file or bytes on its stdin, waiting for it to finish. Its stdout goes
// where the caller says (a processor's stdout belongs to its jobs), its stderr to ours.
import { childProcess } from './lazy.js';
import { after, type Timer } from './timer.js';

export interface ShellResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why it could not start. */
  error?: string;
  /** It ran past `Unattended.timeoutSeconds` and was killed. */
  timedOut?: number;
}

/** A command run where no one watches it (after a processor's pass): bounded, and stoppable. */
export interface Unattended {
  /** Killed after this long (0: no limit): SIGTERM to its process group, SIGKILL after `graceSeconds`. */
  timeoutSeconds: number;
  graceSeconds: number;
  /** Hands its killer to whoever stops the run; returns the undo. */
  guard(child: { kill(signal: NodeJS.Signals): void }): () => void;
}

/**
 * `unattended`: the command runs in a session and process group of its own (no terminal to ask
 * a password on: an ssh that would prompt fails instead of waiting for ever), within a time
 * limit, and a stop kills its whole group.
 */
export function runShell(cmd: string, stdin: number | Buffer, env: Record<string, string>, stdout: 'inherit' | 2 = 'inherit', unattended?: Unattended): Promise<ShellResult> {
  const shell = process.env.SHELL || '/bin/sh';
  return new Promise((resolve) => {
    const child = childProcess().spawn(shell, ['-c', cmd], {
      stdio: [typeof stdin === 'number' ? stdin : 'pipe', stdout, 'inherit'],
      env: { ...process.env, ...env },
      detached: unattended !== undefined,
    });
    let limit: Timer | undefined;
    let kill: Timer | undefined;
    let unguard: (() => void) | undefined;
    let timedOut: number | undefined;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        /* gone already */
      }
    };
    const done = (r: ShellResult) => {
      // Timed out, the shell is gone: whatever of its group is left ignored SIGTERM.
      if (timedOut !== undefined) killGroup('SIGKILL');
      limit?.clear();
      kill?.clear();
      unguard?.();
      resolve(timedOut === undefined ? r : { ...r, timedOut });
    };
    child.once('error', (e) => done({ code: null, signal: null, error: e.message }));
    child.once('close', (code, signal) => done({ code, signal }));
    if (unattended && child.pid !== undefined) {
      unguard = unattended.guard({ kill: killGroup });
      const { timeoutSeconds, graceSeconds } = unattended;
      if (timeoutSeconds > 0) {
        limit = after(timeoutSeconds, () => {
          timedOut = timeoutSeconds;
          killGroup('SIGTERM');
          kill = after(graceSeconds, () => killGroup('SIGKILL'));
        });
      }
    }
    if (typeof stdin !== 'number') {
      // A command that exits without reading all of it is judged by its exit status.
      child.stdin!.on('error', () => {});
      child.stdin!.end(stdin);
    }
  });
}

/** "exited with status 3", "was killed by SIGTERM", "could not start: ...", "did not finish within 120s" */
export function shellFailure(r: ShellResult): string | undefined {
  if (r.error) return `could not start: ${r.error}`;
  if (r.timedOut !== undefined) return `did not finish within ${r.timedOut}s (its process group was killed)`;
  if (r.signal) return `was killed by ${r.signal}`;
  if (r.code !== 0) return `exited with status ${r.code}`;
  return undefined;
}
