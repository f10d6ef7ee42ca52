// The benchmarks. Each one prepares its inputs once, then runs the tools side by side,
// interleaved (the order alternates every round, so drift on a busy machine hits both), after
// warm-up rounds that are not recorded. Each returns table rows plus the raw samples.
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { measure, summarize } from './measure.mjs';
import { commandHeader, initQueue, makeJobs, packet, writeBigPacket, writeJobs, writeMixedPayload, writeRandomPayload, writeRepeated } from './packet.mjs';

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

/**
 * A row comparing one metric of fspool against a baseline: fspool ÷ baseline, or with `excess`
 * fspool − baseline (medians; for targets that are a margin, not a ratio).
 */
function row(bench, metric, unit, base, fspool, target, { baseName = 'fspl', higherIsBetter = false, digits = 1, excess = false } = {}) {
  const ratio = excess ? fspool.median - base.median : fspool.median / base.median;
  return { bench, metric, unit, baseName, base, fspool, ratio, excess, target, higherIsBetter, digits };
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
    name: 'empty-queue',
    title: '`queue-process -q Q true` on an empty queue',
    defaultRuns: 21,
    warmup: 2,
    run(ctx) {
      // The same queue every run: nothing to process, so nothing changes but what a run keeps
      // (fspool's state database, made by the first run, as on a queue polled by cron).
      const q = join(ctx.dir, 'empty-queue');
      initQueue(q);
      const tools = ['fspl', 'fspool', 'node'];
      const argv = {
        fspl: [ctx.fspl, 'queue-process', '-q', q, 'true'],
        fspool: [ctx.fspool, 'queue-process', '-q', q, 'true'],
        node: ['/usr/bin/env', 'node', '-e', '0'],
      };
      const samples = sideBySide(tools, { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const r = measure(argv[t], { stdin: '/dev/null', stderr: ctx.errFile });
        ranOk(r, t, ctx, 'queue-process of an empty queue');
        return { ...r, cpuMs: (r.userS + r.sysS) * 1000 };
      });
      const left = readdirSync(join(q, 'jobs')).length;
      check(readFileSync(join(q, 'nextseq'), 'utf8').trim() === '1' && left === 0, 'the empty queue changed');
      rmSync(q, { recursive: true, force: true });
      const ms = pick(samples, 'ms');
      const cpu = pick(samples, 'cpuMs');
      return {
        rows: [
          row(this.name, 'wall ms, beyond `node -e 0`', 'ms', ms.node, ms.fspool, '≤ +15 ms', { baseName: 'node', excess: true }),
          row(this.name, 'wall ms, vs fspl', 'ms', ms.fspl, ms.fspool, 'info (native binary)'),
        ],
        samples: { ms, cpuMs: cpu },
        notes: [`CPU (user+sys) median: node -e 0 ${cpu.node.median.toFixed(1)} ms, fspool ${cpu.fspool.median.toFixed(1)} ms, fspl ${cpu.fspl.median.toFixed(1)} ms`],
      };
    },
  },

  {
    name: 'ls-10k',
    title: '`queue-ls` of a queue holding 10,000 jobs',
    defaultRuns: 5,
    warmup: 1,
    run(ctx) {
      // Two copies of the queue: fspool keeps a header cache in QUEUE/fspool/state.db, warm after
      // the warm-up round in one copy, removed before every run in the other (a first listing).
      const q = join(ctx.dir, 'ls-10k');
      const qCold = join(ctx.dir, 'ls-10k-cold');
      const jobs = makeJobs(10_000, (seq) => Buffer.from(`payload of job ${seq}\n`));
      for (const d of [q, qCold]) {
        initQueue(d);
        writeJobs(d, jobs);
      }
      const out = (t) => join(ctx.dir, `ls-10k.${t}.out`);
      const samples = sideBySide(['fspl', 'fspool', 'fspool-cold'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        if (t === 'fspool-cold') rmSync(join(qCold, 'fspool'), { recursive: true, force: true });
        const r = measure([t === 'fspl' ? ctx.fspl : ctx.fspool, 'queue-ls', '-q', t === 'fspool' ? q : qCold], { stdout: out(t), stderr: ctx.errFile });
        ranOk(r, t, ctx, 'queue-ls');
        // queue-ls starts no child: wait4's ru_maxrss is the lister's own peak RSS.
        return { ...r, rssMB: (r.treeMaxRssKb * 1024) / 1e6 };
      });
      const a = readFileSync(out('fspl'), 'utf8');
      const notes = [];
      check(a.split('\n').length >= 10_001, `fspl queue-ls printed ${a.split('\n').length} lines`);
      for (const t of ['fspool', 'fspool-cold']) {
        const b = readFileSync(out(t), 'utf8');
        if (a !== b) notes.push(`${t}: queue-ls output differs from fspl's (fspl ${a.length} bytes, fspool ${b.length} bytes)`);
      }
      const cached = existsSync(join(q, 'fspool'));
      rmSync(q, { recursive: true, force: true });
      rmSync(qCold, { recursive: true, force: true });
      const ms = pick(samples, 'ms');
      const rss = pick(samples, 'rssMB');
      notes.push(
        `peak RSS with no cache (first listing): ${rss['fspool-cold'].median.toFixed(1)} MB (median)`,
        `header cache: ${cached ? 'QUEUE/fspool/ present after the runs' : 'fspool made no QUEUE/fspool/ (no cache in this build)'}`,
        startupNote(ctx, ms),
        `no cache (first listing): ${startupNote(ctx, { fspl: ms.fspl, fspool: ms['fspool-cold'] })}`,
      );
      return {
        rows: [
          row(this.name, 'wall ms, header cache warm', 'ms', ms.fspl, ms.fspool, '≤ 1.5×'),
          row(this.name, 'peak RSS MB, header cache warm', 'MB', rss.fspl, rss.fspool, 'fspool ≤ 60 MB'),
          row(this.name, 'wall ms, no cache (first listing)', 'ms', ms.fspl, ms['fspool-cold'], 'info'),
        ],
        samples: { ms, rssMB: rss },
        notes,
      };
    },
  },

  {
    name: 'ls-big-header',
    title: '`queue-ls` of a queue holding one packet whose header is near the 16 MiB bound, a first listing',
    defaultRuns: 3,
    warmup: 1,
    run(ctx) {
      // What anyone who may write jobs/ can make every reader of a queue, and serve's main
      // thread, spend per file: a header of millions of one-byte integers, in the form fspl
      // writes (one byte string of 16 MiB), in another form fspl reads (the same with its first
      // key a bin), and as 400,000 short byte strings in that other form. fspool's header cache
      // is removed before each of its runs: each is a first listing.
      const shapes = {
        'one-string': commandHeader(1, [Buffer.alloc(16 * 1024 * 1024 - 200, 0x41)]),
        'one-string-other-form': commandHeader(1, [Buffer.alloc(16 * 1024 * 1024 - 200, 0x41)], { seqKeyAsBin: true }),
        'many-strings-other-form': commandHeader(1, Array.from({ length: 400_000 }, (_, i) => Buffer.from(`param number ${String(i).padStart(16, '0')}`)), { seqKeyAsBin: true }),
      };
      const rows = [];
      const notes = [];
      const samples = {};
      for (const [shape, header] of Object.entries(shapes)) {
        const q = join(ctx.dir, `ls-big-header-${shape}`);
        initQueue(q);
        writeFileSync(join(q, 'jobs', 'fspl-big.fspl'), Buffer.concat([header, Buffer.from('payload\n')]));
        const out = (t) => join(ctx.dir, `ls-big-header.${t}.out`);
        const s = sideBySide(['fspl', 'fspool'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
          if (t === 'fspool') rmSync(join(q, 'fspool'), { recursive: true, force: true });
          const r = measure([t === 'fspl' ? ctx.fspl : ctx.fspool, 'queue-ls', '-q', q], { stdout: out(t), stderr: ctx.errFile });
          ranOk(r, t, ctx, 'queue-ls');
          return r;
        });
        const [a, b] = ['fspl', 'fspool'].map((t) => readFileSync(out(t), 'utf8'));
        check(a.split('\n').length === 3, `fspl queue-ls of ${shape} printed ${a.split('\n').length - 1} lines`);
        if (a !== b) notes.push(`${shape}: fspool's listing differs from fspl's`);
        rmSync(q, { recursive: true, force: true });
        const ms = pick(s, 'ms');
        samples[shape] = ms;
        rows.push(row(this.name, `wall ms, ${shape} (${(header.length / 1e6).toFixed(1)} MB)`, 'ms', ms.fspl, ms.fspool, 'info'));
      }
      return { rows, samples: { ms: samples }, notes };
    },
  },

  {
    name: 'ls-10k-zstd',
    title: '`queue-ls` of 10,000 zstd-compressed jobs: fspl `-d zstdcat` vs fspool built-in (no -d)',
    defaultRuns: 3,
    // No warm-up round: fspl's costs ~15 s (10,000 zstdcat processes). The files are in the page
    // cache already, and fspool's header cache is filled by one untimed listing below.
    warmup: 0,
    run(ctx) {
      const n = 10_000;
      // Two copies, as in ls-10k: fspool's header cache warm in one, removed before each run in
      // the other (which fspl lists too).
      const q = join(ctx.dir, 'ls-10k-zstd');
      const qCold = join(ctx.dir, 'ls-10k-zstd-cold');
      const jobs = makeJobs(n, (seq) => Buffer.from(`payload of job ${seq}\n`));
      for (const d of [q, qCold]) {
        initQueue(d);
        writeJobs(d, jobs);
      }
      // `fspl prepare | zstd`, in bulk: the zstd CLI compresses every job file in place.
      execFileSync('zstd', ['-q', '-r', '--rm', join(q, 'jobs'), join(qCold, 'jobs')], { stdio: ['ignore', 'ignore', 'pipe'] });
      for (const d of [q, qCold]) for (const j of jobs) renameSync(join(d, 'jobs', `${j.name}.zst`), join(d, 'jobs', j.name));
      const head = Buffer.alloc(4);
      const fd = openSync(join(q, 'jobs', jobs[0].name), 'r');
      readSync(fd, head, 0, 4, 0);
      closeSync(fd);
      check(head.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd did not compress the job files');
      const bytes = jobs.reduce((a, j) => a + statSync(join(q, 'jobs', j.name)).size, 0);

      const argv = {
        fspl: [ctx.fspl, 'queue-ls', '-q', qCold, '-d', 'zstdcat'],
        fspool: [ctx.fspool, 'queue-ls', '-q', q],
        'fspool-cold': [ctx.fspool, 'queue-ls', '-q', qCold],
      };
      const out = (t) => join(ctx.dir, `ls-10k-zstd.${t}.out`);
      ranOk(measure(argv.fspool, { stdout: out('fspool'), stderr: ctx.errFile }), 'fspool', ctx, 'queue-ls (filling the header cache)');
      const unreadable = new Map();
      const samples = sideBySide(['fspl', 'fspool', 'fspool-cold'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        if (t === 'fspool-cold') rmSync(join(qCold, 'fspool'), { recursive: true, force: true });
        const r = measure(argv[t], { stdout: out(t), stderr: ctx.errFile });
        ranOk(r, t, ctx, 'queue-ls');
        const listed = readFileSync(out(t), 'utf8').split('\n').filter((l) => /^\d+\s/.test(l)).length;
        // What the tool said about files it could not list (fspool: "cannot read job file F: WHY").
        for (const m of readFileSync(ctx.errFile, 'utf8').matchAll(/cannot read job file \S+: (.*)/g)) {
          const k = `${t}: ${m[1]}`;
          unreadable.set(k, (unreadable.get(k) ?? 0) + 1);
        }
        return { ...r, listed };
      });
      const a = readFileSync(out('fspl'), 'utf8');
      rmSync(q, { recursive: true, force: true });
      rmSync(qCold, { recursive: true, force: true });
      check(samples.fspl.every((s) => s.listed === n), `fspl -d zstdcat listed ${samples.fspl.map((s) => s.listed).join(', ')} of ${n} jobs`);
      const ms = pick(samples, 'ms');
      const listed = pick(samples, 'listed');
      const notes = [`${n} packets made as \`fspl prepare | zstd\` (zstd ${zstdVersion()} CLI, level 3, checksum on): ${(bytes / n).toFixed(0)} bytes each on average`];
      for (const t of ['fspool', 'fspool-cold']) {
        const b = readFileSync(out(t), 'utf8');
        if (listed[t].min < n) notes.push(`WRONG OUTPUT: ${t} listed only ${listed[t].min}..${listed[t].max} of the ${n} jobs (median ${listed[t].median})`);
        else if (a !== b) notes.push(`${t}: queue-ls output differs from fspl's (fspl ${a.length} bytes, fspool ${b.length} bytes)`);
      }
      if (unreadable.size) notes.push(`over the recorded runs the tools said: ${[...unreadable].map(([k, c]) => `${c}× "${k}"`).join('; ')}`);
      const plain = ctx.results['ls-10k']?.samples?.ms;
      const us = (x) => ((x / n) * 1000).toFixed(0);
      if (plain) notes.push(`zstd over plain (ls-10k), per packet: fspool +${us(ms['fspool-cold'].median - plain['fspool-cold'].median)} µs with no cache, +${us(ms.fspool.median - plain.fspool.median)} µs with the cache warm`);
      notes.push(`per packet: fspl ${us(ms.fspl.median)} µs (a zstdcat process each), fspool ${us(ms['fspool-cold'].median)} µs with no cache, ${us(ms.fspool.median)} µs with the cache warm`);
      return {
        rows: [
          row(this.name, 'wall ms, header cache warm', 'ms', ms.fspl, ms.fspool, 'info', { baseName: 'fspl -d zstdcat' }),
          row(this.name, 'wall ms, no cache (first listing)', 'ms', ms.fspl, ms['fspool-cold'], 'info', { baseName: 'fspl -d zstdcat' }),
        ],
        samples: { ms, listed },
        notes,
      };
    },
  },

  {
    name: 'ls-gpg-c',
    title: '`queue-ls` of 20 packets encrypted by `gpg -c` (a passphrase, GnuPG\'s default S2K count): fspl `-d \'gpg -d\'` vs fspool built-in',
    defaultRuns: 3,
    warmup: 1,
    run(ctx) {
      // Headers that only decryption reveals are never cached (spec/state-db.md): every listing
      // derives each packet's key from the passphrase again, so the S2K's cost is the listing's.
      const n = 20;
      const home = mkdtempSync(join(ctx.dir, 'gnupg-'));
      const pass = join(ctx.dir, 'ls-gpg-c.pass');
      writeFileSync(pass, 'correct horse battery staple\n', { mode: 0o600 });
      const env = { ...process.env, GNUPGHOME: home };
      const q = join(ctx.dir, 'ls-gpg-c');
      initQueue(q);
      for (const j of makeJobs(n, (seq) => Buffer.from(`payload of job ${seq}\n`))) {
        const enc = execFileSync('gpg', ['--batch', '-q', '--pinentry-mode', 'loopback', '--passphrase-file', pass, '--compress-algo', 'none', '-c'], { input: j.data, env });
        writeFileSync(join(q, 'jobs', j.name), enc);
      }
      const gpgD = `gpg -q -d --batch --pinentry-mode loopback --passphrase-file ${pass}`;
      const argv = {
        fspl: [ctx.fspl, 'queue-ls', '-q', q, '-d', gpgD],
        fspool: [ctx.fspool, 'queue-ls', '-q', q, '--passphrase-file', pass],
      };
      const out = (t) => join(ctx.dir, `ls-gpg-c.${t}.out`);
      const samples = sideBySide(['fspl', 'fspool'], { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const r = measure(argv[t], { stdout: out(t), stderr: ctx.errFile, env });
        ranOk(r, t, ctx, 'queue-ls');
        return r;
      });
      const a = readFileSync(out('fspl'), 'utf8');
      const b = readFileSync(out('fspool'), 'utf8');
      check(a.split('\n').filter((l) => /^\d+\s/.test(l)).length === n, `fspl -d gpg listed ${a}`);
      const notes = [];
      if (a !== b) notes.push(`WRONG OUTPUT: fspool's queue-ls differs from fspl's (fspl ${a.length} bytes, fspool ${b.length} bytes)`);
      rmSync(q, { recursive: true, force: true });
      rmSync(home, { recursive: true, force: true });
      const ms = pick(samples, 'ms');
      notes.push(`per packet: fspl ${(ms.fspl.median / n).toFixed(0)} ms (a gpg process each), fspool ${(ms.fspool.median / n).toFixed(0)} ms`);
      return { rows: [row(this.name, 'wall ms', 'ms', ms.fspl, ms.fspool, 'info', { baseName: "fspl -d 'gpg -d'" })], samples: { ms }, notes };
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
      // fspool's extra time may be Node's start and 20 ms more: node's own start measured in
      // this run (cold-start), if it ran.
      const nodeStart = ctx.results['cold-start']?.samples?.ms?.node?.median;
      const margin = nodeStart === undefined ? '≤ node start + 20 ms (run cold-start to see it)' : `≤ node start + 20 = ${(nodeStart + 20).toFixed(0)} ms`;
      return {
        rows: [
          row(this.name, 'wall ms', 'ms', ms.fspl, ms.fspool, '≈ 1.0× (zero-copy)'),
          row(this.name, 'wall ms, extra over fspl', 'ms', ms.fspl, ms.fspool, margin, { excess: true }),
          row(this.name, 'throughput MB/s', 'MB/s', mbps.fspl, mbps.fspool, '≈ 1.0×', { higherIsBetter: true }),
          row(this.name, 'spooler peak RSS MB (VmHWM)', 'MB', hwm.fspl, hwm.fspool, 'fspool ≤ 100 MB'),
        ],
        samples: { ms, mbps, hwmMB: hwm, treeMaxRssMB: tree, cpuS: cpu },
        notes,
        absolute: { fspoolPeakRssMBMax: hwm.fspool.max },
      };
    },
  },

  encBenchmark('mixed'),
  encBenchmark('random'),

  {
    name: 'serve-2q',
    title: 'two queues, each one 256 MiB zstd + OpenPGP packet (random payload): serve (both side by side) vs queue-process on one, then the other',
    defaultRuns: 3,
    warmup: 1,
    run(ctx) {
      const size = 256 * MiB;
      const g = ctx.gpg();
      const payload = join(ctx.dir, 'serve-payload.bin');
      const fd = openSync(payload, 'w');
      for (let i = 0; i < size / MiB; i++) writeSync(fd, randomBytes(MiB));
      closeSync(fd);
      // One packet per queue: a file linked into two queues at once would change under one
      // (its ctime, when the other queue deletes its link) and be read again.
      const pkts = ['a', 'b'].map((n) => {
        const pkt = join(ctx.dir, `serve-2q-${n}.fspl`);
        const prep = measure([ctx.fspool, 'prepare', '-s', '-', '-i', payload, '--zstd', `--encrypt-to=${g.pub}`], { stdout: pkt, stderr: ctx.errFile });
        ranOk(prep, 'fspool', ctx, 'prepare --zstd --encrypt-to');
        const pfd = openSync(pkt, 'r+');
        fdatasyncSync(pfd);
        closeSync(pfd);
        return pkt;
      });
      rmSync(payload);
      const recv = 'cat >/dev/null';
      /** Two fresh queues, each holding its packet (a hard link: no copy). */
      const queues = () =>
        pkts.map((pkt, i) => {
          const q = mkdtempSync(join(ctx.dir, `serve-2q-${i}-`));
          initQueue(q);
          linkSync(pkt, join(q, 'jobs', `fspl-${randomUUID()}.fspl`));
          return q;
        });
      const tools = ['one after the other', 'serve'];
      const samples = sideBySide(tools, { runs: ctx.runs(this), warmup: this.warmup }, (t) => {
        const [a, b] = queues();
        let argv;
        if (t === 'serve') {
          const cfg = join(ctx.dir, 'serve-2q.toml');
          const queue = (n, q) => `[queues.${n}]\ndir = "${q}"\ncommand = ["sh", "-c", "${recv}"]\ndecrypt_key = ["${g.key}"]\nrescan = 0.2\n`;
          writeFileSync(cfg, `max_parallel = 2\n${queue('a', a)}${queue('b', b)}`);
          // serve runs until told to stop: timed from its start to both jobs recorded done.
          const script =
            '"$0" serve --config "$1" & pid=$!; ' +
            'until read x < "$2/nextseq" && [ "$x" = 2 ] && read y < "$3/nextseq" && [ "$y" = 2 ]; do kill -0 $pid || exit 1; sleep 0.05; done; ' +
            'kill -TERM $pid; wait $pid; [ $? = 143 ]';
          argv = ['sh', '-c', script, ctx.fspool, cfg, a, b];
        } else {
          const one = (q) => `"$0" queue-process -q "${q}" --decrypt-key "$1" sh -- -c '${recv}'`;
          argv = ['sh', '-c', `${one(a)} && ${one(b)}`, ctx.fspool, g.key];
        }
        const r = measure(argv, { stderr: ctx.errFile, env: g.env });
        ranOk(r, t, ctx, 'two queues');
        for (const q of [a, b]) {
          const next = readFileSync(join(q, 'nextseq'), 'utf8').trim();
          check(next === '2' && readdirSync(join(q, 'jobs')).length === 0, `${t}: ${q} not processed (nextseq ${next})`);
          rmSync(q, { recursive: true, force: true });
        }
        return { ...r, cpuS: r.userS + r.sysS };
      });
      for (const pkt of pkts) rmSync(pkt);
      const ms = pick(samples, 'ms');
      const cpu = pick(samples, 'cpuS');
      const notes = [
        `CPU, user+sys of the whole tree, median: one after the other ${cpu['one after the other'].median.toFixed(2)} s, serve ${cpu.serve.median.toFixed(2)} s; ` +
          `serve's wall time is measured from its start until both queues' nextseq say 2 (polled every 50 ms by the shell), then it is stopped`,
        `the target needs two cores free for the two decoders: it holds only when decoding runs off serve's main thread`,
      ];
      return {
        rows: [row(this.name, 'wall ms: serve, both queues', 'ms', ms['one after the other'], ms.serve, '≤ 0.65×', { baseName: 'one after the other' })],
        samples: { ms, cpuS: cpu },
        notes,
        absolute: { serveOverSequential: ms.serve.median / ms['one after the other'].median },
      };
    },
  },
];

/**
 * One job whose 1 GiB payload is zstd-compressed and OpenPGP-encrypted, delivered four ways.
 * `mixed` (enc-1g): half random, half log-like text, like a backup; `random` (enc-1g-random):
 * all random, so zstd stores it as it is and decryption is the work.
 */
function encBenchmark(kind) {
  const name = kind === 'mixed' ? 'enc-1g' : 'enc-1g-random';
  return {
    name,
    title: `1 GiB ${kind === 'mixed' ? 'mixed' : 'random'} payload, zstd + OpenPGP, into \`sh -c 'cat >/dev/null'\`: built-in vs \`-d 'gpg -q -d | zstd -dc'\``,
    defaultRuns: 3,
    warmup: 1,
    run(ctx) {
      const g = ctx.gpg();
      const notes = [];
      // The payload, then the packet: `fspool prepare --zstd --encrypt-to`, once per bench run.
      const payload = join(ctx.dir, 'enc-payload.bin');
      if (kind === 'mixed') writeMixedPayload(payload, GiB);
      else writeRandomPayload(payload, GiB);
      const pkt = join(ctx.dir, `${name}.fspl`);
      const prep = measure([ctx.fspool, 'prepare', '-s', '-', '-i', payload, '--zstd', `--encrypt-to=${g.pub}`], { stdout: pkt, stderr: ctx.errFile });
      ranOk(prep, 'fspool', ctx, 'prepare --zstd --encrypt-to');
      // For information, one run: the same layers made by the command-line tools.
      const extPrep = measure(
        ['sh', '-c', '"$0" prepare -s - -i "$1" | zstd -q -c | gpg --batch -q --trust-model always --compress-algo none -e -r recv@test', ctx.fspl, payload],
        { stdout: '/dev/null', stderr: ctx.errFile, env: g.env },
      );
      ranOk(extPrep, 'fspl | zstd | gpg', ctx, 'encode');
      rmSync(payload);
      const fd = openSync(pkt, 'r+');
      fdatasyncSync(fd); // keep writeback of the new file out of the timed runs
      closeSync(fd);
      const size = statSync(pkt).size;
      notes.push(
        `payload: 1 GiB ${kind === 'mixed' ? 'of 1 MiB blocks, alternately random (AES-CTR stream) and log-like text' : 'random (an AES-CTR stream)'}; packet ${(size / 1e6).toFixed(0)} MB ` +
          `(${((100 * size) / GiB).toFixed(0)}% of the payload: zstd -3, then OpenPGP to an ${g.algo} key)`,
        `making it, one run each: fspool prepare --zstd --encrypt-to ${(prep.ms / 1000).toFixed(2)} s (${(GiB / 1e6 / (prep.ms / 1000)).toFixed(0)} MB/s), ` +
          `\`fspl prepare | zstd | gpg -e\` ${(extPrep.ms / 1000).toFixed(2)} s (${(GiB / 1e6 / (extPrep.ms / 1000)).toFixed(0)} MB/s)`,
      );

      const dec = 'gpg -q -d | zstd -dc';
      const tools = ['fspl -d', 'built-in', 'verified', 'fspool -d'];
      const opts = {
        'fspl -d': [ctx.fspl, ['-d', dec]],
        'built-in': [ctx.fspool, [`--decrypt-key=${g.key}`]],
        verified: [ctx.fspool, ['--delivery', 'verified', `--decrypt-key=${g.key}`]],
        'fspool -d': [ctx.fspool, ['-d', dec]],
      };
      const counts = {};
      const samples = sideBySide(tools, { runs: ctx.runs(this), warmup: this.warmup }, (t, round) => {
        const q = mkdtempSync(join(ctx.dir, `${name}-`));
        initQueue(q);
        linkSync(pkt, join(q, 'jobs', `fspl-${randomUUID()}.fspl`));
        // Warm-up rounds count the bytes the receiver got; recorded rounds use `cat >/dev/null`.
        const count = join(ctx.dir, `${name}.count`);
        const recv = round < 0 ? ['sh', '--', '-c', 'wc -c >"$0"', count] : ['sh', '--', '-c', 'cat >/dev/null'];
        const [bin, extra] = opts[t];
        const r = measure([bin, 'queue-process', ...extra, '-q', q, ...recv], { stderr: ctx.errFile, env: g.env, poll: true });
        ranOk(r, t, ctx, 'queue-process');
        const next = readFileSync(join(q, 'nextseq'), 'utf8').trim();
        const left = readdirSync(join(q, 'jobs')).length;
        check(next === '2' && left === 0, `${t}: after queue-process nextseq=${next}, ${left} files left in jobs/`);
        if (round < 0) {
          counts[t] = Number(readFileSync(count, 'utf8').trim());
          check(counts[t] === GiB, `${t}: the receiver got ${counts[t]} bytes, not ${GiB}`);
        }
        rmSync(q, { recursive: true, force: true });
        return {
          ...r,
          mbps: GiB / 1e6 / (r.ms / 1000),
          hwmMB: (r.hwmKb * 1024) / 1e6,
          cpuS: r.userS + r.sysS,
          sysS: r.sysS,
        };
      });
      rmSync(pkt);
      const ms = pick(samples, 'ms');
      const mbps = pick(samples, 'mbps');
      const hwm = pick(samples, 'hwmMB');
      const cpu = pick(samples, 'cpuS');
      const sys = pick(samples, 'sysS');
      if (this.warmup > 0) notes.push(`every contender's receiver got all ${GiB} bytes (counted with wc -c in the warm-up round)`);
      notes.push(
        `CPU, user+sys of the whole tree (gpg, zstd, sh, cat included), median: ${tools.map((t) => `${t} ${cpu[t].median.toFixed(2)} s`).join(', ')}; of it system time: ${tools.map((t) => `${t} ${sys[t].median.toFixed(2)} s`).join(', ')}. ` +
          `The shell pipeline runs gpg and zstd on two cores at once; the built-in decoder runs in fspool's decode worker, its AES and SHA-1 on libuv's thread pool beside it`,
        `the 'fspl -d' and 'fspool -d' decoders print gpg "Broken pipe" errors: fspl (and fspool's scan) start the decoder once just to read the header`,
      );
      const base = (m) => m['fspl -d'];
      const r = (metric, unit, b, f, target, o = {}) => row(this.name, metric, unit, b, f, target, { baseName: 'fspl -d', ...o });
      return {
        rows: [
          r('wall ms: built-in (stream)', 'ms', base(ms), ms['built-in'], '≤ 1.0×'),
          r('wall ms: built-in, --delivery verified', 'ms', base(ms), ms.verified, 'info'),
          r('wall ms: fspool -d (same shell decoder)', 'ms', base(ms), ms['fspool -d'], 'info'),
          r('MB/s: built-in (stream)', 'MB/s', base(mbps), mbps['built-in'], '≥ 1.0×', { higherIsBetter: true }),
          r('MB/s: built-in (stream) vs fspool -d', 'MB/s', mbps['fspool -d'], mbps['built-in'], 'info', { higherIsBetter: true, baseName: 'fspool -d' }),
          r('MB/s: built-in, --delivery verified', 'MB/s', base(mbps), mbps.verified, 'info', { higherIsBetter: true }),
          r('MB/s: fspool -d (same shell decoder)', 'MB/s', base(mbps), mbps['fspool -d'], 'info', { higherIsBetter: true }),
          r('spooler peak RSS MB: built-in (stream)', 'MB', base(hwm), hwm['built-in'], 'fspool ≤ 100 MB'),
          r('spooler peak RSS MB: built-in, verified', 'MB', base(hwm), hwm.verified, 'fspool ≤ 100 MB'),
          r('spooler peak RSS MB: fspool -d', 'MB', base(hwm), hwm['fspool -d'], 'fspool ≤ 100 MB'),
        ],
        samples: { ms, mbps, hwmMB: hwm, cpuS: cpu, sysS: sys },
        notes,
        absolute: { builtinOverFsplDThroughput: mbps['built-in'].median / mbps['fspl -d'].median, fspoolPeakRssMBMax: Math.max(hwm['built-in'].max, hwm.verified.max, hwm['fspool -d'].max) },
      };
    },
  };
}

/** Shared state: the temp dir, tool paths, the random block and the cached 1 GiB packet. */
export function makeContext({ dir, fspl, fspool, runsOverride, results, cleanups = [] }) {
  let block;
  let keys;
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
    /**
     * A throwaway OpenPGP key pair, once per bench run: generated in one temp GNUPGHOME,
     * exported (public: recv.pub, secret: recv.key), and the secret key imported into a second
     * GNUPGHOME that the shell decoders use (`env`). Its gpg-agent is stopped at clean-up.
     */
    gpg() {
      if (keys) return keys;
      const gen = join(dir, 'gnupg-gen');
      const home = join(dir, 'gnupg');
      mkdirSync(gen, { mode: 0o700 });
      mkdirSync(home, { mode: 0o700 });
      const envGen = { ...process.env, GNUPGHOME: gen };
      const env = { ...process.env, GNUPGHOME: home };
      const gpg = (args, e) => execFileSync('gpg', ['--batch', ...args], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
      cleanups.push(() => stopAgent(gen), () => stopAgent(home));
      gpg(['--passphrase', '', '--quick-gen-key', 'Recv <recv@test>', 'future-default', 'default', 'never'], envGen);
      const pub = join(dir, 'recv.pub');
      const key = join(dir, 'recv.key');
      writeFileSync(pub, gpg(['--export', 'recv@test'], envGen));
      writeFileSync(key, gpg(['--export-secret-keys', '--pinentry-mode', 'loopback', '--passphrase', '', 'recv@test'], envGen));
      stopAgent(gen);
      gpg(['--import', key], env);
      const algo = /^pub:[^:]*:[^:]*:(\d+):/m.exec(gpg(['--with-colons', '--list-keys', 'recv@test'], env).toString())?.[1];
      keys = { pub, key, env, algo: { 22: 'ed25519/cv25519', 1: 'RSA' }[algo] ?? `algorithm ${algo}` };
      return keys;
    },
  };
}

function stopAgent(home) {
  try {
    execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: home }, stdio: 'ignore' });
  } catch {
    /* no agent, or no gpgconf */
  }
}

let zstdV;
function zstdVersion() {
  zstdV ??= /v(\d+\.\d+\.\d+)/.exec(execFileSync('zstd', ['--version'], { encoding: 'utf8' }))?.[1] ?? '?';
  return zstdV;
}
