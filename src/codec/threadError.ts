// Errors crossing between the main thread and the decode worker: a structured clone keeps an
// Error's message but not its class, and the class decides what happens (a KeyFileError stops
// the command; a PacketError makes the job file unreadable; an errno error is described).
import { FspoolError } from '../errors.js';
import { PacketError } from '../packet/codec.js';
import { KeyFileError } from './keys.js';
import { NoKeyError, OpenPGPError } from './openpgp.js';

export interface ThreadError {
  name: string;
  message: string;
  exitCode?: number;
  code?: string;
  syscall?: string;
  path?: string;
}

export function toThread(e: unknown): ThreadError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const x = e as NodeJS.ErrnoException & { exitCode?: number };
  return { name: e.name, message: e.message, exitCode: x.exitCode, code: x.code, syscall: x.syscall, path: x.path };
}

const CLASSES: Record<string, new (message: string) => Error> = { KeyFileError, NoKeyError, OpenPGPError, PacketError };

export function fromThread(t: ThreadError): Error {
  const Class = CLASSES[t.name];
  if (Class) return new Class(t.message);
  if (t.exitCode !== undefined) return new FspoolError(t.message, t.exitCode);
  const e = new Error(t.message) as NodeJS.ErrnoException;
  if (t.code !== undefined) e.code = t.code;
  if (t.syscall !== undefined) e.syscall = t.syscall;
  if (t.path !== undefined) e.path = t.path;
  return e;
}
