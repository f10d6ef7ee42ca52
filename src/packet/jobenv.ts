// The environment fspl gives a job's command, and prints with queue-info/stdin-info.
import type { Header } from './header.js';

/** Where a job file lies, for the FSPL_JOB_* variables (queue commands only). */
export interface JobLocation {
  filename: string;
  /** The queue directory as the user gave it. */
  queuedir: string;
  fullpath: string;
}

const pad = (n: number, w = 2) => String(Math.abs(n)).padStart(w, '0');

function dateOf(secs: bigint | number): Date | undefined {
  const d = new Date(Number(secs) * 1000);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** Years in at least four digits, signed outside 0 to 9999, as chrono (fspl) writes them. */
function ymd(y: number, mo: number, d: number, h: number, mi: number, s: number): string {
  const year = y < 0 ? `-${pad(y, 4)}` : y > 9999 ? `+${y}` : pad(y, 4);
  return `${year}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(s)}`;
}

/** RFC 3339 in UTC with whole seconds and `Z`, as fspl's FSPL_CTIME_RFC3339_UTC. */
export function rfc3339Utc(secs: bigint): string {
  const d = dateOf(secs);
  if (!d) return `out-of-range(${secs})`;
  return ymd(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()) + 'Z';
}

/** RFC 3339 in local time with a numeric offset (`+00:00`), as fspl's queue-ls and FSPL_CTIME_RFC3339_LOCAL. */
export function rfc3339Local(secs: bigint | number): string {
  const d = dateOf(secs);
  if (!d) return `out-of-range(${secs})`;
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? '-' : '+';
  return ymd(d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()) +
    `${sign}${pad(Math.trunc(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

/**
 * The FSPL_* variables for a job, in fspl's order. Values are bytes: params and FSPL_SET_
 * values are whatever the sender had, not necessarily UTF-8.
 */
export function jobEnv(h: Header, where?: JobLocation): Array<[string, Buffer]> {
  const s = (v: string) => Buffer.from(v);
  const env: Array<[string, Buffer]> = [
    ['FSPL_SEQ', s(String(h.seq))],
    ['FSPL_CTIME_SECS', s(String(h.ctimeSecs))],
    ['FSPL_CTIME_NANOS', s(String(h.ctimeNanos))],
    ['FSPL_CTIME_RFC3339_UTC', s(rfc3339Utc(h.ctimeSecs))],
    ['FSPL_CTIME_RFC3339_LOCAL', s(rfc3339Local(h.ctimeSecs))],
  ];
  if (where) {
    env.push(['FSPL_JOB_FILENAME', s(where.filename)], ['FSPL_JOB_QUEUEDIR', s(where.queuedir)], ['FSPL_JOB_FULLPATH', s(where.fullpath)]);
  }
  if (h.cmd.kind === 'Command') {
    h.cmd.params.forEach((p, i) => env.push([`FSPL_PARAM_${i + 1}`, p]));
    for (const [k, v] of h.cmd.env) env.push([`FSPL_SET_${k.toString('latin1')}`, v]);
  }
  return env;
}

/**
 * The most Linux takes in one argument or one environment entry (MAX_ARG_STRLEN, 32 pages,
 * counting the terminating NUL); a longer one makes exec fail with E2BIG.
 */
export const MAX_EXEC_STRING = 32 * 4096 - 1;

/**
 * Why a Command packet's params and variables cannot reach a receiver as its own request, or
 * undefined when they can. A variable's name must not hold NUL (it would end the entry and
 * start another one, unprefixed: `X\0LD_PRELOAD=...`) nor `=` (the name the receiver sees would
 * not be the one sent); no value or param may hold NUL; no single entry may pass the kernel's
 * per-string limit, nor all of them its limit on the whole. Such a packet fails its own job; it never changes what the receiver gets.
 */
export function execProblem(h: Header, allowJobParams: boolean): string | undefined {
  if (h.cmd.kind !== 'Command') return undefined;
  const shown = (b: Buffer) => JSON.stringify(b.toString('latin1').slice(0, 40));
  for (const [i, p] of h.cmd.params.entries()) {
    const name = `param ${i + 1}`;
    if (p.includes(0)) return `the packet's ${name} holds a NUL byte, which no argument or variable can carry`;
    // Every param is also FSPL_PARAM_n=<param>; with --allow-job-params it is an argument too.
    const longest = Math.max(`FSPL_PARAM_${i + 1}=`.length + p.length, allowJobParams ? p.length : 0);
    if (longest > MAX_EXEC_STRING) return `the packet's ${name} is ${p.length} bytes, more than the ${MAX_EXEC_STRING} that Linux allows in one argument or variable`;
  }
  for (const [k, v] of h.cmd.env) {
    if (k.includes(0)) return `the packet's variable name ${shown(k)} holds a NUL byte, which no variable name can carry`;
    if (k.includes(0x3d)) return `the packet's variable name ${shown(k)} holds "=", which no variable name can carry`;
    if (v.includes(0)) return `the packet's variable FSPL_SET_${k.toString('latin1')} holds a NUL byte, which no variable can carry`;
  }
  const variables = reaching(h.cmd.env);
  for (const [k, v] of variables) {
    const size = 'FSPL_SET_='.length + k.length + v.length;
    if (size > MAX_EXEC_STRING) return `the packet's variable FSPL_SET_${k} is ${size} bytes, more than the ${MAX_EXEC_STRING} that Linux allows in one variable`;
  }
  // Said before the request is built: for hundreds of thousands of params that took seconds.
  // Pointers counted at 4 bytes, the least a kernel counts: this never refuses what could run.
  const total = execBytes(h, allowJobParams) + 4 * (h.cmd.params.length * (allowJobParams ? 2 : 1) + variables.size);
  if (total > MAX_EXEC_TOTAL) {
    return `the packet's params and variables take ${total} bytes, more than the ${MAX_EXEC_TOTAL} that Linux allows a command's arguments and environment together`;
  }
  return undefined;
}

/**
 * The most Linux ever takes in a command's arguments and environment together, a pointer for
 * each counted: three quarters of the 8 MiB it assumes for the stack at most, whatever the stack
 * limit (a limit below 24 MiB lowers it: then exec's own E2BIG says so).
 */
export const MAX_EXEC_TOTAL = 6 * 1024 * 1024;

/** The packet's variables as the receiver gets them: one per name, the last value given (as fspl sets them). */
function reaching(env: Array<[Buffer, Buffer]>): Map<string, Buffer> {
  const last = new Map<string, Buffer>();
  for (const [k, v] of env) last.set(k.toString('latin1'), v);
  return last;
}

/** Bytes a packet adds to its receiver's argv and environment (params, FSPL_PARAM_n, FSPL_SET_*). */
export function execBytes(h: Header, allowJobParams: boolean): number {
  if (h.cmd.kind !== 'Command') return 0;
  let n = 0;
  for (const [i, p] of h.cmd.params.entries()) n += `FSPL_PARAM_${i + 1}=`.length + p.length + 1 + (allowJobParams ? p.length + 1 : 0);
  for (const [k, v] of reaching(h.cmd.env)) n += 'FSPL_SET_='.length + k.length + v.length + 1;
  return n;
}

/** `NAME=value` lines, bytes exact, as queue-info and stdin-info print them. */
export function formatEnv(env: Array<[string, Buffer]>): Buffer {
  return Buffer.concat(env.flatMap(([k, v]) => [Buffer.from(`${k}=`, 'latin1'), v, Buffer.from('\n')]));
}
