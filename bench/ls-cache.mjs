#!/usr/bin/env node
// queue-ls with fspool's header cache (QUEUE/fspool/state.db) against fspl, on its own:
//
//   node bench/ls-cache.mjs              10,000 raw packets, then 10,000 zstd-compressed ones
//   node bench/ls-cache.mjs --100k       also 100,000 raw packets (fspool only: usable?)
//   node bench/ls-cache.mjs --runs 5     recorded runs per raw measurement (default 5)
//
// Needs fspl and zstd on PATH, and a built fspool (npm run build). Everything is made under a
// fresh os.tmpdir()/fspool-ls-cache-XXXXXX/ and removed at the end. It reports wall times
// (median and best) and the ratios to fspl; the targets are printed beside them, not judged:
//   raw, 10k:            fspool (cache warm) <= 1.5x fspl
//   zstd -d, 10k:        fspool's second listing >= 20x faster than fspl
// Both tools' listings are compared, and a difference makes the exit status 1.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packet } from './lib/packet.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FSPOOL = process.env.FSPOOL ?? join(root, 'bin/fspool');
const FSPL = process.env.FSPL ?? 'fspl';
const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const RUNS = runsAt >= 0 ? Number(args[runsAt + 1]) : 5;
const BIG = args.includes('--100k');

// ---- packets: the bytes `fspl prepare` writes for a Command with no params, no env ----------
function makeQueue(dir, n, compress) {
  const q = join(dir, `q-${n}-${compress ? 'zstd' : 'raw'}`);
  execFileSync(FSPL, ['queue-init', '-q', q]);
  const staging = join(dir, `staging-${randomUUID()}`);
  mkdirSync(staging);
  const names = [];
  for (let i = 1; i <= n; i++) {
    const name = `fspl-${randomUUID()}.fspl`;
    writeFileSync(join(compress ? staging : join(q, 'jobs'), name), packet(i, Buffer.from(`payload ${i}\n`.repeat(8))));
    names.push(name);
  }
  if (compress) {
    // One zstd process for many files: -q --rm writes NAME.zst beside each.
    for (let at = 0; at < names.length; at += 2000) {
      execFileSync('zstd', ['-q', '--rm', ...names.slice(at, at + 2000)], { cwd: staging });
    }
    for (const name of names) renameSync(join(staging, `${name}.zst`), join(q, 'jobs', name));
  }
  rmSync(staging, { recursive: true, force: true });
  return q;
}

// ---- timing ----------------------------------------------------------------------------------
function timeLs(tool, q, decoder, out) {
  const argv = ['queue-ls', '-q', q, ...(decoder ? ['-d', decoder] : [])];
  const fd = openSync(out, 'w');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(tool, argv, { stdio: ['ignore', fd, 'pipe'], env: { ...process.env, TZ: 'UTC' } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  closeSync(fd);
  if (r.status !== 0) throw new Error(`${tool} ${argv.join(' ')} failed: ${r.stderr}`);
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => `${median(xs).toFixed(0)} ms (best ${Math.min(...xs).toFixed(0)})`;
const rows = [];
let mismatch = false;

function compare(a, b, what) {
  if (readFileSync(a, 'utf8') !== readFileSync(b, 'utf8')) {
    mismatch = true;
    console.error(`NOTE: ${what}: fspool's listing differs from fspl's`);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'fspool-ls-cache-'));
process.on('SIGINT', () => {
  rmSync(dir, { recursive: true, force: true });
  process.exit(130);
});
try {
  // Raw packets, 10k: fspl; fspool's first listing (makes the cache); fspool with the cache.
  {
    const q = makeQueue(dir, 10_000, false);
    const [a, b] = [join(dir, 'fspl.out'), join(dir, 'fspool.out')];
    const first = timeLs(FSPOOL, q, undefined, b);
    const fspl = [];
    const warm = [];
    timeLs(FSPL, q, undefined, a); // page cache warm-up for both
    for (let i = 0; i < RUNS; i++) {
      const order = i % 2 ? [FSPOOL, FSPL] : [FSPL, FSPOOL];
      for (const t of order) (t === FSPL ? fspl : warm).push(timeLs(t, q, undefined, t === FSPL ? a : b));
    }
    compare(a, b, 'raw 10k');
    rows.push(['ls 10k raw', fmt(fspl), `first ${first.toFixed(0)} ms; cached ${fmt(warm)}`, `${(median(warm) / median(fspl)).toFixed(2)}x`, '<= 1.5x']);
  }
  // zstd-compressed packets, 10k, -d zstdcat: fspl runs the decoder 10k times on every listing.
  {
    const q = makeQueue(dir, 10_000, true);
    const [a, b] = [join(dir, 'fspl-z.out'), join(dir, 'fspool-z.out')];
    const fspl = timeLs(FSPL, q, 'zstdcat', a);
    const first = timeLs(FSPOOL, q, 'zstdcat', b);
    const second = [];
    for (let i = 0; i < RUNS; i++) second.push(timeLs(FSPOOL, q, 'zstdcat', b));
    compare(a, b, 'zstd 10k');
    rows.push(['ls 10k -d zstdcat', `${fspl.toFixed(0)} ms`, `first ${first.toFixed(0)} ms; second ${fmt(second)}`, `${(fspl / median(second)).toFixed(1)}x faster`, '>= 20x faster']);
  }
  if (BIG) {
    const q = makeQueue(dir, 100_000, false);
    const out = join(dir, 'big.out');
    const first = timeLs(FSPOOL, q, undefined, out);
    const warm = [];
    for (let i = 0; i < 3; i++) warm.push(timeLs(FSPOOL, q, undefined, out));
    const fspl = timeLs(FSPL, q, undefined, join(dir, 'big-fspl.out'));
    compare(join(dir, 'big-fspl.out'), out, 'raw 100k');
    rows.push(['ls 100k raw', `${fspl.toFixed(0)} ms`, `first ${first.toFixed(0)} ms; cached ${fmt(warm)}`, `${(median(warm) / fspl).toFixed(2)}x`, 'usable']);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log('| measurement | fspl | fspool | ratio | target |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
process.exit(mismatch ? 1 : 0);
