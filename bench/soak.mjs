#!/usr/bin/env node
// Soak (misbehaving receivers and stress): N packets, a mix of raw, --zstd and
// OpenPGP (--encrypt-to a throwaway gpg key; processed with --decrypt-key), sent by
// `prepare | queue-write` (several senders at once, some packets held back so that they arrive
// late) while a processor runs in passes, alternating --on-error retry and --retries/--backoff,
// until every packet has run. The receiver does what a seeded plan says for each (seq, attempt):
// succeed, fail (exit 3), exit before reading (exit 4), read slowly, ignore stdin (exit 0),
// hang past --timeout (with a background child; some ignoring SIGTERM), or succeed leaving a
// background child. Every seq's plan ends in success, so every packet must eventually run.
//
// Afterwards it checks and prints: hangs (a processor that went quiet for longer than any job
// may take was killed by the watchdog), packets lost, order violations, payloads altered, every
// attempt journaled with the cause the receiver was told to produce, and processes left behind
// (timed-out receivers' groups must be gone; a receiver that succeeded leaving a background child
// keeps it, as spec/processing.md says; those are counted, then killed).
//
//   node bench/soak.mjs [--count N] [--mix raw=5,zstd=3,pgp=2] [--faults fail=4,early=2,...]
//                       [--seed S] [--senders N] [--max-size BYTES] [--timeout S] [--grace S]
//                       [--modes retry,retries] [--short] [--json] [--keep]
//   node bench/soak.mjs --stress SECONDS   (the concurrency stress of bench/lib/stress.mjs)
//   node bench/soak.mjs --lossy [--count N] [--seeds N] [--seed S] [--per-round N]
//                          (the lossy-transport harness of bench/lib/lossy.mjs: outbox and receipts)
//
// Exit status 0 when every check passed, 1 otherwise.
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { FSPOOL, lockFree, makeKey, marked, mix, parseWeights, pick, prng, randomBytes, run, sleep, stats, tempDir } from './lib/harness.mjs';

const FAULTS = ['fail', 'early', 'slow', 'ignore', 'hang', 'stubborn', 'child'];
const FAILING = new Set(['fail', 'early', 'hang', 'stubborn']);
const ENCODINGS = ['raw', 'zstd', 'pgp'];

const { values: opt } = parseArgs({
  options: {
    count: { type: 'string' },
    mix: { type: 'string', default: 'raw=5,zstd=3,pgp=2' },
    faults: { type: 'string', default: 'fail=4,early=2,slow=2,ignore=2,hang=0.3,stubborn=0.2,child=1' },
    seed: { type: 'string' },
    senders: { type: 'string', default: '2' },
    'max-size': { type: 'string', default: String(256 * 1024) },
    'hold-back': { type: 'string', default: '0.05' },
    timeout: { type: 'string', default: '2' },
    grace: { type: 'string', default: '1' },
    modes: { type: 'string', default: 'retry,retries' },
    short: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    stress: { type: 'string' },
    lossy: { type: 'boolean', default: false },
    seeds: { type: 'string', default: '5' },
    'per-round': { type: 'string', default: '100' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (opt.help) {
  const head = readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(1, 26);
  console.log(head.map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}

if (opt.stress !== undefined) {
  const { runStress, printStress } = await import('./lib/stress.mjs');
  const seconds = Number(opt.stress) || 60;
  const s = await runStress({ seconds, seed: opt.seed === undefined ? undefined : Number(opt.seed), keep: opt.keep, log: (m) => console.error(m) });
  if (opt.json) console.log(JSON.stringify(s));
  else printStress(s);
  process.exit(s.ok ? 0 : 1);
}

if (opt.lossy) {
  const { runLossy } = await import('./lib/lossy.mjs');
  const n = Number(opt.count ?? 1000);
  const first = opt.seed === undefined ? (Math.random() * 2 ** 32) >>> 0 : Number(opt.seed) >>> 0;
  const all = [];
  let failed = false;
  for (let i = 0; i < Number(opt.seeds); i++) {
    const t0 = Date.now();
    const r = runLossy({ count: n, seed: first + i, perRound: Number(opt['per-round']), maxRounds: 1000, log: (m) => console.error(`lossy seed ${first + i}: ${m}`) });
    const line = { ...r.figures, seconds: Math.round((Date.now() - t0) / 1000), ok: r.ok, problems: r.problems };
    all.push(line);
    console.error(`lossy: ${JSON.stringify(line)}`);
    if (!r.ok) {
      failed = true;
      console.error(`lossy: seed ${first + i} FAILED; kept in ${r.dir}`);
    } else if (!opt.keep) rmSync(r.dir, { recursive: true, force: true });
  }
  const sum = (k) => all.reduce((s, f) => s + f[k], 0);
  const summary = {
    seeds: all.length,
    count: n,
    rounds: { min: Math.min(...all.map((f) => f.rounds)), max: Math.max(...all.map((f) => f.rounds)), mean: sum('rounds') / all.length },
    packetsLost: sum('packetsLost'),
    packetsResent: sum('packetsResent'),
    resentPerLost: sum('packetsResent') / Math.max(1, sum('packetsLost')),
    receiptsLost: sum('receiptsLost'),
    receiptsSent: sum('receiptsSent'),
    failed: all.filter((f) => !f.ok).length,
  };
  console.log(opt.json ? JSON.stringify({ summary, runs: all }) : `lossy summary: ${JSON.stringify(summary)}`);
  process.exit(failed ? 1 : 0);
}

const seed = opt.seed === undefined ? (Math.random() * 2 ** 32) >>> 0 : Number(opt.seed) >>> 0;
const count = Number(opt.count ?? (opt.short ? 150 : 10_000));
const mixW = parseWeights(opt.mix, ENCODINGS);
const faultW = parseWeights(opt.faults, FAULTS);
const senders = Math.max(1, Number(opt.senders));
const maxSize = Number(opt['max-size']);
const holdBack = Number(opt['hold-back']);
const timeout = Number(opt.timeout);
const grace = Number(opt.grace);
const modes = opt.modes.split(',').filter(Boolean);
for (const m of modes) if (!['retry', 'retries'].includes(m)) throw new Error(`--modes: retry or retries, not ${m}`);
const say = (m) => console.error(`soak: ${m}`);

// ---------------------------------------------------------------------------------------------
// The plan: what each packet is, and what the receiver does at each attempt of each seq.

/** Packet i (0-based): encoding, payload size; its bytes come from its own seeded stream. */
function packetOf(i) {
  const r = prng(mix(seed, 'packet', i));
  const encoding = pick(mixW, r());
  const k = r();
  const size = k < 0.08 ? 0 : k < 0.45 ? Math.floor(r() * 4096) : Math.floor(r() * maxSize);
  return { id: i, encoding, size };
}
const payloadOf = (p) => randomBytes(prng(mix(seed, 'payload', p.id)), p.size);
const hash16 = (b) => createHash('sha256').update(b).digest('hex').slice(0, 16);

/** Behaviours for attempts 1, 2, ... of seq: failures drawn until a success; at most 4 failures. */
function planOf(seq) {
  const r = prng(mix(seed, 'plan', seq));
  const okW = { ok: 100 - FAULTS.reduce((s, f) => s + (faultW[f] ?? 0), 0) };
  if (okW.ok < 0) throw new Error('--faults add up to more than 100 (%)');
  const w = { ...okW, ...faultW };
  const out = [];
  for (;;) {
    const b = out.length >= 4 ? 'ok' : pick(w, r());
    out.push(b);
    if (!FAILING.has(b)) return out;
  }
}

// ---------------------------------------------------------------------------------------------

// The receiver. Its attempt counter and logs are kept under flock; it names its behaviour in
// SOAK_WHAT, which background children inherit (how leftovers are told apart).
const RECEIVER = String.raw`#!/bin/sh
S="$SOAK_DIR"
exec 8>>"$S/att.lock"; flock 8
a=$(( $(cat "$S/att/$FSPL_SEQ" 2>/dev/null || echo 0) + 1 ))
echo "$a" > "$S/att/$FSPL_SEQ"
b=$(sed -n "$a"p "$S/plan/$FSPL_SEQ" 2>/dev/null); [ -n "$b" ] || b=ok
echo "$FSPL_SEQ $a $b $FSPL_SET_SOAK_ID" >> "$S/attempts.log"
flock -u 8; exec 8>&-
export SOAK_WHAT="$FSPL_SEQ:$a:$b"
applied() { exec 8>>"$S/att.lock"; flock 8; echo "$FSPL_SEQ $a $b $FSPL_SET_SOAK_ID $1" >> "$S/applied.log"; exit 0; }
case "$b" in
  ok) applied "$(sha256sum | cut -c1-16)";;
  slow)
    t="$S/slow.$$"; : > "$t"
    while :; do n=$(dd bs=65536 count=1 status=none | tee -a "$t" | wc -c); [ "$n" -gt 0 ] || break; sleep 0.05; done
    h=$(sha256sum < "$t" | cut -c1-16); rm -f "$t"; applied "$h";;
  ignore) sleep 0.02; applied -;;
  child) sleep 60 </dev/null >/dev/null 2>&1 & applied "$(sha256sum | cut -c1-16)";;
  fail) cat >/dev/null; echo "soak: told to fail" >&2; exit 3;;
  early) echo "soak: exiting before reading" >&2; exit 4;;
  hang) sleep 600 </dev/null >/dev/null 2>&1 & sleep 600;;
  stubborn) trap '' TERM; sleep 600 </dev/null >/dev/null 2>&1 & sleep 600;;
  *) echo "soak: unknown behaviour $b" >&2; exit 99;;
esac
`;

async function main() {
  const t0 = performance.now();
  const dir = tempDir('fspool-soak-');
  const q = join(dir, 'q');
  say(`seed ${seed}; ${count} packets; mix ${opt.mix}; faults (% of attempts) ${opt.faults}; --timeout ${timeout} --grace ${grace}; modes ${modes.join(',')}; in ${dir}`);
  mkdirSync(join(dir, 'att'));
  mkdirSync(join(dir, 'plan'));
  mkdirSync(join(dir, 'held'));
  writeFileSync(join(dir, 'receiver.sh'), RECEIVER, { mode: 0o755 });
  writeFileSync(join(dir, 'attempts.log'), '');
  writeFileSync(join(dir, 'applied.log'), '');
  const key = makeKey(dir);
  const packets = Array.from({ length: count }, (_, i) => packetOf(i));
  const plans = new Map();
  for (let seq = 1; seq <= count; seq++) plans.set(seq, planOf(seq));
  if (opt.short) {
    // Make sure every behaviour shows up twice, however few the packets: on seqs of their own,
    // since a behaviour that succeeds replaces the plan's last step, and a second one put on the
    // same seq would replace the first (a short soak once planned 'slow' only once).
    const r = prng(mix(seed, 'cover'));
    const used = new Set();
    for (const f of FAULTS) {
      for (let k = 0; k < 2; k++) {
        let seq;
        do seq = 1 + Math.floor(r() * count);
        while (used.has(seq) && used.size < count);
        used.add(seq);
        const p = plans.get(seq);
        if (FAILING.has(f)) p.unshift(f);
        else p[p.length - 1] = f;
      }
    }
  }
  for (const [seq, p] of plans) writeFileSync(join(dir, 'plan', String(seq)), `${p.join('\n')}\n`);
  let r0 = await run(FSPOOL, ['queue-init', '-q', q]);
  if (r0.code !== 0) throw new Error(`queue-init: ${r0.stderr}`);

  const fig = {
    seed,
    packets: count,
    encodings: Object.fromEntries(ENCODINGS.map((e) => [e, packets.filter((p) => p.encoding === e).length])),
    payloadBytes: packets.reduce((s, p) => s + p.size, 0),
    planned: {},
    attempts: 0,
    outcomes: {},
    processorRuns: 0,
    processorExit: {},
    modeRuns: {},
    hangs: 0,
    lost: 0,
    duplicates: 0,
    outOfOrder: 0,
    payloadMismatch: 0,
    journalMismatch: 0,
    journalMissing: 0,
    journalExtra: 0,
    spuriousDecodeFailures: 0,
    leftoverProcesses: 0,
    keptChildren: 0,
    senderFailures: 0,
    heldBack: 0,
    lockFreeAtEnd: false,
    tmpLeftovers: 0,
    invocationMs: null,
    durationS: 0,
    problems: [],
  };
  const problem = (m) => {
    if (fig.problems.length < 50) fig.problems.push(m);
    say(`PROBLEM: ${m}`);
  };

  // --- Senders: prepare | queue-write, `senders` at a time; some packets held back and
  // written after a few more, so that they arrive behind later seqs (a gap to wait at).
  const seqfile = join(dir, 'sender.seq');
  const encArgs = { raw: [], zstd: ['--zstd'], pgp: ['--zstd', '--encrypt-to', key.pub] };
  const sendEnv = (p) => ({ ...process.env, FSPL_SET_SOAK_ID: String(p.id) });
  let nextPacket = 0;
  let sent = 0;
  const held = [];
  const heldRand = prng(mix(seed, 'hold'));
  const writeHeld = async (h) => {
    const r = await run('sh', ['-c', `"$FSPOOL" queue-write -q "$Q" < "$F" && rm -f "$F"`], { env: { ...process.env, FSPOOL, Q: q, F: h.file } });
    if (r.code !== 0) {
      fig.senderFailures++;
      problem(`queue-write of held packet ${h.id} failed: ${r.stderr.trim()}`);
    }
    sent++;
  };
  const sender = async () => {
    while (nextPacket < count) {
      const p = packets[nextPacket++];
      const enc = encArgs[p.encoding];
      const hold = heldRand() < holdBack;
      let r;
      if (hold) {
        const file = join(dir, 'held', `p${p.id}.fspl`);
        r = await run(FSPOOL, ['prepare', '-s', seqfile, '--wait-lock', '300', '-i', '-', ...enc], { env: sendEnv(p), input: payloadOf(p), keepStdout: true });
        if (r.code === 0) {
          writeFileSync(file, r.stdout);
          held.push({ id: p.id, file, after: sent + 2 + Math.floor(heldRand() * 10) });
          fig.heldBack++;
        }
      } else {
        r = await run('bash', ['-o', 'pipefail', '-c', `"$FSPOOL" prepare -s "$SEQ" --wait-lock 300 -i - "$@" | "$FSPOOL" queue-write -q "$Q"`, 'send', ...enc], {
          env: { ...sendEnv(p), FSPOOL, SEQ: seqfile, Q: q },
          input: payloadOf(p),
        });
        if (r.code === 0) sent++;
      }
      if (r.code !== 0) {
        fig.senderFailures++;
        problem(`sending packet ${p.id} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`);
      }
      // Taken out of `held` before any await: the other senders look at it meanwhile.
      const due = held.filter((h) => h.after <= sent);
      for (const h of due) held.splice(held.indexOf(h), 1);
      for (const h of due) await writeHeld(h);
    }
  };
  let sendersDone = false;
  const sending = Promise.all(Array.from({ length: senders }, sender)).then(async () => {
    while (held.length > 0) await writeHeld(held.shift());
    sendersDone = true;
  });

  // --- The processor, in passes, with a watchdog on progress and a look for leftovers after each.
  const env = { ...process.env, SOAK_DIR: dir, SOAK_MARK: dir };
  const procArgs = (mode) => [
    'queue-process', '-q', q, '--timeout', String(timeout), '--grace', String(grace), '--decrypt-key', key.sec,
    ...(mode === 'retries' ? ['--retries', '2', '--backoff', '0.05'] : []),
    'sh', '--', join(dir, 'receiver.sh'),
  ];
  const logSize = () => readFileSync(join(dir, 'attempts.log')).length + readFileSync(join(dir, 'applied.log')).length;
  // Nothing may stay quiet longer than the longest job (timeout + grace) plus start-up and
  // decoding under load; quieter than that, the processor is hung.
  const idleLimitMs = (timeout + grace) * 1000 + 30_000;
  const invocationMs = [];
  const modeRand = prng(mix(seed, 'modes'));
  let applied = 0;
  let stuck = 0;
  let noProgress = 0;
  const procLog = join(dir, 'processor.log');
  while (applied < count) {
    const mode = modes[Math.floor(modeRand() * modes.length)];
    let last = logSize();
    let lastChange = performance.now();
    const idle = () => {
      const s = logSize();
      if (s !== last) {
        last = s;
        lastChange = performance.now();
      }
      return performance.now() - lastChange;
    };
    const before = applied;
    const r = await run(FSPOOL, procArgs(mode), { env, idle, idleLimitMs });
    appendFileSync(procLog, `--- run ${fig.processorRuns + 1} (${mode}): exit ${r.code ?? r.signal}, ${Math.round(r.ms)} ms\n${r.stderr}`);
    fig.processorRuns++;
    fig.modeRuns[mode] = (fig.modeRuns[mode] ?? 0) + 1;
    invocationMs.push(r.ms);
    const how = r.hung ? 'hung' : String(r.code ?? r.signal);
    fig.processorExit[how] = (fig.processorExit[how] ?? 0) + 1;
    if (r.hung) {
      fig.hangs++;
      problem(`processor run ${fig.processorRuns} (${mode}) made no progress for ${idleLimitMs / 1000}s and was killed; stderr tail: ${r.stderr.slice(-500)}`);
    } else if (r.code !== 0 && r.code !== 1) {
      problem(`processor run ${fig.processorRuns} exited ${r.code ?? r.signal}: ${r.stderr.slice(-500)}`);
    } else if (r.code === 1 && !/failed and --on-error is retry/.test(r.stderr)) {
      problem(`processor run ${fig.processorRuns} exited 1 without a job failure: ${r.stderr.slice(-500)}`);
    }
    await checkLeftovers(dir, fig, problem);
    applied = readFileSync(join(dir, 'applied.log'), 'utf8').split('\n').filter(Boolean).length;
    // A processor that keeps stopping without getting anywhere (a fatal error: the command
    // cannot start, a broken installation) would loop here for ever.
    noProgress = applied === before && r.code !== 0 ? noProgress + 1 : 0;
    if (noProgress >= 30) {
      problem(`${noProgress} processor runs in a row failed and applied nothing; giving up at nextseq ${readFileSync(join(q, 'nextseq'), 'utf8').trim()}`);
      break;
    }
    if (applied === before && r.code === 0) {
      // Nothing due: senders still at work, or a held-back packet not yet written.
      if (sendersDone && ++stuck >= 5) {
        problem(`the queue stopped at nextseq ${readFileSync(join(q, 'nextseq'), 'utf8').trim()} with every packet sent: a packet was lost`);
        break;
      }
      await sleep(sendersDone ? 300 : 150);
    } else stuck = 0;
    if (fig.processorRuns % 50 === 0) say(`${fig.processorRuns} processor runs, ${applied}/${count} packets applied, ${sent} sent, ${Math.round((performance.now() - t0) / 1000)} s`);
  }
  await sending;
  fig.invocationMs = stats(invocationMs.map(Math.round));

  // --- Verdicts.
  verify(dir, q, packets, plans, fig, problem);
  fig.lockFreeAtEnd = lockFree(join(q, 'nextseq.lock'));
  if (!fig.lockFreeAtEnd) problem('the queue lock is held after the last run');
  fig.tmpLeftovers = readdirSync(join(q, 'jobs')).filter((n) => n.startsWith('tmp-')).length;
  if (fig.tmpLeftovers) problem(`${fig.tmpLeftovers} temp file(s) left in jobs/`);
  await checkLeftovers(dir, fig, problem);
  fig.durationS = Math.round((performance.now() - t0) / 100) / 10;
  fig.ok = fig.problems.length === 0 && fig.hangs === 0 && fig.lost === 0 && fig.outOfOrder === 0 && fig.leftoverProcesses === 0;
  fig.dir = opt.keep || !fig.ok ? dir : undefined;
  if (!opt.keep && fig.ok) rmSync(dir, { recursive: true, force: true });
  return fig;
}

/** Processes of ours still alive after a processor run: a planned background child (kept, as
 * the spec says, then killed by us) or a leftover (a violation). Looks twice, 0.5 s apart, so
 * that a group being killed at that moment is not counted. */
async function checkLeftovers(dir, fig, problem) {
  let found = marked('SOAK_MARK', dir);
  if (found.length === 0) return;
  const kept = found.filter((p) => p.env.SOAK_WHAT?.endsWith(':child') && p.comm === 'sleep');
  for (const p of kept) {
    fig.keptChildren++;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (kept.length === found.length) return;
  await sleep(500);
  found = marked('SOAK_MARK', dir).filter((p) => !(p.env.SOAK_WHAT?.endsWith(':child') && p.comm === 'sleep'));
  for (const p of found) {
    fig.leftoverProcesses++;
    problem(`process ${p.pid} (${p.comm}) left behind: ${p.env.SOAK_WHAT ?? 'not a receiver'}`);
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

function verify(dir, q, packets, plans, fig, problem) {
  const count = packets.length;
  const appliedLines = readFileSync(join(dir, 'applied.log'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const [seq, attempt, b, id, h] = l.split(' ');
    return { seq: Number(seq), attempt: Number(attempt), b, id: Number(id), h };
  });
  // Order: successes strictly increasing by seq; each seq once; each packet once.
  const seqSeen = new Set();
  const idSeen = new Set();
  let prev = 0;
  for (const a of appliedLines) {
    if (a.seq <= prev) {
      fig.outOfOrder++;
      problem(`seq ${a.seq} applied after seq ${prev}`);
    }
    prev = Math.max(prev, a.seq);
    if (seqSeen.has(a.seq) || idSeen.has(a.id)) fig.duplicates++;
    seqSeen.add(a.seq);
    idSeen.add(a.id);
    const p = packets[a.id];
    if (!p) problem(`an unknown packet ${a.id} was applied`);
    else if (a.h !== '-' && a.h !== hash16(payloadOf(p))) {
      fig.payloadMismatch++;
      problem(`packet ${a.id} (seq ${a.seq}, ${p.encoding}) reached the receiver altered`);
    }
  }
  for (let s = 1; s <= count; s++) if (!seqSeen.has(s)) fig.lost++;
  if (fig.lost) problem(`${fig.lost} seq(s) never applied`);
  if (fig.duplicates) problem(`${fig.duplicates} seq(s) applied twice`);
  const next = Number(readFileSync(join(q, 'nextseq'), 'utf8').trim());
  if (next !== count + 1) problem(`nextseq is ${next}, not ${count + 1}`);
  const left = readdirSync(join(q, 'jobs')).filter((n) => /^fspl-.*\.fspl$/.test(n));
  if (left.length) problem(`${left.length} job file(s) left in jobs/`);

  // Every attempt journaled, with the cause the receiver was told to produce.
  const attempts = readFileSync(join(dir, 'attempts.log'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const [seq, attempt, b, id] = l.split(' ');
    return { seq: Number(seq), attempt: Number(attempt), b, id: Number(id) };
  });
  fig.attempts = attempts.length;
  for (const a of attempts) fig.planned[a.b] = (fig.planned[a.b] ?? 0) + 1;
  const h = spawnSyncJson(['queue-history', '-q', q, '--json']);
  // Per seq, the journal's rows in attempt order against the receiver's runs in order. A row
  // whose outcome says the receiver never started (the packet could not be read or decoded)
  // has no receiver run: for these good packets it is a spurious failure, and is reported.
  const NO_RECEIVER = new Set(['bad-packet', 'decoder-failure', 'error', 'cannot-start']);
  const rowsBySeq = new Map();
  for (const r of h.runs) {
    fig.outcomes[r.outcome] = (fig.outcomes[r.outcome] ?? 0) + 1;
    if (!rowsBySeq.has(r.seq)) rowsBySeq.set(r.seq, []);
    rowsBySeq.get(r.seq).push(r);
  }
  const attemptsBySeq = new Map();
  for (const a of attempts) {
    if (!attemptsBySeq.has(a.seq)) attemptsBySeq.set(a.seq, []);
    attemptsBySeq.get(a.seq).push(a);
  }
  for (const [seq, list] of rowsBySeq) {
    list.sort((x, y) => x.attempt - y.attempt);
    list.forEach((r, i) => {
      if (r.attempt !== i + 1) problem(`seq ${seq}: journal attempts ${list.map((x) => x.attempt).join(',')} are not 1, 2, ...`);
    });
    for (const r of list.filter((x) => NO_RECEIVER.has(x.outcome))) {
      fig.spuriousDecodeFailures++;
      fig.journalMismatch++;
      const p = packets[(attemptsBySeq.get(seq) ?? [])[0]?.id];
      problem(`seq ${seq} attempt ${r.attempt}: a good packet${p ? ` (${p.encoding}, ${p.size} bytes)` : ''} failed before its receiver started: ${r.outcome} (${r.detail})`);
    }
  }
  for (let seq = 1; seq <= count; seq++) {
    const rows = (rowsBySeq.get(seq) ?? []).filter((x) => !NO_RECEIVER.has(x.outcome));
    const runs = (attemptsBySeq.get(seq) ?? []).sort((x, y) => x.attempt - y.attempt);
    for (let i = 0; i < Math.max(rows.length, runs.length); i++) {
      const r = rows[i];
      const a = runs[i];
      if (!r) {
        fig.journalMissing++;
        problem(`seq ${seq}: receiver run ${a.attempt} (${a.b}) is not in the journal`);
        continue;
      }
      if (!a) {
        fig.journalExtra++;
        problem(`seq ${seq}: journal row for attempt ${r.attempt} (${r.outcome}) with no receiver run`);
        continue;
      }
      const p = packets[a.id];
      const want = expectedOutcome(a.b, p);
      const okExit = r.outcome !== 'exit-code' && r.outcome !== 'early-exit' ? true : r.exit_code === (a.b === 'fail' ? 3 : 4);
      if (!want.includes(r.outcome) || !okExit) {
        fig.journalMismatch++;
        problem(`seq ${seq} attempt ${r.attempt}: the receiver was told "${a.b}" (${p.encoding}, ${p.size} bytes), the journal says ${r.outcome} (exit ${r.exit_code}, ${r.detail})`);
      }
      if (a.b === 'fail' && !(r.stderr_tail ?? '').includes('told to fail')) {
        fig.journalMismatch++;
        problem(`seq ${seq} attempt ${r.attempt}: the journal lacks the receiver's stderr (${JSON.stringify(r.stderr_tail)})`);
      }
    }
  }
}

/** The journal outcome(s) a behaviour must produce. */
function expectedOutcome(b, p) {
  switch (b) {
    case 'ok':
    case 'slow':
    case 'ignore':
    case 'child':
      return ['success'];
    case 'fail':
      return ['exit-code'];
    case 'early':
      // Zero-copy (raw), the file offset shows the unread payload; through a pipe (zstd,
      // OpenPGP), a failed write or what is left in the pipe. An empty raw payload leaves
      // nothing; an empty decoded one may or may not have had its end of input when the
      // receiver left, as its decoding raced the receiver's exit: either verdict is right.
      if (p.size > 0) return ['early-exit'];
      return p.encoding === 'raw' ? ['exit-code'] : ['exit-code', 'early-exit'];
    case 'hang':
    case 'stubborn':
      return ['timeout'];
    default:
      return [];
  }
}

function spawnSyncJson(args) {
  const r = spawnSync(FSPOOL, args, { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`fspool ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout.toString());
}

function print(f) {
  const kinds = FAULTS.map((k) => `${k} ${f.planned[k] ?? 0}`).join(', ');
  const out = [
    `soak: seed ${f.seed}`,
    `packets:          ${f.packets} (raw ${f.encodings.raw}, zstd ${f.encodings.zstd}, zstd+OpenPGP ${f.encodings.pgp}; ${(f.payloadBytes / 1e6).toFixed(1)} MB of payload; ${f.heldBack} held back to arrive late)`,
    `receiver runs:    ${f.attempts} (ok ${f.planned.ok ?? 0}; faults: ${kinds})`,
    `journal outcomes: ${Object.entries(f.outcomes).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `processor runs:   ${f.processorRuns} (${Object.entries(f.modeRuns).map(([k, v]) => `${k} ${v}`).join(', ')}; exit ${Object.entries(f.processorExit).map(([k, v]) => `${k}: ${v}`).join(', ')}); per run median ${f.invocationMs?.median} ms, max ${f.invocationMs?.max} ms`,
    `hangs:            ${f.hangs}`,
    `lost:             ${f.lost}`,
    `duplicates:       ${f.duplicates}`,
    `out of order:     ${f.outOfOrder}`,
    `payload altered:  ${f.payloadMismatch}`,
    `journal:          ${f.journalMismatch} wrong cause (of which ${f.spuriousDecodeFailures} a good packet failing to decode), ${f.journalMissing} missing, ${f.journalExtra} extra`,
    `processes left:   ${f.leftoverProcesses} (background children of successful receivers, kept as spec/processing.md says and then killed by the soak: ${f.keptChildren})`,
    `sender failures:  ${f.senderFailures}; temp files left: ${f.tmpLeftovers}; lock free at the end: ${f.lockFreeAtEnd}`,
    `duration:         ${f.durationS} s`,
    f.ok ? 'soak: OK' : `soak: FAILED (${f.problems.length} problem(s); files kept in ${f.dir})`,
  ];
  console.log(out.join('\n'));
}

const fig = await main();
if (opt.json) console.log(JSON.stringify(fig));
else print(fig);
process.exit(fig.ok ? 0 : 1);
