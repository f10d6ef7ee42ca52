// The benchmarks. Each one prepares its inputs once, then runs the tools side by side,
// interleaved (the order alternates every round, so drift on a busy machine hits both), after
// warm-up rounds that are not recorded. Each returns table rows plus the raw samples.
import { randomBytes, randomUUID } from 'node:crypto';
import { linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { measure, summarize } from './measure.mjs';
import { initQueue, makeJobs, packet, writeBigPacket, writeJobs, writeRepeated } from './packet.mjs';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * Run `once(tool, round)` for every tool, `warmup` unrecorded rounds then `runs` recorded ones.
 * Returns { tool: [sample, ...] }.
 */
function sideBySide(tools, { runs, warmup }, once) {
  const samples = Object.fromEntries(tools.map((t) => [t, []]));
  for (let round = -warmup; round < runs; round++) {
    const order = (round + warmup) % 2 === 0 ? tools : [...tools].reverse();
    for (const t of order) {
      const s = once(t, round);
      if (round >= 0) samples[t].push(s);
    }
  }
  return samples;
}

const pick = (samples, key) => Object.fromEntries(Object.entries(samples).map(([t, xs]) => [t, summarize(xs.map((s) => s[key]))]));

function check(cond, what) {
  if (!cond) throw new Error(what);
}

function ranOk(r, tool, ctx, what) {
  if (r.code !== 0) {
    let err = '';
    try {
      err = readFileSync(ctx.errFile, 'utf8').slice(-600);
    } catch {
      /* none */
    }
    throw new Error(`${tool} ${what}: exit ${r.code}\n${err}`);
  }
}

/**
 * How much of fspool's extra wall time is start-up: the cold-start benchmark's gap
 * (fspool − fspl, medians) times the number of spooler processes the benchmark starts.
 */
function startupNote(ctx, ms, processes = 1) {
  const cold = ctx.results['cold-start']?.samples?.ms;
  const extra = ms.fspool.median - ms.fspl.median;
  let s = `fspool − fspl = ${extra.toFixed(0)} ms (median)`;
  if (cold) {
    const gap = (cold.fspool.median - cold.fspl.median) * processes;
    const rest = extra - gap;
    s +=
      rest > 0
        ? `; start-up accounts for ~${gap.toFixed(0)} ms of it (${processes} × cold-start gap), leaving ${rest.toFixed(0)} ms`
        : `; start-up alone (${processes} × cold-start gap = ~${gap.toFixed(0)} ms) covers it`;
  }
  return s;
}

/** A row comparing one metric of fspool against a baseline. */
function row(bench, metric, unit, base, fspool, target, { baseName = 'fspl', higherIsBetter = false, digits = 1 } = {}) {
  return { bench, metric, unit, baseName, base, fspool, ratio: fspool.median / base.median, target, higherIsBetter, digits };
}

// ---------------------------------------------------------------------------------------------

export const BENCHMARKS = [
  {
    name: 'cold-start',
    title: 'Cold start: `prepare -s - </dev/null >/dev/null`',
    defaultRuns: 21,
    warmup: 2,
    run(ctx) {
      const tools = ['fspl', 'fspool', 'node'];
      const argv = {
        fspl: [ctx.fspl, 'prepare', '-s', '-'],
        fspool: [ctx.fspool, 'prepare', '-s', '-'],
        // bin/fspool starts as `#!/usr/bin/env node`; start the baseline the same way.
        node: ['/usr/bin/env', 'node', '-e', '0'],
      };
      const samples = sideBySide(tools, { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const r = measure(argv[t], { stdin: '/dev/null', stderr: ctx.errFile });
        ranOk(r, t, ctx, 'cold start');
        return r;
      });
      const ms = pick(samples, 'ms');
      return {
        rows: [
          row(this.name, 'wall ms, vs fspl', 'ms', ms.fspl, ms.fspool, 'info (native binary)'),
          row(this.name, 'wall ms, vs `node -e 0`', 'ms', ms.node, ms.fspool, '≤ 1.3×', { baseName: 'node' }),
        ],
        samples: { ms },
      };
    },
  },

  {
    name: 'ls-10k',
    title: '`queue-ls` of a queue holding 10,000 jobs',
    defaultRuns: 5,
    warmup: 1,
    run(ctx) {
      const q = join(ctx.dir, 'ls-10k');
      initQueue(q);
      writeJobs(q, makeJobs(10_000, (seq) => Buffer.from(`payload of job ${seq}\n`)));
      const out = (t) => join(ctx.dir, `ls-10k.${t}.out`);
      const samples = sideBySide(['fspl', 'fspool'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const r = measure([ctx[t], 'queue-ls', '-q', q], { stdout: out(t), stderr: ctx.errFile });
        ranOk(r, t, ctx, 'queue-ls');
        return r;
      });
      const a = readFileSync(out('fspl'), 'utf8');
      const b = readFileSync(out('fspool'), 'utf8');
      const notes = [];
      check(a.split('\n').length >= 10_001, `fspl queue-ls printed ${a.split('\n').length} lines`);
      if (a !== b) notes.push(`queue-ls output differs from fspl's (fspl ${a.length} bytes, fspool ${b.length} bytes)`);
      rmSync(q, { recursive: true, force: true });
      const ms = pick(samples, 'ms');
      notes.push(startupNote(ctx, ms));
      return { rows: [row(this.name, 'wall ms', 'ms', ms.fspl, ms.fspool, '≤ 1.5×')], samples: { ms }, notes };
    },
  },

  {
    name: 'jobs-1k',
    title: '1,000 tiny jobs: `queue-process -q Q true`',
    defaultRuns: 5,
    warmup: 1,
    run(ctx) {
      const jobs = makeJobs(1000, (seq) => Buffer.from(`tiny job ${seq}\n`));
      const samples = sideBySide(['fspl', 'fspool'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const q = mkdtempSync(join(ctx.dir, `jobs-1k-${t}-`));
        initQueue(q);
        writeJobs(q, jobs);
        const r = measure([ctx[t], 'queue-process', '-q', q, 'true'], { stderr: ctx.errFile });
        ranOk(r, t, ctx, 'queue-process');
        const next = readFileSync(join(q, 'nextseq'), 'utf8');
        const left = readdirSync(join(q, 'jobs')).length;
        check(next.trim() === '1001' && left === 0, `${t}: after queue-process nextseq=${next.trim()}, ${left} files left in jobs/`);
        rmSync(q, { recursive: true, force: true });
        return { ...r, cpuS: r.userS + r.sysS };
      });
      const ms = pick(samples, 'ms');
      const cpu = pick(samples, 'cpuS');
      return {
        rows: [row(this.name, 'wall ms', 'ms', ms.fspl, ms.fspool, '≤ 1.0×')],
        samples: { ms, cpuS: cpu },
        notes: [
          `CPU (user+sys, incl. the 1,000 \`true\` children) median: fspl ${cpu.fspl.median.toFixed(2)} s, fspool ${cpu.fspool.median.toFixed(2)} s`,
          startupNote(ctx, ms),
        ],
      };
    },
  },

  {
    name: 'write-100m',
    title: '`prepare -s - -i FILE | queue-write -q Q` of a 100 MiB payload',
    defaultRuns: 5,
    warmup: 1,
    run(ctx) {
      const bytes = 100 * MiB;
      const payload = join(ctx.dir, 'payload-100m.bin');
      writeRepeated(payload, bytes, ctx.block());
      const size = statSync(payload).size;
      const script = '"$0" prepare -s - -i "$1" | "$0" queue-write -q "$2"';
      const samples = sideBySide(['fspl', 'fspool'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const q = mkdtempSync(join(ctx.dir, `write-100m-${t}-`));
        initQueue(q);
        const r = measure(['sh', '-c', script, ctx[t], payload, q], { stderr: ctx.errFile });
        ranOk(r, t, ctx, 'prepare | queue-write');
        const files = readdirSync(join(q, 'jobs'));
        check(files.length === 1 && /^fspl-.*\.fspl$/.test(files[0]), `${t}: queue-write left ${JSON.stringify(files)}`);
        const got = statSync(join(q, 'jobs', files[0])).size;
        check(got === size + 85, `${t}: job file is ${got} bytes, expected ${size + 85}`);
        rmSync(q, { recursive: true, force: true });
        return { ...r, mbps: size / 1e6 / (r.ms / 1000) };
      });
      const ms = pick(samples, 'ms');
      const mbps = pick(samples, 'mbps');
      return {
        rows: [
          row(this.name, 'wall ms', 'ms', ms.fspl, ms.fspool, '≈ 1.0× (info)'),
          row(this.name, 'throughput MB/s', 'MB/s', mbps.fspl, mbps.fspool, '≈ 1.0× (info)', { higherIsBetter: true }),
        ],
        samples: { ms, mbps },
        notes: [startupNote(ctx, ms, 2)],
      };
    },
  },

  {
    name: 'deliver-1g',
    title: "1 GiB raw payload into `sh -c 'cat >/dev/null'` (no decoder)",
    defaultRuns: 3,
    warmup: 1,
    run(ctx) {
      const big = ctx.bigPacket(GiB);
      const size = statSync(big).size;
      const notes = [];
      // Zero-copy check: is the receiver's stdin a regular file (the job itself) or a pipe?
      for (const t of ['fspl', 'fspool']) {
        const q = mkdtempSync(join(ctx.dir, `zc-${t}-`));
        initQueue(q);
        writeJobs(q, [{ name: `fspl-${randomUUID()}.fspl`, data: packet(1, Buffer.from('x')) }]);
        const r = measure([ctx[t], 'queue-process', '-q', q, 'sh', '--', '-c', 'test -f /dev/stdin && cat >/dev/null'], {
          stderr: ctx.errFile,
        });
        notes.push(`${t}: receiver's stdin is ${r.code === 0 ? 'the job file itself (zero-copy)' : 'NOT a regular file (copied through a pipe?)'}`);
        rmSync(q, { recursive: true, force: true });
      }
      const samples = sideBySide(['fspl', 'fspool'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const q = mkdtempSync(join(ctx.dir, `deliver-1g-${t}-`));
        initQueue(q);
        // A hard link: no copy per run, and processing only unlinks it.
        linkSync(big, join(q, 'jobs', `fspl-${randomUUID()}.fspl`));
        const r = measure([ctx[t], 'queue-process', '-q', q, 'sh', '--', '-c', 'cat >/dev/null'], {
          stderr: ctx.errFile,
          poll: true,
        });
        ranOk(r, t, ctx, 'queue-process');
        const next = readFileSync(join(q, 'nextseq'), 'utf8').trim();
        const left = readdirSync(join(q, 'jobs')).length;
        check(next === '2' && left === 0, `${t}: after queue-process nextseq=${next}, ${left} files left in jobs/`);
        rmSync(q, { recursive: true, force: true });
        return {
          ...r,
          mbps: size / 1e6 / (r.ms / 1000),
          hwmMB: (r.hwmKb * 1024) / 1e6,
          treeMB: (r.treeMaxRssKb * 1024) / 1e6,
          cpuS: r.userS + r.sysS,
        };
      });
      const ms = pick(samples, 'ms');
      const mbps = pick(samples, 'mbps');
      const hwm = pick(samples, 'hwmMB');
      const tree = pick(samples, 'treeMB');
      const cpu = pick(samples, 'cpuS');
      notes.push(
        startupNote(ctx, ms),
        `largest single process in the tree (wait4 ru_maxrss, spooler or receiver): fspl ${tree.fspl.max.toFixed(1)} MB, fspool ${tree.fspool.max.toFixed(1)} MB`,
        `CPU (user+sys of the whole tree, cat included) median: fspl ${cpu.fspl.median.toFixed(2)} s, fspool ${cpu.fspool.median.toFixed(2)} s`,
      );
      return {
        rows: [
          row(this.name, 'wall ms', 'ms', ms.fspl, ms.fspool, '≈ 1.0× (zero-copy)'),
          row(this.name, 'throughput MB/s', 'MB/s', mbps.fspl, mbps.fspool, '≈ 1.0×', { higherIsBetter: true }),
          row(this.name, 'spooler peak RSS MB (VmHWM)', 'MB', hwm.fspl, hwm.fspool, 'fspool ≤ 100 MB'),
        ],
        samples: { ms, mbps, hwmMB: hwm, treeMaxRssMB: tree, cpuS: cpu },
        notes,
        absolute: { fspoolPeakRssMBMax: hwm.fspool.max },
      };
    },
  },
];

/** Shared state: the temp dir, tool paths, the random block and the cached 1 GiB packet. */
export function makeContext({ dir, fspl, fspool, runsOverride, results }) {
  let block;
  const bigs = new Map();
  return {
    dir,
    fspl,
    fspool,
    errFile: join(dir, 'stderr.log'),
    /** Results of the benchmarks already run, by name (cold-start runs first). */
    results,
    runs: (b) => runsOverride ?? b.defaultRuns,
    block() {
      block ??= randomBytes(MiB);
      return block;
    },
    /** A packet (seq 1) with `bytes` of payload, generated once per bench run and reused. */
    bigPacket(bytes) {
      if (!bigs.has(bytes)) {
        const p = join(dir, `packet-${bytes}.fspl`);
        mkdirSync(dir, { recursive: true });
        writeBigPacket(p, bytes, this.block());
        bigs.set(bytes, p);
      }
      return bigs.get(bytes);
    },
  };
}
