// The spawn request fspool's helper (native/fspool_spawner.c) reads: the child's argv and
// whole environment as bytes. Node's spawn() would encode both as UTF-8, but params and FSPL_SET_
// values are whatever bytes the sender had.
import { readFileSync } from 'node:fs';
import { splitNul } from './argv.js';

/** A job whose params or env cannot be exec'd: a NUL byte cannot be in argv or environ. */
export class ExecError extends Error {
  override name = 'ExecError';
}

const NUL = Buffer.from([0]);

/**
 * Variables of fspool's environment that are fspool's own, not its children's: NOTIFY_SOCKET
 * is the service manager's socket for the process it started (serve, src/serve/notify.ts), and
 * a child's message there would speak for fspool, as sd_notify(3)'s unset_environment says.
 */
const OWN_ONLY = new Set(['NOTIFY_SOCKET']);

/**
 * fspool's own environment as `NAME=value` entries, byte-exact and read once per process:
 * /proc/self/environ has the bytes (process.env would have turned non-UTF-8 ones into U+FFFD),
 * and fspool never changes its own environment (children get theirs through the request).
 * Names are latin1 strings, one char per byte, as the FSPL_* names they may be overridden by.
 */
let inherited: Array<[string, Buffer]> | undefined;
function ownEnv(): Array<[string, Buffer]> {
  inherited ??= splitNul(readFileSync('/proc/self/environ')).flatMap((entry): Array<[string, Buffer]> => {
    const eq = entry.indexOf(0x3d);
    if (eq <= 0) return [];
    const name = entry.toString('latin1', 0, eq);
    return OWN_ONLY.has(name) ? [] : [[name, entry]];
  });
  return inherited;
}

/**
 * "u32 LEN, 'S', u32 ARGC, u32 ENVC, u8 NFDS", then the strings, each ending in NUL (integers
 * little-endian). NFDS: the fds that go with it (stdin, stdout, stderr, and optionally the
 * write end of the child's stdin pipe).
 */
export function execRequest(argv: Buffer[], extraEnv: Array<[string, Buffer]>, nfds: number): Buffer {
  // Entries end at NUL in the request (and in environ itself): one NUL inside a name or value
  // would start another entry, of the sender's choosing. Names must also not hold '=', which
  // would make the receiver see another name than the one given.
  for (const a of argv) if (a.includes(0)) throw new ExecError(`argument "${a.toString('utf8').replace(/\0/g, '\\0')}" contains a NUL byte`);
  for (const [k, v] of extraEnv) {
    if (k.includes('\0') || k.includes('=')) throw new ExecError(`variable name ${JSON.stringify(k)} contains a NUL byte or "="`);
    if (v.includes(0)) throw new ExecError(`variable ${k} contains a NUL byte`);
  }
  const env: Buffer[] = [];
  // One entry per name, the last value given winning, as in fspl (a packet may name a variable
  // twice). Names are latin1 strings, one char per byte.
  const extra = new Map<string, Buffer>();
  for (const [k, v] of extraEnv) {
    extra.delete(k);
    extra.set(k, v);
  }
  for (const [k, entry] of ownEnv()) if (!extra.has(k)) env.push(entry);
  for (const [k, v] of extra) env.push(Buffer.concat([Buffer.from(`${k}=`, 'latin1'), v]));
  const head = Buffer.alloc(14);
  const request = Buffer.concat([head, ...argv.flatMap((a) => [a, NUL]), ...env.flatMap((e) => [e, NUL])]);
  request.writeUInt32LE(request.length - 4, 0);
  request.write('S', 4, 'latin1');
  request.writeUInt32LE(argv.length, 5);
  request.writeUInt32LE(env.length, 9);
  request.writeUInt8(nfds, 13);
  return request;
}
