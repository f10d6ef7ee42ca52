// Concurrency stress: for SECONDS, `writers` queue-write loops writing pre-prepared raw
// packets (shuffled within blocks of 16, so they arrive out of order), `processors` loops
// running queue-process -n 1..8 on the same queue, each alternating fspool and fspl (fspl reads neither
// zstd nor OpenPGP, hence raw packets), and a reader loop of queue-ls / queue-status in windows
// (3 s on, 2 s off). Then the processors drain the queue. Checks:
//   - one processor at a time: receivers log start/end under flock; no start between a start
//     and its end;
//   - nothing lost or duplicated: each seq started and ended exactly once, in order, with its
//     own payload;
//   - readers never block the processor: reader calls return while a job runs (some entirely
//     inside a long job), their latency, and the processor's per-job overhead (end of one job
//     to start of the next, same processor run, next packet already there) with the readers on
//     against off.
// Used by test/stress.test.ts (short) and `node bench/soak.mjs --stress 60`.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { packet } from './packet.mjs';
import { FSPL, FSPOOL, lockFree, marked, mix, prng, randomBytes, run, sleep, stats, tempDir } from './harness.mjs';

const RECEIVER = String.raw`
exec 9>>"$STRESS_DIR/ev.lock"
flock 9; echo "S $FSPL_SEQ $(date +%s%N) $STRESS_TOOL $STRESS_RUN" >> "$STRESS_DIR/events"; flock -u 9
h=$(sha256sum | cut -c1-16)
if [ $((FSPL_SEQ % STRESS_LONG_EVERY)) = 0 ]; then sleep "$STRESS_LONG"; else sleep "$STRESS_SLEEP"; fi
flock 9; echo "E $FSPL_SEQ $(date +%s%N) $h" >> "$STRESS_DIR/events"
`;

const BUSY = /locked by another process|Resource temporarily unavailable/;

export async function runStress({ seconds = 60, writers = 4, processors = 2, seed, keep = false, log = () => {}, jobSleep = 0.02, longEvery = 40, longSleep = 1.5, readerOn = 3, readerOff = 2 } = {}) {
  seed = seed === undefined ? (Math.random() * 2 ** 32) >>> 0 : seed >>> 0;
  const t0 = performance.now();
  const now = () => performance.now() - t0; // ms since start, the driver's clock
  const wall0 = Date.now() - t0; // to convert the receivers' wall clock to the driver's
  const dir = tempDir('fspool-stress-');
  const q = join(dir, 'q');
  const problems = [];
  const problem = (m) => {
    if (problems.length < 50) problems.push(m);
    log(`stress: PROBLEM: ${m}`);
  };
  log(`stress: seed ${seed}; ${seconds} s; ${writers} writers, ${processors} processors (fspool and fspl in turn), 1 reader loop; in ${dir}`);
  writeFileSync(join(dir, 'events'), '');
  const init = await run(FSPOOL, ['queue-init', '-q', q]);
  if (init.code !== 0) throw new Error(init.stderr);

  // Pre-prepared packets, far more than can be written in the time.
  const rand = prng(mix(seed, 'stress'));
  const max = Math.ceil(seconds * 60) + 256;
  const payloads = [];
  const order = [];
  for (let b = 0; b < max; b += 16) {
    const block = Array.from({ length: 16 }, (_, i) => b + i);
    for (let i = block.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [block[i], block[j]] = [block[j], block[i]];
    }
    order.push(...block);
  }
  const bytesOf = (seq) => {
    payloads[seq] ??= randomBytes(prng(mix(seed, 'payload', seq)), Math.floor(prng(mix(seed, 'size', seq))() * 8192));
    return packet(seq, payloads[seq]);
  };
  const hash16 = (b) => createHash('sha256').update(b).digest('hex').slice(0, 16);

  // --- Writers: indices into `order`; at the deadline, the blocks begun are finished.
  const writtenAt = new Map(); // seq -> driver ms when queue-write returned
  let nextIdx = 0;
  let stopAt = order.length;
  const writeTimes = [];
  const writer = async () => {
    for (;;) {
      if (nextIdx >= stopAt) return;
      if (nextIdx % 16 === 0 && now() > seconds * 1000) {
        stopAt = Math.min(stopAt, nextIdx);
        return;
      }
      const seq = order[nextIdx++] + 1;
      const a = now();
      const r = await run(FSPOOL, ['queue-write', '-q', q], { input: bytesOf(seq) });
      writeTimes.push(now() - a);
      if (r.code !== 0) problem(`queue-write of seq ${seq} failed: ${r.stderr.trim()}`);
      writtenAt.set(seq, now());
    }
  };
  let writersDone = false;
  const writing = Promise.all(Array.from({ length: writers }, writer)).then(() => {
    writersDone = true;
    log(`stress: writers done: ${stopAt} packets at ${Math.round(now() / 1000)} s`);
  });

  // --- Processors.
  const env = (tool, runNo) => ({
    ...process.env,
    STRESS_DIR: dir,
    STRESS_MARK: dir,
    STRESS_TOOL: tool,
    STRESS_RUN: String(runNo),
    STRESS_SLEEP: String(jobSleep),
    STRESS_LONG: String(longSleep),
    STRESS_LONG_EVERY: String(longEvery),
  });
  const nextseq = () => Number(readFileSync(join(q, 'nextseq'), 'utf8').trim());
  const evSize = () => readFileSync(join(dir, 'events')).length;
  const runs = [];
  let runNo = 0;
  let hangs = 0;
  const processor = async (j) => {
    for (let i = 0; ; i++) {
      if (writersDone && nextseq() > stopAt) return;
      const tool = (i + j) % 2 === 0 ? 'fspool' : 'fspl';
      const n = ++runNo;
      let last = evSize();
      let lastChange = performance.now();
      const idle = () => {
        const s = evSize();
        if (s !== last) {
          last = s;
          lastChange = performance.now();
        }
        return performance.now() - lastChange;
      };
      const start = now();
      // -n: a few jobs per run, so that the processors hand the lock to each other often.
      const maxJobs = String(1 + Math.floor(rand() * 8));
      const r = await run(tool === 'fspool' ? FSPOOL : FSPL, ['queue-process', '-q', q, '-n', maxJobs, 'sh', '--', '-c', RECEIVER], {
        env: env(tool, n),
        idle,
        idleLimitMs: (longSleep + 30) * 1000,
      });
      const busy = r.code === 1 && BUSY.test(r.stderr);
      runs.push({ n, tool, start, end: now(), code: r.code, busy, hung: r.hung });
      if (r.hung) {
        hangs++;
        problem(`${tool} run ${n} went quiet for ${longSleep + 30} s and was killed: ${r.stderr.slice(-400)}`);
      } else if (r.code !== 0 && !busy) problem(`${tool} run ${n} exited ${r.code ?? r.signal}: ${r.stderr.slice(-400)}`);
      await sleep(busy ? 10 + rand() * 40 : 20 + rand() * 30);
    }
  };
  const processing = Promise.all(Array.from({ length: processors }, (_, j) => processor(j)));

  // --- Readers, in windows, until the writers are done and the queue is drained.
  const reads = [];
  let readersStop = false;
  const windows = [];
  const reader = async () => {
    let k = 0;
    while (!readersStop) {
      const on = now();
      const until = on + readerOn * 1000;
      while (!readersStop && now() < until) {
        const cmd = k++ % 2 === 0 ? ['queue-ls', '-q', q] : ['queue-status', '-q', q];
        const a = now();
        const r = await run(FSPOOL, cmd, { env: { ...process.env, STRESS_MARK: dir }, limitMs: 30_000 });
        const b = now();
        reads.push({ cmd: cmd[0], a, b, ms: b - a, code: r.code });
        const okCode = cmd[0] === 'queue-ls' ? r.code === 0 : [0, 3, 4].includes(r.code);
        if (!okCode) problem(`${cmd[0]} exited ${r.code ?? r.signal}: ${r.stderr.slice(-300)}`);
      }
      windows.push([on, now()]);
      await sleep(readerOff * 1000);
    }
  };
  const reading = reader();

  await writing;
  await processing;
  readersStop = true;
  await reading;
  const durationS = now() / 1000;

  // --- Verdicts.
  const K = stopAt;
  const events = readFileSync(join(dir, 'events'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const [kind, seq, ns, a, b] = l.split(' ');
    return { kind, seq: Number(seq), t: Number(BigInt(ns) / 1000000n) - wall0, tool: a, run: Number(b), hash: a };
  });
  let overlaps = 0;
  let open = null;
  const jobs = [];
  for (const e of events) {
    if (e.kind === 'S') {
      if (open) {
        overlaps++;
        problem(`seq ${e.seq} (${e.tool}) started while seq ${open.seq} (${open.tool}) was running`);
      }
      open = e;
    } else {
      if (!open || open.seq !== e.seq) problem(`seq ${e.seq} ended, but ${open ? `seq ${open.seq}` : 'nothing'} was running`);
      else jobs.push({ seq: e.seq, tool: open.tool, run: open.run, start: open.t, end: e.t, hash: e.hash });
      open = null;
    }
  }
  const starts = events.filter((e) => e.kind === 'S').map((e) => e.seq);
  let lost = 0;
  let duplicated = 0;
  let outOfOrder = 0;
  const count = new Map();
  for (const s of starts) count.set(s, (count.get(s) ?? 0) + 1);
  for (let s = 1; s <= K; s++) {
    const c = count.get(s) ?? 0;
    if (c === 0) lost++;
    if (c > 1) duplicated++;
  }
  for (let i = 1; i < starts.length; i++) if (starts[i] <= starts[i - 1]) outOfOrder++;
  if (lost) problem(`${lost} seq(s) never ran`);
  if (duplicated) problem(`${duplicated} seq(s) ran more than once`);
  if (outOfOrder) problem(`${outOfOrder} start(s) out of order`);
  for (const j of jobs) if (j.hash !== hash16(payloads[j.seq] ?? Buffer.alloc(0))) problem(`seq ${j.seq} got the wrong payload`);
  if (nextseq() !== K + 1) problem(`nextseq is ${nextseq()}, not ${K + 1}`);
  const left = readdirSync(join(q, 'jobs')).filter((n) => /^fspl-.*\.fspl$/.test(n) || n.startsWith('tmp-'));
  if (left.length) problem(`${left.length} file(s) left in jobs/`);
  const lockIsFree = lockFree(join(q, 'nextseq.lock'));
  if (!lockIsFree) problem('the queue lock is held at the end');
  await sleep(200);
  const leftovers = marked('STRESS_MARK', dir);
  for (const p of leftovers) {
    problem(`process ${p.pid} (${p.comm}) left behind`);
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }

  // Readers against jobs.
  const during = (r) => jobs.some((j) => r.a < j.end && r.b > j.start);
  const inside = (r) => jobs.some((j) => r.a >= j.start && r.b <= j.end);
  const readsDuring = reads.filter(during);
  const readsInside = reads.filter(inside);
  // Per-job overhead: end of a job to the start of the next in the same processor run, when
  // the next packet had been written before the job ended (no waiting for an arrival).
  const readerActive = (t) => reads.some((r) => r.a <= t && t <= r.b);
  const gapsOn = [];
  const gapsOff = [];
  for (let i = 1; i < jobs.length; i++) {
    const p = jobs[i - 1];
    const c = jobs[i];
    if (c.run !== p.run || c.seq !== p.seq + 1) continue;
    const w = writtenAt.get(c.seq);
    if (w === undefined || w > p.end - 50) continue;
    (readerActive(p.end) ? gapsOn : gapsOff).push(c.start - p.end);
  }
  const byTool = {};
  for (const j of jobs) byTool[j.tool] = (byTool[j.tool] ?? 0) + 1;
  const runsBy = {};
  for (const r of runs) {
    const k = `${r.tool} ${r.busy ? 'lock busy' : r.hung ? 'hung' : `exit ${r.code}`}`;
    runsBy[k] = (runsBy[k] ?? 0) + 1;
  }
  const fig = {
    seed,
    seconds,
    durationS: Math.round(durationS * 10) / 10,
    writers,
    processors,
    readers: 1,
    packets: K,
    jobs: jobs.length,
    jobsByTool: byTool,
    processorRuns: runs.length,
    processorRunsBy: runsBy,
    hangs,
    overlaps,
    lost,
    duplicated,
    outOfOrder,
    writeMs: stats(writeTimes.map(Math.round)),
    readerCalls: reads.length,
    readerMs: stats(reads.map((r) => Math.round(r.ms))),
    readerMsDuringJobs: stats(readsDuring.map((r) => Math.round(r.ms))),
    readerCallsInsideOneJob: readsInside.length,
    longJobs: jobs.filter((j) => j.seq % longEvery === 0).length,
    jobGapMsReadersOn: stats(gapsOn.map((g) => Math.round(g))),
    jobGapMsReadersOff: stats(gapsOff.map((g) => Math.round(g))),
    leftoverProcesses: leftovers.length,
    lockFreeAtEnd: lockIsFree,
    problems,
  };
  fig.ok = problems.length === 0;
  fig.dir = keep || !fig.ok ? dir : undefined;
  if (!keep && fig.ok) rmSync(dir, { recursive: true, force: true });
  return fig;
}

export function printStress(f) {
  const s = (x) => (x.n ? `median ${x.median} ms, p95 ${x.p95} ms, max ${x.max} ms (n=${x.n})` : 'none');
  console.log(
    [
      `stress: seed ${f.seed}`,
      `load:             ${f.writers} writers, ${f.processors} processors (fspool and fspl in turn), ${f.readers} reader loop (queue-ls / queue-status), ${f.seconds} s of writing, ${f.durationS} s in all`,
      `packets:          ${f.packets} written (queue-write ${s(f.writeMs)}), ${f.jobs} jobs run (${Object.entries(f.jobsByTool).map(([k, v]) => `${k} ${v}`).join(', ')})`,
      `processor runs:   ${f.processorRuns} (${Object.entries(f.processorRunsBy).map(([k, v]) => `${k}: ${v}`).join(', ')})`,
      `overlaps:         ${f.overlaps}`,
      `lost:             ${f.lost}; duplicated: ${f.duplicated}; out of order: ${f.outOfOrder}; hangs: ${f.hangs}`,
      `reader latency:   ${s(f.readerMs)}; while a job ran: ${s(f.readerMsDuringJobs)}; ${f.readerCallsInsideOneJob} call(s) began and ended inside a single job (${f.longJobs} long jobs)`,
      `per-job overhead: readers on ${s(f.jobGapMsReadersOn)}; off ${s(f.jobGapMsReadersOff)}`,
      `processes left:   ${f.leftoverProcesses}; lock free at the end: ${f.lockFreeAtEnd}`,
      f.ok ? 'stress: OK' : `stress: FAILED (${f.problems.length} problem(s); files kept in ${f.dir})\n${f.problems.join('\n')}`,
    ].join('\n'),
  );
}
