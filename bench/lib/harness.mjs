// Shared by bench/soak.mjs and bench/lib/stress.mjs: a seeded PRNG, running fspool
// with a watchdog, finding processes we left behind, a throwaway OpenPGP key.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
export const FSPOOL = process.env.FSPOOL ?? join(ROOT, 'bin/fspool');
export const FSPL = process.env.FSPL ?? 'fspl';

/** mulberry32: a small, fast, seedable PRNG; returns floats in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit hash of a few numbers/strings: independent streams per (seed, key...). */
export function mix(...parts) {
  let h = 0x811c9dc5;
  for (const p of parts) {
    for (const c of String(p)) {
      h ^= c.charCodeAt(0);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    h ^= 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Pick a key of `weights` ({name: weight}) with the random number r in [0, 1). */
export function pick(weights, r) {
  const entries = Object.entries(weights).filter(([, w]) => w > 0);
  const total = entries.reduce((s, [, w]) => s + w, 0);
  let x = r * total;
  for (const [k, w] of entries) {
    if (x < w) return k;
    x -= w;
  }
  return entries[entries.length - 1][0];
}

/** "a=1,b=2.5" -> {a: 1, b: 2.5}; unknown names are refused. */
export function parseWeights(text, known) {
  const out = {};
  for (const part of text.split(',').filter(Boolean)) {
    const [k, v] = part.split('=');
    if (!known.includes(k)) throw new Error(`unknown name ${k} (known: ${known.join(', ')})`);
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`bad weight for ${k}: ${v}`);
    out[k] = n;
  }
  return out;
}

/** Bytes of a payload, from a seeded stream. */
export function randomBytes(rand, size) {
  const b = Buffer.allocUnsafe(size);
  let i = 0;
  for (; i + 4 <= size; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, i);
  for (; i < size; i++) b[i] = (rand() * 256) | 0;
  return b;
}

export function tempDir(prefix) {
  return mkdtempSync(join(process.env.SOAK_TMPDIR ?? tmpdir(), prefix));
}

/**
 * Run a program; resolves with {code, signal, stdout, stderr, ms, killedByWatchdog}. The
 * watchdog: `idle()` is called every 250 ms and returns how long (ms) nothing has happened;
 * past `idleLimitMs` the program's process group is SIGKILLed and counted as hung.
 */
export function run(file, args, { env, input, idle, idleLimitMs, limitMs, stdout = 'pipe', keepStdout = true } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(file, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', stdout, 'pipe'], detached: true });
    const out = [];
    const err = [];
    child.stdout?.on('data', (b) => keepStdout && out.push(b));
    child.stderr.on('data', (b) => err.push(b));
    if (input !== undefined) {
      child.stdin.on('error', () => {}); // the program may stop reading (EPIPE): its exit status tells
      child.stdin.end(input);
    }
    let hung = false;
    const kill = () => {
      hung = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    };
    const timer = setInterval(() => {
      if (idle && idle() > idleLimitMs) kill();
      if (limitMs && performance.now() - t0 > limitMs) kill();
    }, 250);
    child.once('error', (e) => {
      clearInterval(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearInterval(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString(), ms: performance.now() - t0, hung, pid: child.pid });
    });
  });
}

/** Processes whose environment holds NAME=VALUE (ours, by a marker we gave them), with their environment. */
export function marked(name, value) {
  const mark = Buffer.from(`${name}=${value}\0`);
  const out = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    let environ;
    try {
      environ = readFileSync(`/proc/${p}/environ`);
    } catch {
      continue;
    }
    if (!environ.includes(mark)) continue;
    const env = {};
    for (const kv of environ.toString().split('\0')) {
      const eq = kv.indexOf('=');
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    let comm = '?';
    try {
      comm = readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      /* gone */
    }
    out.push({ pid: Number(p), comm, env });
  }
  return out;
}

/** A throwaway OpenPGP key pair made by gpg in a temp GNUPGHOME: {pub, sec} file paths. */
export function makeKey(dir) {
  const home = mkdtempSync(join(dir, 'gnupg-'));
  const env = { ...process.env, GNUPGHOME: home };
  const gpg = (args, input) => {
    const r = spawnSync('gpg', ['--batch', '--quiet', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { env, input });
    if (r.status !== 0) throw new Error(`gpg ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  gpg(['--quick-gen-key', 'fspool soak <soak@example.invalid>', 'ed25519', 'cert,sign', 'never']);
  const fpr = gpg(['--list-keys', '--with-colons'])
    .toString()
    .split('\n')
    .find((l) => l.startsWith('fpr:'))
    .split(':')[9];
  gpg(['--quick-add-key', fpr, 'cv25519', 'encr', 'never']);
  const pub = join(dir, 'recv.pub.asc');
  const sec = join(dir, 'recv.sec.asc');
  writeFileSync(pub, gpg(['--armor', '--export', fpr]));
  writeFileSync(sec, gpg(['--armor', '--export-secret-keys', fpr]), { mode: 0o600 });
  spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env });
  rmSync(home, { recursive: true, force: true });
  return { pub, sec };
}

/** flock(1) -n on a file: true when nobody holds it. */
export function lockFree(path) {
  return spawnSync('flock', ['-n', path, 'true']).status === 0;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Median and max of a list of numbers. */
export function stats(xs) {
  if (xs.length === 0) return { n: 0, median: null, p95: null, max: null };
  const s = [...xs].sort((a, b) => a - b);
  const q = (f) => s[Math.min(s.length - 1, Math.floor(f * s.length))];
  return { n: s.length, median: q(0.5), p95: q(0.95), max: s[s.length - 1] };
}
