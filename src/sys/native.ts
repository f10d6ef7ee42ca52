// Native code. fspool's own (binding.gyp: native/fspool_sys.c, the addon that gives flock(2),
// pipe2(2), a pipe read on the event loop, the spawner's start and requests
// (src/sys/spawner.ts), isatty(3), the terminal's width and CFB's XOR, and
// native/fspool_spawner.c, the helper that starts fspool's children) and the
// addons of two dependencies, better-sqlite3 and zstd-napi, whose JavaScript the build bundles
// into dist/.
//
// Each binary is looked for where it was compiled on this machine first, then prebuilt:
// - build/Release/NAME: fspool's own, compiled by node-gyp (`npm ci` in a clone, or an install
//   where no prebuilt one works: scripts/install.mjs);
// - a dependency's in node_modules (a clone's devDependencies), or compiled by
//   scripts/install.mjs where no prebuilt one works, into build/Release/ under its prebuilt name;
// - prebuilds/PLATFORM-ARCH/NAME in the package (the npm package carries linux-x64's, made by
//   scripts/prebuild.mjs): fspool's own under their build/Release names; a dependency's as
//   DEPENDENCY.napi.node, or DEPENDENCY.abiN.node when it is built against one Node ABI.
// package.json's fspool.nativeDependencies names the dependencies' addons.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { devDependencies, fspool } from '../../package.json';

/** A pipe being read by readPipe. */
export interface PipeReader {
  /** Stop keeping the event loop alive (reading goes on while it runs). */
  unref(): void;
  /** Stop reading and close the fd, without a last call. */
  close(): void;
}

interface Sys {
  flock(fd: number, op: number): boolean;
  /** pipe2(O_CLOEXEC); resized to `capacity` bytes if given and the kernel allows (else its default). */
  pipe(capacity?: number): [number, number];
  clearNonblock(fd: number): void;
  /**
   * Watch the read end of a pipe on the event loop (made non-blocking): each chunk read goes to
   * `onChunk`, then null at its end, and the fd is closed. See native/fspool_sys.c.
   */
  readPipe(fd: number, onChunk: (chunk: Buffer | null) => void): PipeReader;
  /** waitpid: true once reaped (or not our child); with `wait` false, false while it runs. */
  reap(pid: number, wait: boolean): boolean;
  /** posix_spawn native/fspool_spawner.c with a socket as its fd 3; our end back. */
  spawnHelper(path: string): { pid: number; requestFd: number };
  /** waitid without reaping: undefined while it runs, [code, signal] once exited, null if not ours. */
  childStatus(pid: number): [number, number] | null | undefined;
  /**
   * Send a request (with fds as SCM_RIGHTS) on the helper's socket; helperRecv reads the reply.
   * Errors carry `syscall` 'sendmsg': the helper never had the request.
   */
  helperSend(fd: number, request: Buffer, fds: number[]): void;
  /** The helper's next 16-byte record; undefined if none yet (wait false); null at its end. */
  helperRecv(fd: number, wait: boolean): Buffer | null | undefined;
  /** The bytes waiting to be read in a pipe (ioctl FIONREAD). */
  pending(fd: number): number;
  /** SHA-256 of `bytes`, by the OpenSSL Node exports (see native/fspool_sys.c). */
  sha256(bytes: Uint8Array): Buffer;
  /**
   * Set this thread's file-system user and group ids (setfsuid(2), setfsgid(2)) and its
   * supplementary groups (setgroups(2), for this thread alone): whose permissions its opens,
   * creations and chowns get, and who owns what it creates. True if all took.
   */
  fsIds(uid: number, gid: number, groups: number[]): boolean;
  /** This thread's supplementary groups (getgroups(2)), as fsIds takes them. */
  groups(): number[];
  /** isatty(3), without node:tty (which loads node:net and the streams). */
  isatty(fd: number): boolean;
  /** The columns of the terminal on fd (ioctl TIOCGWINSZ), or undefined if it is none. */
  winsize(fd: number): number | undefined;
  /** One datagram `message` to the unix socket `path` ('@' first: the abstract namespace), as sd_notify(3) sends. */
  sdNotify(path: string, message: string): void;
  /** See native/fspool_sys.c: turns ks = ECB(ct) into CFB plaintext in place; reg carries over. */
  cfbXor(ks: Buffer, ct: Buffer, reg: Buffer): void;
  /**
   * See native/fspool_sys.c: the names in `dir` of fspl's glob `fspl-*.fspl` (each followed by
   * a NUL) and what lstat said of each (SCAN_FIELDS numbers a name), or the errno that kept
   * the directory from being read. `noFollow`: a symlink at `dir` is not followed (ENOTDIR).
   */
  scanJobDir(dir: string, noFollow?: boolean): [Buffer, Float64Array] | number;
  /** A file's bytes mapped, as a one-byte string (latin1) or an ArrayBuffer; undefined where Node takes neither (bin/fspool). */
  mapFile(path: string, latin1: boolean): string | ArrayBuffer | undefined;
  /** lseek(fd, pos, SEEK_HOLE if `hole`, else SEEK_DATA): where the next hole or data at or after `pos` starts; -1 if no data is left. */
  seek(fd: number, pos: number, hole: boolean): number;
  LOCK_EX: number;
  LOCK_NB: number;
  LOCK_UN: number;
}

type Dependency = keyof typeof fspool.nativeDependencies;

const BUILD = 'build/Release/';

/** Where this platform's prebuilt binaries are, relative to the package root. */
const PREBUILDS = `prebuilds/${process.platform}-${process.arch}/`;

/** A dependency's prebuilt addon, by the name scripts/prebuild.mjs gives it. */
function prebuiltName(dep: Dependency): string {
  return `${dep}.${fspool.nativeDependencies[dep].napi ? 'napi' : `abi${process.versions.modules}`}.node`;
}

const found = new Map<string, string>();

/**
 * `rel` in the package root: the nearest directory above this module that has it. A binary
 * of fspool's own, `build/Release/NAME`, may also be the prebuilt `prebuilds/PLATFORM-ARCH/NAME`.
 * Looked up once per process.
 */
export function packageFile(rel: string): string {
  const known = found.get(rel);
  if (known !== undefined) return known;
  const prebuilt = rel.startsWith(BUILD) ? PREBUILDS + rel.slice(BUILD.length) : undefined;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const r of prebuilt ? [rel, prebuilt] : [rel]) {
      const p = join(dir, r);
      if (existsSync(p)) {
        found.set(rel, p);
        return p;
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`fspool is not built: ${rel} not found (run npm install in fspool's directory)`);
    dir = up;
  }
}

const addons = new Map<Dependency, unknown>();

/**
 * A dependency's addon: the one compiled in node_modules if that is the version whose
 * JavaScript the bundle has (a clone's devDependencies; another version may be found further
 * up, e.g. another global package's), else build/Release/ or prebuilds/ under its prebuilt name.
 * Found once per process: a later call touches no file (it may come as a queue's owner, who
 * cannot read where fspool is installed: queue/owner.ts).
 */
function dependencyAddon(dep: Dependency): unknown {
  if (!addons.has(dep)) addons.set(dep, findAddon(dep));
  return addons.get(dep);
}

function findAddon(dep: Dependency): unknown {
  const req = createRequire(import.meta.url);
  try {
    const pj = req.resolve(`${dep}/package.json`);
    const compiled = join(dirname(pj), fspool.nativeDependencies[dep].addon);
    if ((req(pj) as { version: string }).version === devDependencies[dep] && existsSync(compiled)) return req(compiled);
  } catch {
    /* not installed */
  }
  return req(packageFile(BUILD + prebuiltName(dep)));
}

let sys: Sys | undefined;
export function native(): Sys {
  sys ??= createRequire(import.meta.url)(packageFile('build/Release/fspool_sys.node')) as Sys;
  return sys;
}

/** zstd-napi's binding (ZSTD_compressStream2 and friends), which is its addon itself. */
export function zstdBinding(): typeof import('zstd-napi/binding') {
  return dependencyAddon('zstd-napi') as typeof import('zstd-napi/binding');
}

/**
 * better-sqlite3's addon, for its bundled JavaScript: the bundle maps the `bindings` module it
 * loads the addon with to this (src/sys/bindings.cjs, scripts/build.mjs).
 */
export function betterSqlite3Addon(): unknown {
  return dependencyAddon('better-sqlite3');
}

/**
 * better-sqlite3. In the bundle, its JavaScript is part of dist/fspool.cjs, and required here
 * so that it is evaluated on first use only; from source (vitest), it is node_modules'.
 */
export function betterSqlite3(): typeof import('better-sqlite3') {
  return require('better-sqlite3');
}
