// How to start a command whose argv and environment are bytes.
//
// Node's spawn() encodes strings as UTF-8, which is exact for bytes that are valid UTF-8. For
// anything else (a job param or FSPL_SET_ value in Latin-1, say) we start native/fspool_exec.c,
// which receives the exact bytes on fd 3 and execs the command in its place.
import type { ChildProcess, StdioNull, StdioPipe } from 'node:child_process';
import type { Writable } from 'node:stream';
import { packageFile } from '../sys/native.js';

export interface ExecPlan {
  file: string;
  args: string[];
  argv0?: string;
  env: NodeJS.ProcessEnv;
  extraStdio: Array<StdioPipe | StdioNull>;
  afterSpawn(child: ChildProcess): void;
}

/** A job whose params or env cannot be exec'd (a NUL byte cannot be in argv or environ). */
export class ExecError extends Error {
  override name = 'ExecError';
}

const isUtf8 = (b: Buffer) => Buffer.from(b.toString('utf8'), 'utf8').equals(b);

export function planExec(argv: Buffer[], extraEnv: Array<[string, Buffer]>): ExecPlan {
  for (const a of argv) if (a.includes(0)) throw new ExecError(`argument "${a.toString('utf8').replace(/\0/g, '\\0')}" contains a NUL byte`);
  for (const [k, v] of extraEnv) if (v.includes(0)) throw new ExecError(`variable ${k} contains a NUL byte`);

  const exact = argv.every(isUtf8) && extraEnv.every(([k, v]) => isUtf8(Buffer.from(k, 'latin1')) && isUtf8(v));
  if (exact) {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of extraEnv) env[Buffer.from(k, 'latin1').toString('utf8')] = v.toString('utf8');
    const [file, ...args] = argv.map((a) => a.toString('utf8'));
    return { file: file!, args, env, extraStdio: [], afterSpawn: () => {} };
  }

  const envEntries: Buffer[] = [];
  const overridden = new Set(extraEnv.map(([k]) => k));
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !overridden.has(k)) envEntries.push(Buffer.from(`${k}=${v}`));
  }
  for (const [k, v] of extraEnv) envEntries.push(Buffer.concat([Buffer.from(`${k}=`, 'latin1'), v]));
  const nul = Buffer.from([0]);
  const request = Buffer.concat([
    Buffer.from(`${argv.length}\0${envEntries.length}\0`),
    ...argv.flatMap((a) => [a, nul]),
    ...envEntries.flatMap((e) => [e, nul]),
  ]);
  return {
    file: packageFile('build/Release/fspool-exec'),
    args: [],
    argv0: argv[0]!.toString('utf8'),
    env: process.env,
    extraStdio: ['pipe'],
    afterSpawn(child) {
      const ch = child.stdio[3] as Writable | null;
      if (!ch) return;
      ch.on('error', () => {
        /* the helper died before reading: its exit status tells */
      });
      ch.end(request);
    },
  };
}
