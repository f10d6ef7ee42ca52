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

function dateOf(secs: bigint): Date | undefined {
  const d = new Date(Number(secs) * 1000);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

function ymd(y: number, mo: number, d: number, h: number, mi: number, s: number): string {
  const year = y < 0 ? `-${pad(y, 4)}` : pad(y, 4);
  return `${year}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(s)}`;
}

/** RFC 3339 in UTC with whole seconds and `Z`, as fspl's FSPL_CTIME_RFC3339_UTC. */
export function rfc3339Utc(secs: bigint): string {
  const d = dateOf(secs);
  if (!d) return `out-of-range(${secs})`;
  return ymd(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()) + 'Z';
}

/** RFC 3339 in local time with a numeric offset (`+00:00`), as fspl's queue-ls and FSPL_CTIME_RFC3339_LOCAL. */
export function rfc3339Local(secs: bigint): string {
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

/** `NAME=value` lines, bytes exact, as queue-info and stdin-info print them. */
export function formatEnv(env: Array<[string, Buffer]>): Buffer {
  return Buffer.concat(env.flatMap(([k, v]) => [Buffer.from(`${k}=`, 'latin1'), v, Buffer.from('\n')]));
}
