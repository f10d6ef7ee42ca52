// Node built-ins that only some commands need, loaded on first use: each costs start-up time
// (node:crypto alone ~6 ms) that `prepare` and `queue-ls` should not pay.
import type * as ChildProcess from 'node:child_process';
import type * as Net from 'node:net';

export const childProcess = () => process.getBuiltinModule('node:child_process') as typeof ChildProcess;
export const net = () => process.getBuiltinModule('node:net') as typeof Net;

export const os = () => process.getBuiltinModule('node:os') as typeof import('node:os');

export const crypto = () => process.getBuiltinModule('node:crypto') as typeof import('node:crypto');

/** A random (v4) UUID, lower case. */
export function randomUUID(): string {
  return crypto().randomUUID();
}

/** node:crypto's createHash. */
export function createHash(algorithm: string): import('node:crypto').Hash {
  return crypto().createHash(algorithm);
}

export const stream = () => process.getBuiltinModule('node:stream') as typeof import('node:stream');

export const zlib = () => process.getBuiltinModule('node:zlib') as typeof import('node:zlib');
