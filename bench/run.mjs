#!/usr/bin/env node
// fspool vs fspl, side by side in one run. See bench/README.md.
//
//   node bench/run.mjs                      all benchmarks
//   node bench/run.mjs cold-start ls-10k    only these
//   node bench/run.mjs --runs 3             override every benchmark's number of recorded runs
//   node bench/run.mjs --list
//
// Prints a table of medians (and minimums) and the ratio fspool ÷ baseline, and writes the same
// as JSON to bench/results/latest.json. Results are reported, never judged: the exit status is
// non-zero only when a tool failed to do the work (bad exit status, wrong queue state after).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCHMARKS, makeContext } from './lib/benchmarks.mjs';
import { packetHeader } from './lib/packet.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

function usage(code) {
  console.log(`usage: node bench/run.mjs [--runs N] [--list] [BENCHMARK...]
benchmarks: ${BENCHMARKS.map((b) => b.name).join(', ')}
env: FSPL (default: fspl on PATH), FSPOOL (default: ${join(root, 'bin/fspool')})`);
  process.exit(code);
}

// ---- arguments ------------------------------------------------------------------------------
const args = process.argv.slice(2);
let runsOverride;
const wanted = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--help' || a === '-h') usage(0);
  else if (a === '--list') {
    for (const b of BENCHMARKS) console.log(`${b.name.padEnd(14)} ${b.title} (${b.defaultRuns} runs + ${b.warmup} warm-up)`);
    process.exit(0);
  } else if (a === '--runs' || a.startsWith('--runs=')) {
    const v = a.includes('=') ? a.slice(7) : args[++i];
    runsOverride = Number(v);
    if (!Number.isInteger(runsOverride) || runsOverride < 1) usage(2);
  } else if (a.startsWith('-')) usage(2);
  else wanted.push(a);
}
const unknown = wanted.filter((w) => !BENCHMARKS.some((b) => b.name === w));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}`);
  usage(2);
}
const selected = BENCHMARKS.filter((b) => wanted.length === 0 || wanted.includes(b.name));

// ---- tools ----------------------------------------------------------------------------------
function which(cmd) {
  for (const d of (process.env.PATH ?? '').split(':')) {
    const p = join(d || '.', cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}
const fspl = process.env.FSPL ?? which('fspl');
const fspool = process.env.FSPOOL ?? join(root, 'bin/fspool');
if (!fspl) throw new Error('fspl not found on PATH (set FSPL)');
if (!existsSync(join(root, 'dist/fspool.cjs')) && !process.env.FSPOOL) {
  throw new Error('dist/fspool.cjs missing: run `node scripts/build.mjs` (or `npm run bench`, which builds first)');
}
const version = (cmd) => execFileSync(cmd, ['--version'], { encoding: 'utf8' }).trim();

// ---- the temp dir ---------------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'fspool-bench-'));
let cleaned = false;
/** Clean-up hooks of the benchmarks (e.g. stopping a gpg-agent), run before the dir goes. */
const cleanups = [];
const cleanup = () => {
  if (!cleaned) {
    for (const f of cleanups) {
      try {
        f();
      } catch {
        /* best effort */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  cleaned = true;
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

/** The generated packets must be byte for byte what fspl prepare writes. */
function checkEncoder() {
  const seqFile = join(dir, 'encoder-check.seq');
  writeFileSync(seqFile, '70000\n');
  const pkt = execFileSync(fspl, ['prepare', '-s', seqFile], { input: '' });
  const info = spawnSync(fspl, ['stdin-info'], { input: pkt, encoding: 'utf8' }).stdout;
  const v = (k) => Number(new RegExp(`^${k}=(\\d+)$`, 'm').exec(info)?.[1]);
  const mine = packetHeader(v('FSPL_SEQ'), v('FSPL_CTIME_SECS'), v('FSPL_CTIME_NANOS'));
  if (!mine.equals(pkt)) throw new Error('bench/lib/packet.mjs no longer writes what fspl prepare writes');
}

// ---- formatting -----------------------------------------------------------------------------
const fmt = (x, d) => (x >= 1000 ? x.toFixed(0) : x.toFixed(d));
const cell = (s, unit, d) => `${fmt(s.median, d)} (${fmt(unit === 'MB/s' ? s.max : s.min, d)})`;

function table(rows) {
  const head = ['benchmark', 'metric', 'baseline: median (best)', 'fspool: median (best)', 'ratio', 'target'];
  const body = rows.map((r) => [
    r.bench,
    r.metric,
    `${r.baseName === 'fspl' ? '' : `${r.baseName}: `}${cell(r.base, r.unit, r.digits)}`,
    cell(r.fspool, r.unit, r.digits),
    r.excess ? `${r.ratio >= 0 ? '+' : '−'}${Math.abs(r.ratio).toFixed(1)} ${r.unit}` : `${r.ratio.toFixed(2)}×`,
    r.target,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cols) => `| ${cols.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

// ---- run ------------------------------------------------------------------------------------
const t0 = Date.now();
const load0 = loadavg();
console.log(`fspool bench: fspl ${fspl} (${version(fspl)}) vs fspool ${fspool} (${version(fspool)})`);
console.log(`node ${process.version}, ${cpus().length} CPUs, load average ${load0.map((x) => x.toFixed(2)).join(' ')}, temp dir ${dir}`);
checkEncoder();

const results = {};
const ctx = makeContext({ dir, fspl, fspool, runsOverride, results, cleanups });
const rows = [];
let failed = false;
for (const b of selected) {
  const bt = Date.now();
  process.stdout.write(`\n== ${b.name}: ${b.title}\n   ${ctx.runs(b)} runs + ${b.warmup} warm-up per tool ... `);
  try {
    const r = b.run(ctx);
    const secs = (Date.now() - bt) / 1000;
    console.log(`${secs.toFixed(1)} s`);
    for (const n of r.notes ?? []) console.log(`   note: ${n}`);
    rows.push(...r.rows);
    results[b.name] = { title: b.title, seconds: secs, rows: r.rows.map(({ digits, ...x }) => x), samples: r.samples, notes: r.notes ?? [], ...(r.absolute ? { absolute: r.absolute } : {}) };
  } catch (e) {
    failed = true;
    console.log('FAILED');
    console.log(`   ${String(e?.message ?? e).replace(/\n/g, '\n   ')}`);
    results[b.name] = { title: b.title, error: String(e?.message ?? e) };
  }
}

const seconds = (Date.now() - t0) / 1000;
const load1 = loadavg();
console.log(`\n${table(rows)}\n`);
console.log('ratio = fspool ÷ baseline (fspl unless named), or fspool − baseline where it shows a unit. Times and RSS: lower is better; MB/s: higher is better.');
console.log('Cells: median (best of the runs: min for times/RSS, max for MB/s).');
console.log(`total ${seconds.toFixed(1)} s; load average at the end ${load1.map((x) => x.toFixed(2)).join(' ')} (other work on this machine makes numbers noisy)`);

mkdirSync(join(here, 'results'), { recursive: true });
const json = {
  date: new Date().toISOString(),
  seconds,
  host: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadavgStart: load0, loadavgEnd: load1 },
  tools: { fspl: { path: fspl, version: version(fspl) }, fspool: { path: fspool, version: version(fspool) } },
  selected: selected.map((b) => b.name),
  runsOverride: runsOverride ?? null,
  benchmarks: results,
};
writeFileSync(join(here, 'results/latest.json'), `${JSON.stringify(json, null, 2)}\n`);
console.log(`wrote ${join('bench/results/latest.json')}`);
cleanup();
process.exit(failed ? 1 : 0);
